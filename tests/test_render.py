"""Rendering: every reference resolves, policy text is never markup, output is reproducible."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest

from troth.errors import RenderError
from troth.policy.lint import lint
from troth.render.check import reference_findings
from troth.render.output import render_policy, render_table, write_bundle


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.headings: dict[str, str] = {}
        self._in: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.hrefs.append(a["href"][1:])
        if re.fullmatch(r"h[2-6]", tag):
            self._in, self._text = tag, ""

    def handle_data(self, data):
        if self._in:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._in:
            number, _, title = self._text.strip().partition(". ")
            self.headings[number] = title
            self._in = None


def parse(html: str) -> Anchors:
    p = Anchors()
    p.feed(html)
    return p


SECTION_REF = {"en": r"Section ([\d.]+) \(([^)]+)\)", "de": r"Abschnitt ([\d.]+) \(([^)]+)\)"}


@pytest.mark.parametrize("locale", ["en", "de"])
def test_seed_policy_has_no_dangling_reference(seed, locale):
    html = render_policy(seed.policy, locale, "html")
    doc = parse(html)
    assert doc.hrefs, "the rendered policy should cross-reference its sections"
    assert [h for h in doc.hrefs if h not in doc.ids] == []
    text = re.sub(r"<[^>]+>", "", html)
    refs = re.findall(SECTION_REF[locale], text)
    assert refs
    for number, title in refs:
        assert doc.headings.get(number) == title, f"'{number} ({title})' names no heading"


def test_sections_are_numbered_without_gaps(seed):
    doc = parse(render_policy(seed.policy, "en", "html"))
    top = sorted(int(n) for n in doc.headings if "." not in n)
    assert top == list(range(1, len(top) + 1))
    for number in doc.headings:
        if "." in number:
            parent, _, last = number.rpartition(".")
            assert parent in doc.headings
            assert last == "1" or f"{parent}.{int(last) - 1}" in doc.headings


def test_policy_text_is_escaped_in_every_format(minimal_variant):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'

    def edit(d):
        d["service"] = hostile
        d["purposes"][0]["title"] = hostile
        d["tracking"][0]["description"] = hostile

    policy = minimal_variant(edit).policy
    html = render_policy(policy, "en", "html")
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;" in html
    md = render_policy(policy, "en", "md")
    assert not re.search(r"(?<!\\)<(script|img)", md), "raw HTML in Markdown"
    assert "\\<script\\>" in md
    table = render_table(policy, "tracking", "en", "html")
    assert "<script>alert" not in table
    assert json.loads(render_policy(policy, "en", "json"))["service"] == hostile


def test_same_input_gives_same_bytes(seed, tmp_path):
    for fmt in ("html", "md", "json"):
        a = write_bundle(seed.policy, fmt, ["en", "de"], tmp_path / f"a-{fmt}")
        b = write_bundle(seed.policy, fmt, ["en", "de"], tmp_path / f"b-{fmt}")
        assert [p.name for p in a] == [p.name for p in b]
        for x, y in zip(a, b, strict=True):
            assert x.read_bytes() == y.read_bytes(), x.name


def test_german_rendering_uses_german_words(seed):
    html = render_policy(seed.policy, "de", "html")
    assert '<html lang="de">' in html
    assert "Datenschutzerklärung" in html
    assert "Abschnitt" in html
    for english in ("How we use your information", "Legal basis:", "Your rights", "Section "):
        assert english not in html


def test_references_in_policy_text_become_links(minimal_variant):
    def edit(d):
        d["texts"] = {"intro": "Your rights are in [[rights]]; analytics in [[purpose.analytics]]."}

    policy = minimal_variant(edit).policy
    doc = parse(render_policy(policy, "en", "html"))
    assert {"rights", "purpose.analytics"} <= set(doc.hrefs)
    md = render_policy(policy, "en", "md")
    assert re.search(r"\[Section \d+ \(Your rights\)\]\(#rights\)", md)


def test_dangling_reference_in_policy_text_is_reported_at_its_line(minimal_variant):
    def edit(d):
        d["texts"] = {"intro": "See [[display_ads]]."}

    loaded = minimal_variant(edit)
    findings = reference_findings(loaded)
    assert [f.code for f in findings] == ["T060"]
    assert "[[display_ads]]" in findings[0].message
    assert findings[0].location is not None
    assert findings[0].location.line > 1
    with pytest.raises(RenderError, match=r"\[\[display_ads\]\]"):
        render_policy(loaded.policy, "en", "html")


def test_record_of_processing_has_one_row_per_activity(seed):
    policy = seed.policy
    rows = list(
        csv.DictReader(io.StringIO(render_table(policy, "record-of-processing", "en", "csv")))
    )
    activities = [a.id for _, a in policy.activities()]
    assert [r["activity_id"] for r in rows] == activities
    for row in rows:
        for column in ("controller", "purpose", "legal_basis", "data_subjects", "data_categories"):
            assert row[column], (row["activity_id"], column)
        assert row["legal_basis"].startswith("Art. 6(1)(")
        if row["basis_kind"] == "legitimate_interest":
            assert row["legitimate_interest"]
    assert any(row["third_country_transfers"] for row in rows)


def test_csv_cells_cannot_start_a_formula(minimal_variant):
    def edit(d):
        d["purposes"][0]["title"] = '=HYPERLINK("http://evil")'

    out = render_table(minimal_variant(edit).policy, "record-of-processing", "en", "csv")
    assert "'=HYPERLINK" in out
    assert ",=HYPERLINK" not in out


def test_tracking_table_lists_every_technology(seed):
    rows = json.loads(render_table(seed.policy, "tracking", "en", "json"))["rows"]
    assert [r["id"] for r in rows] == [t.id for t in seed.policy.tracking]
    cookie = next(r for r in rows if r["type"] == "Cookie" and r["expiry"])
    assert cookie["expiry_text"]


def test_seed_is_clean_of_render_findings(seed):
    assert reference_findings(seed) == []
    assert all(f.code != "T060" for f in lint(seed))
