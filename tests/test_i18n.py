"""Languages are data: every message troth uses is translated in every shipped catalogue."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from conftest import ROOT
from troth.render.i18n import available_locales, translator

METHODS = [("**.py", "python"), ("**.j2", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}


def used_messages() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT / "src" / "troth"), METHODS, keywords=KEYWORDS
    ):
        if isinstance(message, tuple):
            found.update(m for m in message if m)
        else:
            found.add(message)
    return found


def catalogue(locale: str) -> dict[str, str]:
    path = resources.files("troth.render") / "locales" / f"{locale}.po"
    with path.open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh, locale=locale) if m.id}


def test_english_and_german_are_shipped():
    assert {"en", "de"} <= available_locales()


def test_troth_uses_many_messages():
    assert len(used_messages()) > 100


@pytest.mark.parametrize("locale", sorted(available_locales() - {"en"}))
def test_every_message_is_translated(locale):
    messages = catalogue(locale)
    missing = sorted(m for m in used_messages() if not messages.get(m))
    assert missing == []


@pytest.mark.parametrize("locale", sorted(available_locales() - {"en"}))
def test_translations_keep_placeholders_and_references(locale):
    for msgid, msgstr in catalogue(locale).items():
        for pattern in (r"\{\w+\}", r"\[\[[\w.]+\]\]"):
            assert sorted(re.findall(pattern, msgid)) == sorted(re.findall(pattern, msgstr)), msgid


def test_german_formats_dates_durations_and_countries():
    t = translator("de", "en")
    import datetime as dt

    from troth.policy.types import Duration

    assert t.date(dt.date(2026, 12, 1)) == "1. Dezember 2026"
    assert t.duration(Duration.parse("P13M")) == "13 Monate"
    assert t.duration(Duration.parse("P1Y6M")) == "1 Jahr und 6 Monate"
    assert t.country("US") == "Vereinigte Staaten"
    assert t.gettext("Your rights") == "Ihre Rechte"


def test_unknown_locale_is_a_clear_error():
    from troth.errors import RenderError

    with pytest.raises(RenderError, match="no message catalogue for locale 'xx'"):
        translator("xx", "en")
