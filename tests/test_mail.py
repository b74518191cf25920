"""Tagging outgoing e-mail: tracking only for recipients whose consent allows it, clean links
for everyone else, and the rest of the HTML exactly as it was."""

from __future__ import annotations

import json
import os
import random
import subprocess
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI

from conftest import SEED, TROTH_BIN
from troth.config import Settings
from troth.errors import ConsentError, TrackingError
from troth.keyring.subjects import SubjectHasher
from troth.policy.loader import LoadedPolicy, load_policy
from troth.policy.model import Policy
from troth.tracking.links import LinkSigner
from troth.tracking.mail import (
    OPEN_URL,
    TaggedEmail,
    strip_tracking_params,
    tag_batch,
    tag_email,
)
from troth.web.app import create_app
from troth.web.mail_api import mail_router

with warnings.catch_warnings():
    # starlette asks for `httpx2`; the dev environment has httpx (the test client works).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BASE = "https://troth.test"
ALICE = "acct:alice-000000000001"
BOB = "acct:bob-00000000000002"
SIGNER = LinkSigner(b"l" * 32)
HASHER = SubjectHasher(b"s" * 32)


def tag(source: str, allowed: list[str], policy: Policy, **overrides: Any) -> TaggedEmail:
    options: dict[str, Any] = {
        "recipient": ALICE,
        "campaign": "spring-2026",
        "base_url": BASE + "/",
        "allowed": allowed,
        "links": SIGNER,
        "policy": policy,
        "hash_subject": HASHER,
        **overrides,
    }
    return tag_email(source, **options)


