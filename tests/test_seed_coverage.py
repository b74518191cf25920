"""Every paragraph of the seed policy is carried by a section of troth's rendering of it.

The map below says, for each paragraph of ``shared/seed/privacy-policy.txt``, which rendered
section carries it and which words must be there to show that it does. A paragraph missing
from the map, a section missing from the rendering or evidence missing from the section
fails the test.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conftest import SEED_TEXT
from troth.render.output import render_policy

# seed paragraph (start of its text) -> (rendered section id, evidence that must appear there)
COVERAGE: dict[str, tuple[str, tuple[str, ...]]] = {
    "Privacy Policy": ("(title)", ("privacy policy",)),
    "Security and privacy are at the core": ("(preamble)", ("transparent", "websites", "services")),
    'This policy uses the term " personal data "': (
        "(preamble)",
        ("identified or identifiable natural person", "data protection laws"),
    ),
    "1. What information do we collect": ("collection", ("what information we collect",)),
    "This section introduces all kinds of information": (
        "collection",
        (
            "not collect all of them in every case",
            "section 3 (how we use",
            "such as cookies, see section 4",
        ),
    ),
    "2. How do we use your information?": ("use", ("how we use your information",)),
    "We will use the collected information for various purposes": ("use", ("following purposes",)),
    "● To provide, maintain, troubleshoot and support": (
        "purpose.provide_service",
        ("bandwidth", "how long you use our services", "plan", "security threat", "contract"),
    ),
    "● Communicate with users and potential users": (
        "purpose.communicate",
        (
            "responding to your requests",
            "updates",
            "your consent",
            "legitimate interest",
            "contract",
        ),
    ),
    "● Develop new services": (
        "purpose.develop_services",
        ("legitimate interest", "new services", "feedback"),
    ),
    "● To prevent injury or liability": (
        "purpose.prevent_harm",
        (
            "security",
            "fraud",
            "abuse",
            "legal obligation",
            "vital interests",
            "legitimate interest",
        ),
    ),
    "● In order to comply with the law": (
        "purpose.legal_compliance",
        ("legal process", "authorities", "legal claims", "disputes", "section 5"),
    ),
    "3. Tracking technology and Cookies": ("tracking", ("tracking technologies and cookies",)),
    "3.1 About Tracking Technology": ("tracking.about", ("about tracking technologies",)),
    "We use various technologies in our services": (
        "tracking.about",
        ('"tracking technologies"', "not always used to track", "personal data"),
    ),
    "Cookies are small pieces of text": (
        "tracking.about",
        ("small pieces of text", "recognise returning", "close your browser"),
    ),
    "Pixel Label/Page Label/Network Beacon/Tracking Link": (
        "tracking.about",
        ("pixel tags and web beacons", "tracking links"),
    ),
    "These are small hidden images": (
        "tracking.about",
        ("invisible images", "open an e-mail", "clicked"),
    ),
    "Development package": ("tracking.about", ("software development kits (sdks)",)),
    "SDK or software development kit": (
        "tracking.about",
        ("business partner", "advertisements", "mobile", "from the device"),
    ),
    "3.2 Why do we use Cookies": ("tracking.why", ("why we use them",)),
    "We use Cookie:": ("tracking.why", ("each technology belongs to one of these categories",)),
    "● In order to provide our services.Some cookie": (
        "tracking.why",
        ("strictly necessary", "signed in", "access to resources"),
    ),
    "● Save your preferences": ("tracking.why", ("preferences", "language", "user name")),
    "● used for analysis": (
        "tracking.why",
        ("analytics", "which pages and screens", "advertisements work", "consent"),
    ),
    "● For safety": ("tracking.why", ("security", "payment processor", "fraud")),
    "● used for advertising related purposes": (
        "purpose.advertising",
        ("advertis", "other websites", "your consent"),
    ),
    "3.3 Third party": ("tracking.third_parties", ("third parties",)),
    "We may allow our business partners to place": (
        "tracking.third_parties",
        ("business partners", "place tracking technologies"),
    ),
    "● In order to provide our services.Some business partners": (
        "tracking.third_parties",
        ("help us provide our services", "support chat"),
    ),
    "● for Analytics": (
        "tracking.third_parties",
        ("understand how you use our services", "google analytics"),
    ),
    "● used for marketing": (
        "purpose.advertising",
        ("measur", "retarget", "similar", "past interaction"),
    ),
    "● Advertisements should be placed": (
        "purpose.advertising",
        ("advertising networks", "more relevant"),
    ),
    "3.4 Your choice": ("tracking.choices", ("your choices",)),
    "● Our Cookies: Most web browsers": (
        "tracking.choices",
        ("browser", "mobile devices", "deleting", "may prevent our services from working"),
    ),
    "● Third-party advertising Cookie": (
        "tracking.choices",
        ("opt out of personalised advertising", "choices provided by others"),
    ),
    "○ Online advertising plan exit page": (
        "tracking.choices",
        ("network advertising initiative", "optout.networkadvertising.org"),
    ),
    "Digital advertising alliance exit page": (
        "tracking.choices",
        ("digital advertising alliance", "optout.aboutads.info"),
    ),
    "○ Your online choice (for Australian residents)": (
        "tracking.choices",
        ("youronlinechoices.com.au", "australia"),
    ),
    "○ Your online selection (for EU residents)": (
        "tracking.choices",
        ("youronlinechoices.eu", "european union"),
    ),
    "To exit Google Advertising Personalization": (
        "tracking.choices",
        (
            "google",
            "adssettings.google.com",
            "not responsible for its availability",
            "non-personalised",
        ),
    ),
    "● Google Analytics: We use Google Analytics": (
        "tracking.choices",
        ("google analytics", "tools.google.com/dlpage/gaoptout", "add-on"),
    ),
    "4. Security": ("security", ("how we protect your information",)),
    "We have adopted a series of management": (
        "security",
        (
            "management",
            "organisational",
            "technical",
            "physical",
            "unauthorised access",
            "continuously",
        ),
    ),
    "6. International data transmission": ("transfers", ("international transfers",)),
    "We may transfer your personal data to a country": (
        "transfers",
        ("countries other than", "group companies", "service providers", "partners", "may differ"),
    ),
}


def seed_paragraphs() -> list[str]:
    text = SEED_TEXT.read_text(encoding="utf-8")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _flat(block: dict[str, Any]) -> str:
    links = " ".join(link["href"] for link in block.get("links", []))
    if block["type"] == "paragraph":
        return block["text"] + " " + links
    if block["type"] == "list":
        return " ".join(i["text"] + " " + " ".join(i["details"]) for i in block["items"]) + links
    return " ".join(" ".join(row) for row in block["rows"]) + " " + links


def rendered_sections(policy) -> dict[str, str]:
    doc = json.loads(render_policy(policy, "en", "json"))
    out = {
        "(title)": doc["title"],
        "(preamble)": " ".join(_flat(b) for b in doc["preamble"]),
    }

    def walk(sections: list[dict[str, Any]]) -> None:
        for s in sections:
            out[s["id"]] = f"{s['number']}. {s['title']} " + " ".join(_flat(b) for b in s["blocks"])
            walk(s["sections"])

    walk(doc["sections"])
    return {k: re.sub(r"\s+", " ", v).lower() for k, v in out.items()}


def _entry(paragraph: str) -> tuple[str, tuple[str, ...]] | None:
    matches = [k for k in COVERAGE if paragraph.startswith(k)]
    return COVERAGE[max(matches, key=len)] if matches else None


def test_every_seed_paragraph_is_mapped():
    paragraphs = seed_paragraphs()
    assert len(paragraphs) > 40
    unmapped = [p[:60] for p in paragraphs if _entry(p) is None]
    assert unmapped == []


@pytest.mark.parametrize("paragraph", seed_paragraphs(), ids=lambda p: p[:40])
def test_paragraph_is_carried_by_its_section(seed, paragraph):
    entry = _entry(paragraph)
    assert entry is not None
    section, evidence = entry
    sections = rendered_sections(seed.policy)
    assert section in sections, f"no rendered section '{section}'"
    missing = [e for e in evidence if e.lower() not in sections[section]]
    assert missing == [], f"section '{section}' lacks {missing}"


def test_seed_defects_are_gone(seed):
    text = " ".join(rendered_sections(seed.policy).values())
    assert "display ads" not in text
    assert "section 3.1 below" not in text
    # Every purpose that once listed alternative bases is now one activity per basis.
    for purpose in seed.policy.purposes:
        bases = [a.basis for a in purpose.activities]
        assert all(isinstance(b, str) for b in bases)
    communicate = next(p for p in seed.policy.purposes if p.id == "communicate")
    assert len({a.basis for a in communicate.activities}) == 3
    harm = next(p for p in seed.policy.purposes if p.id == "prevent_harm")
    assert len({a.basis for a in harm.activities}) == 3
