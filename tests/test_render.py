"""Rendering: every reference resolves, policy text is never markup, output is reproducible."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape
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


# --- international transfers: each recipient's mechanism in words, with its specifics ------


def transfer_statements(html: str) -> dict[str, list[str]]:
    """The statements of the transfers section, by recipient name, as a reader sees them."""
    section = html[html.index('<section id="transfers"') :]
    section = section[: section.index("</section>")]
    items = re.findall(r'<li><strong>(.*?)</strong><ul class="details">(.*?)</ul></li>', section)
    return {
        unescape(name): [
            unescape(re.sub(r"<[^>]+>", "", d)) for d in re.findall(r"<li>(.*?)</li>", body)
        ]
        for name, body in items
    }


def test_seed_transfers_state_each_mechanism_in_english(seed):
    said = transfer_statements(render_policy(seed.policy, "en", "html"))
    assert list(said) == [
        "Lumen Networks group companies",
        "Service providers",
        "Google Analytics",
        "Google Ads",
        "Mobile advertising networks",
        "Marketing partners",
    ]  # the payment processor and the authorities are in the EEA: no transfer
    assert said["Google Analytics"] == [
        "Transferred out of the European Economic Area to: United States.",
        "Safeguard: an adequacy decision (Art. 45(3) GDPR). The European Commission has found "
        "that the country ensures a level of data protection essentially equivalent to that in "
        "the European Union.",
        "Decision relied on: United States (EU-U.S. Data Privacy Framework), Commission "
        "Implementing Decision (EU) 2023/1795 of July 10, 2023.",
        "This decision covers only some recipients in the country; it covers this recipient "
        "because it is certified under the EU-U.S. Data Privacy Framework (listed as an active "
        "participant on the Data Privacy Framework List of the US Department of Commerce).",
    ]
    assert said["Service providers"] == [
        "Transferred out of the European Economic Area to: United States.",  # not Germany
        "Safeguard: standard contractual clauses (Art. 46(2)(c) GDPR). The recipient has signed "
        "a contract in terms adopted by the European Commission that obliges it to protect the "
        "data as required in the European Union and gives you rights you can enforce.",
        "Clauses used: Commission Implementing Decision (EU) 2021/914 of June 4, 2021, "
        "module 2 (controller to processor).",
        "Applies to service providers in the United States; those in Germany receive data "
        "without a transfer.",
        "We assessed the risks of this transfer on October 1, 2026 (transfer impact assessment).",
    ]
    assert said["Marketing partners"][2] == (
        "Clauses used: Commission Implementing Decision (EU) 2021/914 of June 4, 2021, "
        "module 1 (controller to controller)."
    )
    assert said["Lumen Networks group companies"] == [
        "Transferred out of the European Economic Area to: Singapore and United States.",
        "Safeguard: binding corporate rules (Art. 46(2)(b) GDPR). Data protection rules that "
        "bind every company of the recipient's group, approved by a data protection supervisory "
        "authority, give you rights you can enforce.",
        "Reference: Lumen Networks Binding Corporate Rules (processor), approved under "
        "Art. 47 GDPR.",
        "We assessed the risks of this transfer on September 15, 2026 (transfer impact "
        "assessment).",
    ]


def test_seed_transfers_state_each_mechanism_in_german(seed):
    said = transfer_statements(render_policy(seed.policy, "de", "html"))
    assert said["Google Ads"] == [
        "Übermittelt aus dem Europäischen Wirtschaftsraum in folgende Länder: Vereinigte Staaten.",
        "Garantie: ein Angemessenheitsbeschluss (Art. 45 Abs. 3 DSGVO). Die Europäische "
        "Kommission hat festgestellt, dass das Land ein Datenschutzniveau gewährleistet, das dem "
        "in der Europäischen Union im Wesentlichen gleichwertig ist.",
        "Zugrunde liegender Beschluss: Vereinigte Staaten (Datenschutzrahmen EU-USA), "
        "Durchführungsbeschluss (EU) 2023/1795 der Kommission vom 10. Juli 2023.",
        "Dieser Beschluss gilt nur für einen Teil der Empfänger in dem Land; er gilt für diesen "
        "Empfänger, weil er nach dem Datenschutzrahmen EU-USA (EU-U.S. Data Privacy Framework) "
        "zertifiziert ist (als aktiver Teilnehmer auf der Data Privacy Framework List des "
        "US-Handelsministeriums geführt).",
    ]
    assert said["Mobile Werbenetzwerke"] == [
        "Übermittelt aus dem Europäischen Wirtschaftsraum in folgende Länder: Vereinigte Staaten.",
        "Garantie: Standardvertragsklauseln (Art. 46 Abs. 2 lit. c DSGVO). Der Empfänger hat "
        "einen Vertrag nach einem von der Europäischen Kommission erlassenen Muster "
        "unterzeichnet, der ihn verpflichtet, die Daten so zu schützen, wie es in der "
        "Europäischen Union vorgeschrieben ist, und der Ihnen durchsetzbare Rechte gibt.",
        "Verwendete Klauseln: Durchführungsbeschluss (EU) 2021/914 der Kommission vom "
        "4. Juni 2021, Modul 1 (Verantwortlicher an Verantwortlichen).",
        "Die Risiken dieser Übermittlung haben wir am 1. Oktober 2026 bewertet (Transfer Impact "
        "Assessment).",
    ]
    assert said["Unternehmen der Lumen-Networks-Gruppe"][1] == (
        "Garantie: verbindliche interne Datenschutzvorschriften (Art. 46 Abs. 2 lit. b DSGVO). "
        "Datenschutzregeln, die jedes Unternehmen der Unternehmensgruppe des Empfängers binden "
        "und von einer Datenschutzaufsichtsbehörde genehmigt sind, geben Ihnen durchsetzbare "
        "Rechte."
    )


def _abroad(recipient_id: str, countries: list[str], transfer: dict) -> dict:
    return {
        "id": recipient_id,
        "name": recipient_id.replace("_", " ").title(),
        "type": "service_provider",
        "role": "processor",
        "description": "Hosts part of our service.",
        "countries": countries,
        "purposes": ["provide_service"],
        "transfer": transfer,
    }


def test_transfers_name_older_decisions_partial_scopes_and_derogations(seed_variant):
    from troth.policy.loader import load_policy

    def edit(d):
        d["recipients"] += [
            _abroad("swiss_host", ["CH"], {"mechanism": "adequacy"}),
            _abroad(
                "tokyo_support",
                ["JP"],
                {"mechanism": "adequacy", "adequacy_scope": ["appi"]},
            ),
            _abroad(
                "london_office",
                ["GB"],
                {"mechanism": "adequacy", "valid_until": "2027-06-30"},
            ),
            _abroad("claims_counsel", ["BR", "US"], {"mechanism": "derogation_legal_claims"}),
        ]

    policy = load_policy(seed_variant(edit)).policy
    en = transfer_statements(render_policy(policy, "en", "html"))
    de = transfer_statements(render_policy(policy, "de", "html"))
    # A decision from before the Lisbon Treaty is an "Entscheidung ... /EG" in German.
    assert en["Swiss Host"][2] == (
        "Decision relied on: Switzerland, Commission Decision 2000/518/EC of July 26, 2000."
    )
    assert de["Swiss Host"][2] == (
        "Zugrunde liegender Beschluss: Schweiz, Entscheidung 2000/518/EG der Kommission vom "
        "26. Juli 2000."
    )
    assert en["Tokyo Support"][2:] == [
        "Decision relied on: Japan (private sector), Commission Implementing Decision (EU) "
        "2019/419 of January 23, 2019.",
        "This decision covers only some recipients in the country; it covers this recipient "
        "because it is a business subject to Japan's Act on the Protection of Personal "
        "Information (APPI) and applies the supplementary rules for data from the EU and the UK.",
    ]
    assert de["Tokyo Support"][2] == (
        "Zugrunde liegender Beschluss: Japan (Privatsektor), Durchführungsbeschluss (EU) "
        "2019/419 der Kommission vom 23. Januar 2019."
    )
    # On the effective date (1 Dec 2026) the renewed UK decision applies, not the 2021 one.
    assert en["London Office"][2:] == [
        "Decision relied on: United Kingdom (renewed), Commission Implementing Decision of "
        "December 19, 2025 renewing the adequacy finding of Implementing Decision (EU) 2021/1772.",
        "It expires on December 27, 2031.",
        "This safeguard applies until June 30, 2027.",
    ]
    assert de["London Office"][2] == (
        "Zugrunde liegender Beschluss: Vereinigtes Königreich (erneuert), "
        "Durchführungsbeschluss der Kommission vom 19. Dezember 2025 zur Erneuerung der "
        "Angemessenheitsfeststellung des Durchführungsbeschlusses (EU) 2021/1772."
    )
    assert en["Claims Counsel"] == [
        "Transferred out of the European Economic Area to: Brazil and United States.",
        "There is no adequacy decision or other safeguard for this transfer. It rests on an "
        "exception the law allows in specific situations (Art. 49(1)(e) GDPR): the transfer is "
        "necessary to establish, exercise or defend legal claims.",
    ]
    assert de["Claims Counsel"][1] == (
        "Für diese Übermittlung gibt es weder einen Angemessenheitsbeschluss noch andere "
        "geeignete Garantien. Sie beruht auf einer Ausnahme, die das Gesetz für bestimmte Fälle "
        "zulässt (Art. 49 Abs. 1 lit. e DSGVO): die Übermittlung ist zur Geltendmachung, "
        "Ausübung oder Verteidigung von Rechtsansprüchen erforderlich."
    )


def test_a_uk_controller_states_uk_adequacy_regulations(seed_variant):
    from troth.policy.loader import load_policy

    def edit(d):
        d["controller"]["establishments"] = ["GB"]
        d["recipients"] += [
            _abroad(
                "us_host",
                ["US"],
                {"mechanism": "adequacy", "adequacy_scope": ["dpf_uk_extension"]},
            ),
        ]

    policy = load_policy(seed_variant(edit)).policy
    assert transfer_statements(render_policy(policy, "en", "html"))["Us Host"] == [
        "Transferred out of the United Kingdom to: United States.",
        "Safeguard: UK adequacy regulations (Art. 45 UK GDPR). The United Kingdom has found that "
        "the country ensures an adequate level of data protection.",
        "UK adequacy regulations relied on: United States (UK-US data bridge), The Data "
        "Protection (Adequacy) (United States of America) Regulations 2023 (SI 2023/1028).",
        "This decision covers only some recipients in the country; it covers this recipient "
        "because it participates in the UK Extension to the EU-U.S. Data Privacy Framework "
        "(listed on the Data Privacy Framework List of the US Department of Commerce).",
    ]
