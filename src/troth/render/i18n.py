"""troth's own words in each language, and locale-aware formatting.

troth's strings are gettext messages in ``render/locales/<lang>.po``; adding a language is
adding a catalogue, not code. Catalogues are read with Babel once per process.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from importlib import resources

from babel import Locale
from babel.dates import format_date
from babel.lists import format_list
from babel.messages.pofile import read_po
from babel.units import format_unit

from troth.errors import RenderError
from troth.policy.types import Duration, text_for

__all__ = ["Translator", "available_locales", "translator"]

_UNITS = {
    "years": "duration-year",
    "months": "duration-month",
    "weeks": "duration-week",
    "days": "duration-day",
    "hours": "duration-hour",
    "minutes": "duration-minute",
    "seconds": "duration-second",
}


@functools.cache
def available_locales() -> frozenset[str]:
    folder = resources.files("troth.render") / "locales"
    return frozenset(
        entry.name.removesuffix(".po") for entry in folder.iterdir() if entry.name.endswith(".po")
    )


@dataclass(frozen=True)
class Translator:
    """Messages and formatting for one locale; ``default`` is the policy's own language."""

    locale: str
    default: str
    messages: dict[str, str]

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        key = singular if n == 1 else plural
        return self.messages.get(key) or key

    def text(self, value: str | dict[str, str] | None) -> str:
        """A policy text in this locale (falling back to the policy's default language)."""
        return text_for(value, self.locale, self.default) or ""

    def date(self, value: dt.date) -> str:
        return format_date(value, format="long", locale=self.locale)

    def duration(self, value: Duration | str | None) -> str:
        if value is None:
            return "—"
        if value == "session":
            return self.gettext("until the browser session ends")
        assert isinstance(value, Duration)
        parts = [
            format_unit(n, _UNITS[unit], locale=self.locale, length="long")
            for unit, n in value.parts()
        ]
        return format_list(parts, locale=self.locale) if parts else self.gettext("not kept")

    def country(self, code: str) -> str:
        if code == "EEA":
            return self.gettext("European Economic Area")
        return str(Locale.parse(self.locale).territories.get(code, code))

    def join(self, items: list[str]) -> str:
        return format_list(items, locale=self.locale) if items else "—"


@functools.cache
def _catalogue(locale: str) -> dict[str, str]:
    path = resources.files("troth.render") / "locales" / f"{locale}.po"
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    out: dict[str, str] = {}
    for message in catalog:
        if not message.id or not message.string or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            for msgid, msgstr in zip(message.id, message.string, strict=False):
                if msgstr:
                    out[msgid] = msgstr
        elif isinstance(message.string, str):
            out[str(message.id)] = message.string
    return out


def translator(locale: str, default: str) -> Translator:
    if locale not in available_locales():
        raise RenderError(
            f"no message catalogue for locale '{locale}'; available: "
            + ", ".join(sorted(available_locales()))
        )
    return Translator(locale, default, _catalogue(locale))
