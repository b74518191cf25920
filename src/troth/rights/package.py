"""The access and portability package: one zip with, for each table that holds something
about the person, the rows as JSON and as CSV (UTF-8, header row), ``identities.json``,
and a README, rendered from the policy, that says what each file holds: the data
categories of its columns and the purposes those categories are used for, on which legal
basis and for how long. Entries are sorted and carry a fixed timestamp."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

from troth.policy.model import Policy
from troth.policy.types import text_for
from troth.policy.vocabulary import vocabulary
from troth.render.document import legal_article
from troth.render.i18n import available_locales, translator
from troth.rights.connectors import Connector
from troth.rights.engine import Discovery

__all__ = ["build_package"]

_EPOCH = (2000, 1, 1, 0, 0, 0)

_WORDS = {
    "en": {
        "title": "Your personal data",
        "intro": (
            "This archive holds the personal data that {service} keeps about you, as of {day}. "
            "Each table is given twice: as JSON and as CSV (UTF-8, first row names the columns)."
        ),
        "empty": "We hold no personal data about the identities given.",
        "identities": "identities.json lists the identifiers we found you by.",
        "file": "Files",
        "rows": "rows",
        "columns": "Columns",
        "category": "Data categories",
        "purposes": "Used for",
        "basis": "legal basis",
        "kept": "kept",
        "none": "no data category (an identifier or a link between records)",
    },
    "de": {
        "title": "Ihre personenbezogenen Daten",
        "intro": (
            "Dieses Archiv enthält die personenbezogenen Daten, die {service} am {day} über Sie "
            "gespeichert hat. Jede Tabelle liegt zweimal vor: als JSON und als CSV (UTF-8, die "
            "erste Zeile nennt die Spalten)."
        ),
        "empty": "Zu den angegebenen Kennungen speichern wir keine personenbezogenen Daten.",
        "identities": "identities.json nennt die Kennungen, unter denen wir Sie gefunden haben.",
        "file": "Dateien",
        "rows": "Zeilen",
        "columns": "Spalten",
        "category": "Datenkategorien",
        "purposes": "Verwendet für",
        "basis": "Rechtsgrundlage",
        "kept": "gespeichert",
        "none": "keine Datenkategorie (eine Kennung oder eine Verknüpfung von Datensätzen)",
    },
}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict | list):
        return value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def build_package(
    policy: Policy, connectors: Mapping[str, Connector], found: Discovery, language: str
) -> bytes:
    lang = language if language in policy.languages else policy.default_language
    words = _WORDS.get(lang, _WORDS["en"])
    default = policy.default_language

    def t(value: str | dict[str, str] | None) -> str:
        return text_for(value, lang, default) or ""

    categories = {c.id: c for c in policy.categories}
    vocab = vocabulary()
    # category -> purpose title -> (legal bases, retention periods) of its activities
    uses: dict[str, dict[str, tuple[dict[str, None], dict[str, None]]]] = {}
    # in the words of the rendered policy: "Art. 6(1)(b) GDPR", "6 months"
    words_of = translator(lang if lang in available_locales() else "en", default)
    for purpose, activity in policy.activities():
        term = vocab.lookup("legal_basis", activity.basis)
        label = term.label if term else activity.basis
        basis = f"{legal_article(activity.basis, words_of)}, {label}"
        for cid in activity.categories:
            bases, kept = uses.setdefault(cid, {}).setdefault(t(purpose.title), ({}, {}))
            bases[basis] = None
            if activity.retention:
                kept[words_of.duration(activity.retention.period)] = None
    used_for: dict[str, list[str]] = {}
    for cid, purposes in uses.items():
        for title, (bases, kept) in purposes.items():
            line = f"{title} ({words['basis']}: {', '.join(bases)}"
            line += f"; {words['kept']}: {', '.join(kept)})" if kept else ")"
            used_for.setdefault(cid, []).append(line)

    buffer = io.BytesIO()
    readme: list[str] = [f"# {words['title']}", ""]
    readme.append(words["intro"].format(service=policy.service, day=dt.date.today().isoformat()))
    readme += ["", words["identities"], ""]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:

        def put(name: str, data: str) -> None:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data.encode())

        put(
            "identities.json",
            json.dumps(
                {k: sorted(v) for k, v in sorted(found.identities.items())},
                ensure_ascii=False,
                indent=2,
            ),
        )
        if found.is_empty():
            readme += [words["empty"], ""]
        for (sid, tname), rows in sorted(found.rows.items()):
            table = next((x for x in connectors[sid].tables() if x.name == tname), None)
            if table is None or not rows:
                continue
            columns = table.columns()
            base = f"{sid}/{tname}"
            records = [{c: _plain(r.get(c)) for c in columns} for r in rows]
            put(f"{base}.json", json.dumps(records, ensure_ascii=False, indent=2, default=str))
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(columns)
            for r in rows:
                writer.writerow([_cell(r.get(c)) for c in columns])
            put(f"{base}.csv", out.getvalue())
            readme += [f"## {sid} / {tname}", ""]
            readme.append(f"{words['file']}: {base}.json, {base}.csv ({len(rows)} {words['rows']})")
            readme += ["", f"{words['columns']}:"]
            cats: dict[str, None] = {}
            for c in columns:
                f = table.field(c)
                if f is not None and f.category in categories:
                    cat = categories[f.category]
                    cats[cat.id] = None
                    readme.append(f"- {c}: {t(cat.name)}")
                else:
                    readme.append(f"- {c}: {words['none']}")
            if cats:
                readme += ["", f"{words['category']}:"]
                for cid in cats:
                    cat = categories[cid]
                    readme.append(f"- {t(cat.name)}: {t(cat.description)}")
                    for line in used_for.get(cid, []):
                        readme.append(f"  - {words['purposes']}: {line}")
            readme.append("")
        put("README.md", "\n".join(readme))
    return buffer.getvalue()
