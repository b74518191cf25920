"""Value types of the policy model: localised text, durations, vocabulary-checked keys."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, PlainValidator, WithJsonSchema

from troth.policy.vocabulary import VocabularyKind, vocabulary

__all__ = [
    "COUNTRY_PATTERN",
    "SUGGESTION_BUDGET",
    "CountryCode",
    "DataCategoryKey",
    "Duration",
    "DurationField",
    "Expiry",
    "Identifier",
    "LanguageCode",
    "LegalBasisKey",
    "PurposeKey",
    "Text",
    "TransferBasisKey",
    "Url",
    "quote",
    "text_for",
]

_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_LANG = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
_URL = re.compile(r"^(https?://[^\s<>\"]+|/[^\s<>\"]*)$")
COUNTRY_PATTERN = re.compile(r"^[A-Z]{2,3}$")


def quote(value: object, limit: int = 60) -> str:
    """A value for an error message: quoted, on one line, never longer than ``limit``."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"'{text}'" if text.isprintable() else repr(text)


def _identifier(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{quote(value)} is not a valid id: use lower-case letters, digits and '_', "
            "starting with a letter"
        )
    return value


def _language(value: str) -> str:
    if not _LANG.match(value):
        raise ValueError(f"{quote(value)} is not a language code such as 'en' or 'de'")
    return value


def _url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError(f"{quote(value)} is not an http(s) URL or a site path starting with '/'")
    return value


def _validate_text(value: Any) -> str | dict[str, str]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("text is empty")
        return value.strip()
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for lang, text in value.items():
            if not isinstance(lang, str) or not _LANG.match(lang):
                raise ValueError(f"{quote(lang)} is not a language code such as 'en' or 'de'")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text for language {quote(lang)} must be a non-empty string")
            out[lang] = text.strip()
        return out
    raise ValueError("expected text, or a mapping of language code to text")


Identifier = Annotated[str, AfterValidator(_identifier)]
LanguageCode = Annotated[str, AfterValidator(_language)]
Url = Annotated[str, AfterValidator(_url)]
Text = Annotated[
    str | dict[str, str],
    PlainValidator(_validate_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "object", "additionalProperties": {"type": "string"}},
            ]
        }
    ),
]


def text_for(value: str | dict[str, str] | None, locale: str, default: str) -> str | None:
    """The text in ``locale``, falling back to the policy's default language."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return value.get(locale) or value.get(default) or next(iter(value.values()))


# "Did you mean" costs a scan of the vocabulary; a hostile file with thousands of unknown
# terms must not make loading quadratic, so each load may afford only a few of them.
SUGGESTION_BUDGET: ContextVar[int] = ContextVar("SUGGESTION_BUDGET", default=50)


def _vocab(kind: VocabularyKind) -> Any:
    def check(value: str) -> str:
        v = vocabulary()
        term = v.lookup(kind, value)
        if term is None:
            budget = SUGGESTION_BUDGET.get()
            SUGGESTION_BUDGET.set(budget - 1)
            raise ValueError(v.unknown(kind, value, suggest=budget > 0))
        return term.key

    return check


LegalBasisKey = Annotated[str, AfterValidator(_vocab("legal_basis"))]
TransferBasisKey = Annotated[str, AfterValidator(_vocab("transfer_basis"))]
PurposeKey = Annotated[str, AfterValidator(_vocab("purpose"))]
DataCategoryKey = Annotated[str, AfterValidator(_vocab("personal_data"))]
CountryCode = Annotated[str, AfterValidator(_vocab("country"))]


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_UNITS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
_UNIT_SECONDS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO 8601 duration such as ``P13M`` or ``PT30M``, kept in the units it was written in."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, value: str) -> Duration:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(
                f"{quote(value)} is not an ISO 8601 duration such as 'P13M', 'P2Y' or 'PT30M'"
            )
        return cls(**{k: int(v) for k, v in match.groupdict().items() if v})

    def parts(self) -> list[tuple[str, int]]:
        return [(unit, getattr(self, unit)) for unit in _UNITS if getattr(self, unit)]

    def approx_seconds(self) -> int:
        """Length in seconds, counting a month as 30 days and a year as 365."""
        return sum(_UNIT_SECONDS[unit] * n for unit, n in self.parts())

    def __str__(self) -> str:
        date = "".join(f"{getattr(self, u)}{u[0].upper()}" for u in _UNITS[:4] if getattr(self, u))
        time = "".join(f"{getattr(self, u)}{u[0].upper()}" for u in _UNITS[4:] if getattr(self, u))
        return "P" + date + (("T" + time) if time else "") if (date or time) else "P0D"


def _parse_duration(value: Any) -> Duration:
    if isinstance(value, Duration):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 duration such as 'P13M' (a string)")
    return Duration.parse(value)


def _parse_expiry(value: Any) -> Duration | str:
    if value == "session":
        return "session"
    if isinstance(value, str) and not value.startswith("P"):
        raise ValueError(f"{quote(value)} is not 'session' or an ISO 8601 duration such as 'P13M'")
    return _parse_duration(value)


DurationField = Annotated[
    Duration,
    PlainValidator(_parse_duration),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "format": "duration"}),
]
Expiry = Annotated[
    Duration | str,
    PlainValidator(_parse_expiry),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "'session' or an ISO 8601 duration"}),
]