class Parsed(HTMLParser):
    """Every link target and image of a document, as a browser would read them."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.hrefs: list[str | None] = []
        self.images: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href"))
        elif tag == "img":
            self.images.append(dict(attrs))

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:  # '<![foo[': a bogus comment to browsers
            end = self.rawdata.find(">", i + 3)
            return -1 if end < 0 else end + 1


def tracked_token(href: str | None) -> str:
    assert href is not None
    assert href.startswith(BASE + "/t/l/"), href
    return href.removeprefix(BASE + "/t/l/")


LETTER = (
    "<!DOCTYPE html>\r\n<html lang=en><HEAD><meta charset='utf-8'><title>Spring &amp; more"
    '</title><!-- <a href="https://in.comment/"> --></head>\r\n'
    '<BODY style="margin:0" data-x=1>\n'
    "<!--[if mso]><table><tr><td><![endif]-->\n"
    "<p class=intro>Hello &lt;Alice&gt; &#8212; caf\u00e9 \U0001f600</p>\n"
    "<a {a} class='btn' target=_blank>Read <b>more</b></a>\n"
    '<A title="x&quot;y" HREF={b}>second</A>\n'
    "<a href='mailto:hello@example.net?subject=Hi%20there&amp;utm_source=x'>mail</a>\n"
    '<a href="tel:+4930123">call</a> <a href="#top">top</a> <a href="/relative?utm_source=x">'
    'rel</a> <a href="//example.net/proto-relative?utm_source=x">proto</a>\n'
    '<a name="no-href">anchor</a><a href>empty</a><a href="">blank</a>\n'
    "<script>var s = '<a href=\"https://in.script/\">';</script>\n"
    "<img src=https://cdn.example.net/logo.png alt=Logo width=120>\n"
    "</BODY>\r\n</html>\r\n"
)
A_URL = "https://example.net/news?id=7&utm_source=newsletter&lang=de&UTM_Medium=email#part-2"
B_URL = "http://shop.example.net/cart"
A_RAW = 'href="https://example.net/news?id=7&amp;utm_source=newsletter&amp;lang=de&UTM_Medium=email#part-2"'
B_RAW = "http://shop.example.net/cart"


def letter(a: str = A_RAW, b: str = B_RAW) -> str:
    return LETTER.format(a=a, b=b)


# --- a recipient who allows tracking --------------------------------------------------------


def test_consented_recipient_gets_tracking_links_and_one_open_pixel(seed: LoadedPolicy):
    tagged = tag(letter(), ["analytics"], seed.policy)
    assert (tagged.tracked, tagged.links_rewritten, tagged.pixel) == (True, 2, True)
    parsed = Parsed(tagged.html)
    recipient_hash = HASHER(ALICE)
    for href, original in zip(parsed.hrefs[:2], [A_URL, B_URL], strict=True):
        claims = SIGNER.verify(tracked_token(href))
        assert claims.url == original
        assert (claims.tech, claims.campaign, claims.recipient) == (
            "email_click_link",
            "spring-2026",
            recipient_hash,
        )
    pixels = [i for i in parsed.images if (i["src"] or "").startswith(BASE + "/t/p/")]
    assert len(pixels) == 1
    [pixel] = pixels
    assert {k: v for k, v in pixel.items() if k != "src"} == {
        "width": "1",
        "height": "1",
        "alt": "",
        "style": "display:none",
    }
    src = urlsplit(pixel["src"] or "")
    assert src.path == "/t/p/email_open_pixel.gif"
    query = parse_qs(src.query)
    assert query["k"] == ["open"]
    assert query["c"] == ["spring-2026"]
    assert "j" not in query
    open_claims = SIGNER.verify(query["m"][0])
    assert (open_claims.url, open_claims.tech, open_claims.recipient) == (
        OPEN_URL,
        "email_open_pixel",
        recipient_hash,
    )
    assert open_claims.campaign == "spring-2026"


def test_consented_output_differs_only_in_the_rewritten_hrefs_and_the_pixel(seed: LoadedPolicy):
    tagged = tag(letter(), ["analytics"], seed.policy)
    parsed = Parsed(tagged.html)
    first, second = parsed.hrefs[:2]
    pixel_tag = tagged.html[tagged.html.index('<img src="' + BASE) :]
    pixel_tag = pixel_tag[: pixel_tag.index(">") + 1]
    expected = letter(a=f'href="{first}"', b=f'"{second}"').replace(
        "</BODY>", pixel_tag + "</BODY>"
    )
    assert tagged.html == expected
    assert tagged.html.index(pixel_tag) == tagged.html.index("</BODY>") - len(pixel_tag)


def test_a_required_category_is_tracked_without_a_choice(seed: LoadedPolicy):
    necessary = seed.policy.model_copy(
        update={
            "tracking": [
                t.model_copy(update={"category": "necessary"}) if "email" in t.platforms else t
                for t in seed.policy.tracking
            ]
        }
    )
    tagged = tag(letter(), [], necessary)
    assert tagged.tracked
    assert tagged.pixel
    assert tagged.links_rewritten == 2


# --- everyone else ----------------------------------------------------------------------------


def test_other_recipients_get_clean_links_and_no_pixel(seed: LoadedPolicy):
    for allowed in ([], ["preferences", "advertising"]):
        tagged = tag(letter(), allowed, seed.policy)
        assert (tagged.tracked, tagged.links_rewritten, tagged.pixel) == (False, 1, False)
        assert "/t/" not in tagged.html
        parsed = Parsed(tagged.html)
        assert parsed.hrefs[0] == "https://example.net/news?id=7&lang=de#part-2"
        assert parsed.hrefs[1] == B_URL
        clean = letter(a='href="https://example.net/news?id=7&amp;lang=de#part-2"')
        assert tagged.html == clean


def test_strip_tracking_params_keeps_everything_else_in_order():
    assert strip_tracking_params("https://x.example/p?b=2&utm_source=n&a=1&gclid=9") == (
        "https://x.example/p?b=2&a=1"
    )
    assert strip_tracking_params(
        "https://x.example/?fbclid=1&mc_eid=2&_hsenc=3&_hsmi=4&utm_x=5#f"
    ) == ("https://x.example/#f")
    assert strip_tracking_params("https://x.example/?q=a%20b&&utm%5Fsource=x&z") == (
        "https://x.example/?q=a%20b&&z"
    )
    assert strip_tracking_params("https://x.example/?utmost=1&mc_cid=2") is None
    assert strip_tracking_params("https://x.example/utm_source") is None


def test_links_that_are_not_http_are_never_touched(seed: LoadedPolicy):
    source = (
        '<a href="mailto:a@example.net?utm_source=x">m</a><a href="tel:+1?utm_source=x">t</a>'
        '<a href="#utm_source=x">h</a><a href="page.html?utm_source=x">r</a>'
        '<a href="//cdn.example.net/?utm_source=x">p</a><a href="ftp://example.net/?gclid=1">f</a>'
        "<a>none</a><a href>bare</a><a href=''>empty</a><a href=\"http:no-host?gclid=1\">nh</a>"
    )
    for allowed in (["analytics"], []):
        tagged = tag(source, allowed, seed.policy)
        assert tagged.links_rewritten == 0
        assert tagged.html.split("<img ", 1)[0] == source
        assert tagged.pixel == bool(allowed)


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)//http://example.net/?utm_source=x",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java&#x09;script:alert(document.domain)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "http://exa mple.net/?utm_source=x",
        "https://exa\nmple.net/?utm_source=x",
        "http://[::1/?utm_source=x",
    ],
)
def test_hostile_links_are_left_alone_and_never_tracked(seed: LoadedPolicy, href: str):
    source = f'<p><a href="{href}" onclick="x()">click</a></p>'
    for allowed in (["analytics"], []):
        tagged = tag(source, allowed, seed.policy)
        assert tagged.links_rewritten == 0
        assert tagged.html.split("<img ", 1)[0] == source
        assert "/t/l/" not in tagged.html


def test_quotes_in_a_url_cannot_break_out_of_the_attribute(seed: LoadedPolicy):
    source = (
        "<a href='https://example.net/?utm_source=x&amp;q=\"><script>alert(1)</script>'>x</a>"
        '<a href="https://example.net/?q=&#39;onmouseover=alert(1)&gclid=2">y</a>'
    )
    for allowed in (["analytics"], []):
        tagged = tag(source, allowed, seed.policy)
        assert tagged.links_rewritten == 2
        parsed = Parsed(tagged.html)
        assert "script" not in parsed.tags
        if not allowed:
            assert parsed.hrefs == [
                'https://example.net/?q="><script>alert(1)</script>',
                "https://example.net/?q='onmouseover=alert(1)",
            ]
        else:
            urls = [SIGNER.verify(tracked_token(h)).url for h in parsed.hrefs]
            assert urls == [
                'https://example.net/?utm_source=x&q="><script>alert(1)</script>',
                "https://example.net/?q='onmouseover=alert(1)&gclid=2",
            ]


def test_references_in_hrefs_are_read_as_browsers_read_them(seed: LoadedPolicy):
    # In an attribute, '&para' before 'm' and '&copy' before '=' are not references.
    source = (
        '<a href="https://example.net/?utm_source=x&param=2&copy=3&amp;b=&lt;&#65;&not;c">x</a>'
    )
    tagged = tag(source, [], seed.policy)
    assert (
        tagged.html == '<a href="https://example.net/?param=2&amp;copy=3&amp;b=&lt;A\u00acc">x</a>'
    )
    assert Parsed(tagged.html).hrefs == ["https://example.net/?param=2&copy=3&b=<A\u00acc"]
    tracked = tag(source, ["analytics"], seed.policy)
    claims = SIGNER.verify(tracked_token(Parsed(tracked.html).hrefs[0]))
    assert claims.url == "https://example.net/?utm_source=x&param=2&copy=3&b=<A\u00acc"


def test_hrefs_browsers_read_differently_are_left_alone(seed: LoadedPolicy):
    for source in (
        "<a href=='https://example.net/?gclid=1'>eq</a>",
        "<a href='https://example.net/?gclid=1>unterminated</a>",
    ):
        for allowed in (["analytics"], []):
            tagged = tag(source, allowed, seed.policy)
            assert tagged.links_rewritten == 0
            assert tagged.html.split("<img ", 1)[0] == source


MALFORMED = [
    "",
    "plain text, no markup",
    "<",
    "<a href=",
    '<a href="https://example.net/?utm_source=x',
    "<a href='https://example.net/?utm_source=x'",
    "<a href=https://example.net/?gclid=1",
    "<![foo[ <a href='https://example.net/'> ]]>",
    "<![if !mso]><a href='https://example.net/?gclid=1'>x</a><![endif]>",
    "<!-- unclosed comment <a href='https://example.net/'>",
    "<body><a href='https://example.net/?gclid=1'><a href='https://example.net/b'></body></body>",
    "</a></body></html><a href='https://example.net/?gclid=1'>after</a>",
    "<a href='https://example.net/?gclid=1' href='https://evil.example/'>dup</a>",
    "<a\x00href='https://example.net/'>nul</a>",
    '<a href = "https://example.net/?gclid=1" / >spaced</a>',
    "<a/href='https://example.net/?gclid=1'>slash</a>",
    "<a href=='https://example.net/?gclid=1'>eq</a>",
    "<a href='https://example.net/?gclid=1'title=x>glued</a>",
    "<?xml version='1.0'?><!DOCTYPE x [ <!ENTITY e 'y'> ]><a href='https://example.net'>x</a>",
    "<a href='https://example.net/?x=&#xffffffff;&gclid=1'>bad ref</a>",
    "<a href='https://example.net/\ud800?gclid=1'>surrogate</a>",
]


@pytest.mark.parametrize("source", MALFORMED)
def test_malformed_html_does_not_crash(seed: LoadedPolicy, source: str):
    for allowed in (["analytics"], []):
        tagged = tag(source, allowed, seed.policy)
        assert isinstance(tagged.html, str)
        assert tagged.pixel == bool(allowed)
        Parsed(tagged.html)


def test_random_markup_never_crashes_and_clean_output_is_the_input(seed: LoadedPolicy):
    rng = random.Random(20260501)
    pieces = [
        "<", ">", "/", "!", "-", "[", "]", "=", "'", '"', " ", "\n", "a", "&", "#", ";", "x",
        "<a href=", "https://example.net/", "?", "utm_source=1", "&amp;", "<body>", "</body>",
        "<![", "<!--", "-->", "<script>", "</script>", "href", "<img src=",
    ]  # fmt: skip
    for _ in range(1500):
        source = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        consented = tag(source, ["analytics"], seed.policy)
        clean = tag(source, [], seed.policy)
        if clean.links_rewritten == 0:
            assert clean.html == source
        assert consented.pixel
        assert not clean.pixel


# --- placement, batches, limits ---------------------------------------------------------------


def test_the_pixel_goes_before_body_end_else_html_end_else_at_the_end(seed: LoadedPolicy):
    def where(source: str) -> str:
        out = tag(source, ["analytics"], seed.policy).html
        start = out.index("<img src=")
        return out[:start] + "PIXEL" + out[out.index(">", start) + 1 :]

    assert where("<html><body><p>x</p></body></html>") == (
        "<html><body><p>x</p>PIXEL</body></html>"
    )
    assert where("<html><p>x</p></html>") == "<html><p>x</p>PIXEL</html>"
    assert where("<p>x</p>") == "<p>x</p>PIXEL"
    assert where("<script>'</body>'</script><p>x") == "<script>'</body>'</script><p>xPIXEL"


def test_tagging_twice_does_not_wrap_links_again_or_add_a_second_pixel(seed: LoadedPolicy):
    once = tag(letter(), ["analytics"], seed.policy)
    twice = tag(once.html, ["analytics"], seed.policy)
    assert twice.html == once.html
    assert (twice.links_rewritten, twice.pixel) == (0, False)


def test_an_overlong_url_stays_a_plain_link(seed: LoadedPolicy):
    url = "https://example.net/?q=" + "x" * 2000
    tagged = tag(f'<a href="{url}">long</a><a href="https://example.net/">ok</a>', ["analytics"],
                 seed.policy)  # fmt: skip
    assert Parsed(tagged.html).hrefs[0] == url
    assert tagged.links_rewritten == 1


def test_tag_batch_reads_once_and_tags_each_recipient_by_their_consent(seed: LoadedPolicy):
    consents = {ALICE: {"analytics"}, BOB: set[str]()}
    tagged = tag_batch(
        letter(),
        recipients=[ALICE, BOB, ALICE],
        campaign="spring-2026",
        base_url=BASE,
        allowed=lambda r: consents[r],
        links=SIGNER,
        policy=seed.policy,
        hash_subject=HASHER,
    )
    assert list(tagged) == [ALICE, BOB]
    assert tagged[ALICE].tracked
    assert tagged[ALICE].pixel
    assert SIGNER.verify(tracked_token(Parsed(tagged[ALICE].html).hrefs[0])).recipient == (
        HASHER(ALICE)
    )
    assert not tagged[BOB].tracked
    assert "/t/" not in tagged[BOB].html


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"campaign": "Spring"}, TrackingError, "campaign:"),
        ({"campaign": ""}, TrackingError, "campaign:"),
        ({"campaign": "a" * 65}, TrackingError, "campaign:"),
        ({"campaign": "spring\n"}, TrackingError, "campaign:"),
        ({"base_url": "troth.test"}, TrackingError, "base_url:"),
        ({"base_url": "javascript:alert(1)"}, TrackingError, "base_url:"),
        ({"base_url": "https://troth.test/?a=1"}, TrackingError, "base_url:"),
        ({"base_url": "https://user@troth.test"}, TrackingError, "base_url:"),
        ({"recipient": "short"}, ConsentError, "subject:"),
        ({"jurisdiction": "atlantis"}, TrackingError, "jurisdiction:"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    seed: LoadedPolicy, overrides: dict[str, Any], error: type[Exception], field: str
):
    with pytest.raises(error) as caught:
        tag("<a href='https://example.net/'>x</a>", ["analytics"], seed.policy, **overrides)
    assert str(caught.value).startswith(field)


def test_a_policy_without_email_technologies_cannot_tag(minimal: LoadedPolicy):
    with pytest.raises(TrackingError, match=r"^tracking: .*'email'"):
        tag("<p>x</p>", [], minimal.policy)


def test_html_over_512_kib_is_refused(seed: LoadedPolicy):
    with pytest.raises(TrackingError, match=r"^html: at most 524288 bytes"):
        tag("\u00e9" * (256 * 1024 + 1), [], seed.policy)


# --- the API ----------------------------------------------------------------------------------


def new_app(work: Path, **settings: Any) -> tuple[FastAPI, dict[str, str]]:
    """The app as create_app builds it, with the mail router added, and API keys by role."""
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'troth.db'}"
    heads = work / "audit" / "heads.jsonl"
    app = create_app(
        load_policy(SEED).policy,
        Settings(
            database_url=url,
            keys_dir=work / "keys",
            audit_heads=heads,
            erasures=work / "audit" / "erasures.jsonl",
            **settings,
        ),
    )
    app.include_router(mail_router())
    env = {**os.environ, "TROTH_KEYS_DIR": str(work / "keys"), "TROTH_AUDIT_HEADS": str(heads)}
    keys = {}
    for role in ("service", "privacy_officer"):
        out = subprocess.run(
            [TROTH_BIN, "keys", "create", "--role", role, "--label", f"mail {role}",
             "--database-url", url],
            capture_output=True, text=True, env=env, cwd=work, check=True, timeout=60,
        )  # fmt: skip
        keys[role] = out.stdout.strip()
    return app, keys


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app, keys = new_app(tmp_path_factory.mktemp("mail-api"))
    with TestClient(app) as client:
        yield client, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mail(recipient: str, **extra: Any) -> dict[str, Any]:
    return {"html": letter(), "recipient": recipient, "campaign": "spring-2026", **extra}


def test_api_tags_by_the_recorded_consent(api: tuple[TestClient, dict[str, str]]):
    client, keys = api
    r = client.post("/api/consent", json={"subject": ALICE, "choices": {"analytics": "given"}})
    assert r.status_code == 201, r.text
    r = client.post("/api/consent", json={"subject": BOB, "choices": {"analytics": "refused"}})
    assert r.status_code == 201, r.text

    r = client.post("/api/mail/tag", json=mail(ALICE), headers=auth(keys["service"]))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    alice = r.json()
    assert {k: v for k, v in alice.items() if k != "html"} == {
        "tracked": True,
        "links_rewritten": 2,
        "pixel": True,
    }
    services = client.app.state.services  # type: ignore[attr-defined]
    href = Parsed(alice["html"]).hrefs[0] or ""
    assert href.startswith("http://testserver/t/l/")
    claims = services.links.verify(href.removeprefix("http://testserver/t/l/"))
    assert claims.url == A_URL
    assert claims.recipient == services.ledger.hash(ALICE)
    assert claims.campaign == "spring-2026"

    r = client.post("/api/mail/tag", json=mail(BOB), headers=auth(keys["service"]))
    assert r.status_code == 200, r.text
    bob = r.json()
    assert {k: v for k, v in bob.items() if k != "html"} == {
        "tracked": False,
        "links_rewritten": 1,
        "pixel": False,
    }
    assert "/t/" not in bob["html"]
    assert bob["html"] == letter(a='href="https://example.net/news?id=7&amp;lang=de#part-2"')

    # Nobody recorded anything for this one: the default (opt-in) jurisdiction says no,
    # an opt-out one says yes until they refuse.
    carol = "acct:carol-0000000000003"
    r = client.post("/api/mail/tag", json=mail(carol), headers=auth(keys["service"]))
    assert r.json()["tracked"] is False
    r = client.post(
        "/api/mail/tag",
        json=mail(carol, jurisdiction="us_ca", base_url="https://mail.example.net/"),
        headers=auth(keys["service"]),
    )
    assert r.json()["tracked"] is True
    href = Parsed(r.json()["html"]).hrefs[0] or ""
    assert href.startswith("https://mail.example.net/t/l/")
    [pixel] = [
        i["src"] or "" for i in Parsed(r.json()["html"]).images if "/t/p/" in (i["src"] or "")
    ]
    # Both tokens carry the jurisdiction the e-mail was tagged under, signed: a click and an
    # open are judged as the tagging was. No unsigned "j" parameter is needed any more.
    query = parse_qs(urlsplit(pixel).query)
    assert "j" not in query
    assert services.links.verify(query["m"][0]).jurisdiction == "us_ca"
    link = services.links.verify(href.removeprefix("https://mail.example.net/t/l/"))
    assert link.jurisdiction == "us_ca"
    # Tagged under the default jurisdiction, the tokens carry none (judged by the default).
    r = client.post("/api/mail/tag", json=mail(ALICE), headers=auth(keys["service"]))
    alice_link = (Parsed(r.json()["html"]).hrefs[0] or "").removeprefix("http://testserver/t/l/")
    assert services.links.verify(alice_link).jurisdiction is None


def test_api_needs_a_key_with_vault_use(api: tuple[TestClient, dict[str, str]]):
    client, keys = api
    r = client.post("/api/mail/tag", json=mail(ALICE))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post("/api/mail/tag", json=mail(ALICE), headers=auth("troth_nope_nope"))
    assert r.status_code == 401
    r = client.post("/api/mail/tag", json=mail(ALICE), headers=auth(keys["privacy_officer"]))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"campaign": "Not Valid"}, "campaign"),
        ({"recipient": "x"}, "recipient"),
        ({"jurisdiction": "atlantis"}, "jurisdiction:"),
        ({"base_url": "ftp://troth.test"}, "base_url:"),
        ({"extra": 1}, "extra"),
    ],
)
def test_api_refuses_bad_input_with_422(
    api: tuple[TestClient, dict[str, str]], change: dict[str, Any], field: str
):
    client, keys = api
    r = client.post("/api/mail/tag", json={**mail(ALICE), **change}, headers=auth(keys["service"]))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(field)


def test_api_refuses_html_that_is_not_unicode(api: tuple[TestClient, dict[str, str]]):
    client, keys = api
    content = json.dumps({**mail(ALICE), "html": "caf\ud800"})  # a lone surrogate, escaped
    headers = {**auth(keys["service"]), "Content-Type": "application/json"}
    r = client.post("/api/mail/tag", content=content, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("html")


def test_api_default_body_limit_refuses_mails_over_16_kib(api: tuple[TestClient, dict[str, str]]):
    client, keys = api
    big = {**mail(BOB), "html": "<p>" + "x" * 17_000 + "</p>"}
    r = client.post("/api/mail/tag", json=big, headers=auth(keys["service"]))
    assert r.status_code == 413


def test_api_takes_512_kib_when_the_body_limit_is_raised(tmp_path: Path):
    app, keys = new_app(tmp_path, max_body_bytes=600_000)
    body = "<p>" + "x" * (512 * 1024 - len("<p></p>")) + "</p>"
    assert len(body.encode()) == 512 * 1024
    with TestClient(app) as client:
        r = client.post(
            "/api/mail/tag", json={**mail(BOB), "html": body}, headers=auth(keys["service"])
        )
        assert r.status_code == 200, r.text[:200]
        assert r.json()["html"] == body
        r = client.post(
            "/api/mail/tag",
            json={**mail(BOB), "html": body[:-10] + "\u00e9" * 6},  # 2 bytes over
            headers=auth(keys["service"]),
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("html")
