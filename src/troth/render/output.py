"""Write the rendered policy and its tables as HTML, Markdown, JSON and CSV.

Same policy in, same bytes out: nothing here reads the clock or depends on dict order
that the policy did not give.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from troth.policy.model import Policy
from troth.render.document import Block, BulletList, Document, Para, build_document
from troth.render.i18n import Translator, translator
from troth.render.tables import TABLE_COLUMNS, recipient_rows, record_of_processing, tracking_rows

__all__ = ["FORMATS", "Format", "render_policy", "render_table", "write_bundle"]

Format = Literal["html", "md", "json"]
FORMATS: tuple[Format, ...] = ("html", "md", "json")

_html_env = Environment(
    loader=PackageLoader("troth.render", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_text_env = Environment(
    loader=PackageLoader("troth.render", "templates"),
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~])")


def md_escape(text: str) -> str:
    """Escape Markdown and raw HTML so that policy text is shown, never interpreted."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;")).replace("\n", " ")


def _html_para(para: Para, doc: Document, t: Translator) -> Markup:
    out = Markup()
    for span in para.spans:
        if span.ref is not None:
            text, anchor = doc.ref_text(span.ref, t)
            out += Markup('<a class="ref" href="#{}">{}</a>').format(anchor, text)
        elif span.href is not None:
            out += Markup('<a href="{}">{}</a>').format(span.href, span.text)
        elif span.strong:
            out += Markup("<strong>{}</strong>").format(span.text)
        else:
            out += escape(span.text)
    return out


def _md_para(para: Para, doc: Document, t: Translator) -> str:
    out = ""
    for span in para.spans:
        if span.ref is not None:
            text, anchor = doc.ref_text(span.ref, t)
            out += f"[{md_escape(text)}](#{anchor})"
        elif span.href is not None:
            out += f"[{md_escape(span.text)}](<{span.href}>)"
        elif span.strong:
            out += f"**{md_escape(span.text)}**"
        else:
            out += md_escape(span.text)
    return out


def _plain_para(para: Para, doc: Document, t: Translator) -> str:
    return "".join(doc.ref_text(s.ref, t)[0] if s.ref else s.text for s in para.spans)


def _block_json(block: Block, doc: Document, t: Translator) -> dict[str, Any]:
    def text(p: Para) -> str:
        return _plain_para(p, doc, t)

    paras: list[Para]
    out: dict[str, Any]
    if isinstance(block, Para):
        paras = [block]
        out = {"type": "paragraph", "text": text(block)}
    elif isinstance(block, BulletList):
        paras = [p for head, details in block.items for p in (head, *details)]
        out = {
            "type": "list",
            "items": [
                {"text": text(head), "details": [text(d) for d in details]}
                for head, details in block.items
            ],
        }
    else:
        paras = [cell for row in block.rows for cell in row]
        out = {
            "type": "table",
            "id": block.id,
            "headers": block.headers,
            "rows": [[text(cell) for cell in row] for row in block.rows],
        }
    out["refs"] = [s.ref for p in paras for s in p.spans if s.ref]
    out["links"] = [{"text": s.text, "href": s.href} for p in paras for s in p.spans if s.href]
    return out


def _section_json(section: Any, doc: Document, t: Translator) -> dict[str, Any]:
    return {
        "id": section.id,
        "number": section.number,
        "title": section.title,
        "blocks": [_block_json(b, doc, t) for b in section.blocks],
        "anchors": [a for a, _ in section.anchors],
        "sections": [_section_json(c, doc, t) for c in section.children],
    }


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def render_policy(policy: Policy, locale: str, fmt: Format) -> str:
    """The privacy policy in one locale and format."""
    t = translator(locale, policy.default_language)
    doc = build_document(policy, t)
    if fmt == "json":
        return _dumps(
            {
                "title": doc.title,
                "service": doc.service,
                "locale": doc.locale,
                "version": doc.version,
                "effective": policy.effective.isoformat(),
                "preamble": [_block_json(b, doc, t) for b in doc.preamble],
                "sections": [_section_json(s, doc, t) for s in doc.sections],
            }
        )
    env = _html_env if fmt == "html" else _text_env
    para = _html_para if fmt == "html" else _md_para
    template = env.get_template(f"policy.{fmt}.j2")
    return template.render(
        doc=doc,
        policy=policy,
        _=t.gettext,
        para=lambda p: para(p, doc, t),
        md=md_escape,
        languages=policy.languages,
        locale=locale,
    )


TableName = Literal["tracking", "recipients", "record-of-processing"]


def _rows(policy: Policy, name: TableName, t: Translator) -> list[dict[str, Any]]:
    if name == "tracking":
        return tracking_rows(policy, t)
    if name == "recipients":
        return recipient_rows(policy, t)
    return record_of_processing(policy, t)


def render_table(
    policy: Policy, name: TableName, locale: str, fmt: Literal["html", "md", "json", "csv"]
) -> str:
    t = translator(locale, policy.default_language)
    rows = _rows(policy, name, t)
    columns = TABLE_COLUMNS[name]
    if fmt == "json":
        return _dumps({"table": name, "locale": locale, "version": policy.version, "rows": rows})
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_safe(str(row[k])) for k in columns})
        return buffer.getvalue()
    titles = {
        "tracking": t.gettext("List of tracking technologies"),
        "recipients": t.gettext("Recipients and transfers"),
        "record-of-processing": t.gettext("Record of processing activities"),
    }
    env = _html_env if fmt == "html" else _text_env
    return env.get_template(f"table.{fmt}.j2").render(
        title=titles[name],
        service=policy.service,
        version=policy.version,
        columns=columns,
        rows=rows,
        locale=locale,
        md=md_escape,
        _=t.gettext,
    )


def _csv_safe(value: str) -> str:
    """Keep spreadsheet programs from running a cell that starts like a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


_ROPA_FORMATS: tuple[Literal["csv", "json"], ...] = ("csv", "json")


def write_bundle(policy: Policy, fmt: Format, locales: list[str], outdir: Path) -> list[Path]:
    """Write the policy, its tables and the record of processing for each locale."""
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, content: str) -> None:
        path = outdir / name
        path.write_text(content, encoding="utf-8", newline="\n")
        written.append(path)

    for locale in locales:
        write(f"privacy-policy.{locale}.{fmt}", render_policy(policy, locale, fmt))
        write(f"tracking.{locale}.{fmt}", render_table(policy, "tracking", locale, fmt))
        write(f"recipients.{locale}.{fmt}", render_table(policy, "recipients", locale, fmt))
        for ext in _ROPA_FORMATS:
            write(
                f"record-of-processing.{locale}.{ext}",
                render_table(policy, "record-of-processing", locale, ext),
            )
    return written
