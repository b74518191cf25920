"""The tracking endpoints of a real `troth serve`, on SQLite and on PostgreSQL.

What a site's visitors rely on: a hit leaves behind only what their consent and signals
allow (a full event with a truncated IP, a bare count, or nothing), the pixel's answer is
the same whatever was kept, a tracking link leads only where its signature says, and
hostile input is refused with a problem document and stores nothing.

Results are read directly from the tables, not through troth. Best-effort hits are
buffered; ``flush`` waits for them with a barrier hit instead of sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, MetaData, create_engine, select
from starlette.types import ASGIApp, Receive, Scope, Send

from conftest import SEED, TROTH_BIN, Server, new_postgres_database, running_server
from troth.config import Settings
from troth.errors import TrackingError
from troth.keyring.signing import b64
from troth.keyring.subjects import SubjectHasher
from troth.policy.loader import LoadedPolicy, load_policy
from troth.store.tables import tracking_aggregates, tracking_events
from troth.tracking.links import LinkSigner
from troth.web.app import create_app
from troth.web.tracking_api import PIXEL, tracking_router

PROBLEM = "application/problem+json"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
NO_RATE_LIMIT = {  # the module's tests share one server and one client network
    "TROTH_WRITE_RATE_PER_MINUTE": "1000000",
    "TROTH_TRACKING_RATE_PER_MINUTE": "1000000",
}
OPEN_URL = "https://troth.invalid/open"
PREFIX = "127.0.0.0/24"  # the test client is 127.0.0.1


@dataclass
class Site:
    server: Server
    client: httpx.Client
    engine: Engine
    keys: Path

    @property
    def links(self) -> LinkSigner:
        return LinkSigner((self.keys / "tracking-links.key").read_bytes())

    def subject_hash(self, visitor: str) -> str:
        return SubjectHasher((self.keys / "subject.key").read_bytes())(visitor)

    def consent(self, visitor: str, choice: str, jurisdiction: str) -> None:
        body = {
            "subject": visitor,
            "choices": {"analytics": choice, "advertising": choice},
            "jurisdiction": jurisdiction,
        }
        r = self.client.post("/api/consent", json=body)
        assert r.status_code == 201, r.text

    def flush(self) -> None:
        """Wait until every best-effort hit sent so far is written: send a hit that is always
        counted (page_pixel, no consent, eu) and wait for its count. The buffer is flushed
        oldest first, one flush after the other."""
        campaign = f"barrier-{uuid.uuid4().hex[:12]}"
        assert self.client.get(f"/t/p/page_pixel.gif?c={campaign}").status_code == 200
        query = select(tracking_aggregates.c.count).where(
            tracking_aggregates.c.campaign == campaign
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                if conn.execute(query).first() is not None:
                    return
            time.sleep(0.05)
        pytest.fail("best-effort hits were not written within 10 s")

    def events(self, prefix: str = "") -> list[dict[str, Any]]:
        query = select(tracking_events).where(tracking_events.c.campaign.startswith(prefix))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def aggregates(self, prefix: str = "") -> list[dict[str, Any]]:
        query = select(tracking_aggregates).where(tracking_aggregates.c.campaign.startswith(prefix))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def stored(self) -> tuple[int, int]:
        """(event rows, hits counted), leaving out the barriers."""
        aggregates = [a for a in self.aggregates() if not a["campaign"].startswith("barrier-")]
        return len(self.events()), sum(a["count"] for a in aggregates)

    def dump(self) -> str:
        """Every row of every table, as text."""
        meta = MetaData()
        meta.reflect(self.engine)
        with self.engine.connect() as conn:
            return "\n".join(
                repr(tuple(row))
                for table in meta.sorted_tables
                for row in conn.execute(select(table))
            )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """One server per engine for the module (starting one is the slow part); each test uses
    its own visitors and campaigns."""
    work = tmp_path_factory.mktemp(f"tracking-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{work / 'troth.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_server"))
    args = {"connect_timeout": 10} if url.startswith("postgresql") else {"timeout": 10}
    engine = create_engine(url, connect_args=args)
    try:
        with (
            running_server(SEED, url, work / "work", env=NO_RATE_LIMIT) as server,
            httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
        ):
            yield Site(server, client, engine, work / "work" / "keys")
            assert "Traceback" not in server.output(), server.output()
            assert "unexpected" not in server.output(), server.output()
            assert "failed" not in server.output(), server.output()
    finally:
        engine.dispose()


def new_visitor() -> str:
    return secrets.token_urlsafe(16)  # 22 characters, like the banner's


def consent_cookie(visitor: str) -> dict[str, str]:
    """The banner's cookie; it claims everything was given, which the server must ignore:
    consent is read from the ledger, only the visitor id from the cookie."""
    return {"Cookie": f"troth_consent=v1.{visitor}.1.1.0.analytics:1:0~advertising:1:0"}


def assert_problem(r: httpx.Response, status: int | set[int], *words: str) -> None:
    wanted = {status} if isinstance(status, int) else status
    assert r.status_code in wanted, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    assert "location" not in r.headers
    body = r.json()
    assert body["status"] == r.status_code
    for word in words:
        assert word in body["detail"], (word, body["detail"])


# --- the consent matrix -------------------------------------------------------------------

F, A, D = "full", "aggregate", "drop"
TECHS = ("page_pixel", "ad_pixel", "email_open_pixel", "analytics_sdk", "email_click_link")
RECORDABLE = ("pixel", "web_beacon", "tracking_link", "sdk")
SIGNALS: dict[str, tuple[str, dict[str, str]]] = {
    "eu": ("eu", {}),  # opt-in, no signal
    "us_ca": ("us_ca", {}),  # opt-out, no signal
    "gpc": ("us_ca", {"Sec-GPC": "1"}),  # GPC refuses advertising in us_ca
    "dnt_eu": ("eu", {"DNT": "1"}),
    "dnt_us": ("us_ca", {"DNT": "1"}),
}
# (consent, signals) -> outcome for page_pixel (analytics, counted without consent), ad_pixel
# (advertising), email_open_pixel (analytics), analytics_sdk (analytics, durable) and
# email_click_link (analytics, a click through /t/l). DNT is a refusal of everything that
# needs consent. The open token and the tracking link carry the recipient's jurisdiction,
# signed, as `troth mail tag` makes them: a click is judged exactly as the open is.
EXPECTED: dict[tuple[str, str], tuple[str, str, str, str, str]] = {
    ("none", "eu"): (A, D, D, D, D),
    ("none", "us_ca"): (F, F, F, F, F),
    ("none", "gpc"): (F, D, F, F, F),
    ("none", "dnt_eu"): (A, D, D, D, D),
    ("none", "dnt_us"): (A, D, D, D, D),
    ("given", "eu"): (F, F, F, F, F),
    ("given", "us_ca"): (F, F, F, F, F),
    ("given", "gpc"): (F, D, F, F, F),
    ("given", "dnt_eu"): (A, D, D, D, D),
    ("given", "dnt_us"): (A, D, D, D, D),
    ("refused", "eu"): (A, D, D, D, D),
    ("refused", "us_ca"): (A, D, D, D, D),
    ("refused", "gpc"): (A, D, D, D, D),
    ("refused", "dnt_eu"): (A, D, D, D, D),
    ("refused", "dnt_us"): (A, D, D, D, D),
    ("withdrawn", "eu"): (A, D, D, D, D),
    ("withdrawn", "us_ca"): (A, D, D, D, D),
    ("withdrawn", "gpc"): (A, D, D, D, D),
    ("withdrawn", "dnt_eu"): (A, D, D, D, D),
    ("withdrawn", "dnt_us"): (A, D, D, D, D),
}
KIND = {"page_pixel": "view", "ad_pixel": "view", "email_open_pixel": "open"}
PROPS = {"plan": "pro", "seats": 3, "ratio": 0.5, "trial": False}


def test_the_seed_declares_no_recordable_necessary_technology(seed: LoadedPolicy) -> None:
    """The matrix has no 'strictly necessary' row: every necessary or security technology
    of the seed is a cookie, which no tracking endpoint records. If one is added, add it."""
    necessary = [
        t.id
        for t in seed.policy.tracking
        if t.category in ("necessary", "security") and t.type in RECORDABLE
    ]
    assert necessary == []
    declared = {t.id: (t.type, t.category) for t in seed.policy.tracking}
    assert declared["page_pixel"] == ("pixel", "analytics")
    assert declared["ad_pixel"] == ("web_beacon", "advertising")
    assert declared["email_open_pixel"] == ("pixel", "analytics")
    assert declared["analytics_sdk"] == ("sdk", "analytics")


def test_consent_matrix(site: Site) -> None:
    run = uuid.uuid4().hex[:6]
    visitors: dict[tuple[str, str], str] = {}
    for state, signal in EXPECTED:
        vid = visitors[(state, signal)] = new_visitor()
        jurisdiction = SIGNALS[signal][0]
        if state in ("given", "withdrawn"):
            site.consent(vid, "given", jurisdiction)
        if state in ("refused", "withdrawn"):
            site.consent(vid, "refused", jurisdiction)

    gifs: set[bytes] = set()
    for (state, signal), expected in EXPECTED.items():
        vid = visitors[(state, signal)]
        jurisdiction, headers = SIGNALS[signal]
        campaign = f"m{run}-{state}-{signal}"
        page = {**headers, **consent_cookie(vid)}
        page["Referer"] = "https://www.example.net/pricing?email=someone%40example.org#top"
        for tech in ("page_pixel", "ad_pixel"):
            r = site.client.get(f"/t/p/{tech}.gif?c={campaign}&j={jurisdiction}", headers=page)
            assert r.status_code == 200, r.text
            gifs.add(r.content)
        token = site.links.sign(
            OPEN_URL,
            tech="email_open_pixel",
            campaign=campaign,
            recipient=site.subject_hash(vid),
            jurisdiction=jurisdiction,
        )
        r = site.client.get(
            "/t/p/email_open_pixel.gif",
            params={"k": "open", "c": campaign, "m": token},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        gifs.add(r.content)
        # A click through a signed tracking link always redirects, whatever is kept.
        link = site.links.sign(
            "https://www.example.net/plans",
            tech="email_click_link",
            campaign=campaign,
            recipient=site.subject_hash(vid),
            jurisdiction=jurisdiction,
        )
        r = site.client.get(f"/t/l/{link}", headers=headers, follow_redirects=False)
        assert r.status_code == 302, r.text
        assert r.headers["location"] == "https://www.example.net/plans"
        # The SDK technology is durable: once acknowledged, its event must already be there.
        r = site.client.post(
            "/t/e",
            json={
                "events": [
                    {
                        "tech": "analytics_sdk",
                        "name": "screen_view",
                        "campaign": campaign,
                        "page": "/app/home",
                        "props": PROPS,
                    }
                ],
                "visitor": vid,
                "jurisdiction": jurisdiction,
            },
            headers=headers,
        )
        assert r.status_code == 202, r.text
        full = expected[3] == F
        assert r.json() == {"accepted": int(full), "counted": 0, "dropped": int(not full)}
        stored = [e for e in site.events(campaign) if e["tech_id"] == "analytics_sdk"]
        assert len(stored) == int(full), (state, signal)

    # The pixel answers the same bytes whatever was kept: its answer reveals no consent.
    assert len(gifs) == 1

    site.flush()
    events = site.events(f"m{run}-")
    aggregates = site.aggregates(f"m{run}-")
    actual: dict[tuple[str, str], tuple[str, ...]] = {}
    for state, signal in EXPECTED:
        campaign = f"m{run}-{state}-{signal}"
        outcomes = []
        for tech in TECHS:
            rows = [e for e in events if e["tech_id"] == tech and e["campaign"] == campaign]
            counts = {
                a["consent"]: a["count"]
                for a in aggregates
                if a["tech_id"] == tech and a["campaign"] == campaign
            }
            if len(rows) == 1 and counts == {"given": 1}:
                outcomes.append(F)
            elif not rows and counts == {"none": 1}:
                outcomes.append(A)
            elif not rows and not counts:
                outcomes.append(D)
            else:
                outcomes.append(f"unexpected: {len(rows)} events, counts {counts}")
        actual[(state, signal)] = tuple(outcomes)
    assert actual == EXPECTED

    # What a full event keeps: a truncated IP, a keyed hash for the visitor, the page path.
    for e in events:
        state, signal = e["campaign"].split("-")[1:]
        hashed = site.subject_hash(visitors[(state, signal)])[:40]
        assert e["ip_prefix"] == PREFIX
        if e["tech_id"] == "email_open_pixel":
            assert (e["kind"], e["visitor"], e["page"]) == ("open", "s:" + hashed, "")
        elif e["tech_id"] == "email_click_link":
            assert (e["kind"], e["visitor"]) == ("click", "s:" + hashed)
        else:
            assert e["visitor"] == "c:" + hashed
        if e["tech_id"] == "analytics_sdk":
            assert (e["kind"], e["name"], e["page"], e["props"]) == (
                "event",
                "screen_view",
                "/app/home",
                PROPS,
            )
        elif e["tech_id"] not in ("email_open_pixel", "email_click_link"):
            assert (e["kind"], e["page"], e["props"]) == (KIND[e["tech_id"]], "/pricing", {})
    assert len(events) == sum(o.count(F) for o in EXPECTED.values())

    # Neither the client's IP address nor a visitor id is stored anywhere, in any table.
    everything = site.dump()
    assert "127.0.0.1" not in everything
    for vid in visitors.values():
        assert vid not in everything


def test_without_a_visitor_id_a_full_hit_gets_a_daily_salted_id(site: Site) -> None:
    campaign = f"anon-{uuid.uuid4().hex[:8]}"
    headers = {"User-Agent": "test-agent/1.0", "Referer": "https://www.example.net/a/b?x=1"}
    for _ in range(2):
        r = site.client.get(f"/t/p/page_pixel.gif?c={campaign}&j=us_ca", headers=headers)
        assert r.status_code == 200
    site.flush()
    events = site.events(campaign)
    assert len(events) == 2
    assert {e["visitor"] for e in events} == {events[0]["visitor"]}  # same person, same day
    assert events[0]["visitor"].startswith("d:")
    assert {(e["ip_prefix"], e["page"]) for e in events} == {(PREFIX, "/a/b")}


# --- the pixel ----------------------------------------------------------------------------


def test_pixel_is_a_transparent_1x1_gif_that_is_never_cached(site: Site) -> None:
    for url in (
        "/t/p/page_pixel.gif",
        "/t/p/ad_pixel.gif?c=spring&k=view&j=us_ca",
        "/t/p/email_open_pixel.gif?k=open&j=nowhere",  # an undeclared region: the default
    ):
        r = site.client.get(url)
        assert r.status_code == 200, (url, r.text)
        assert r.headers["content-type"] == "image/gif"
        assert r.headers["cache-control"] == "no-store"
        gif = r.content
        assert gif[:6] == b"GIF89a"
        assert struct.unpack("<HH", gif[6:10]) == (1, 1)
        assert gif[-1:] == b";"
        assert len(gif) == 42


def test_pixel_of_an_unknown_or_non_pixel_technology_is_a_404_problem(site: Site) -> None:
    for tech in ("nope", "session", "fraud_sid", "email_click_link", "analytics_sdk", "x" * 300):
        assert_problem(site.client.get(f"/t/p/{tech}.gif"), 404)


# --- tracking links -----------------------------------------------------------------------

DESTINATION = "https://www.example.net/plans?utm_campaign=nov&x=%C3%A9#compare"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_signed_link_redirects_exactly_where_it_was_signed_to(site: Site) -> None:
    vid = new_visitor()
    site.consent(vid, "given", "eu")
    campaign = f"l-{uuid.uuid4().hex[:8]}"
    token = site.links.sign(
        DESTINATION, tech="email_click_link", campaign=campaign, recipient=site.subject_hash(vid)
    )
    # A ``url`` parameter does nothing: the destination comes only from the signed token.
    for url in (f"/t/l/{token}", f"/t/l/{token}?url=https://evil.example/"):
        r = site.client.get(url, follow_redirects=False)
        assert r.status_code == 302, r.text
        assert r.headers["location"] == DESTINATION
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "no-referrer"

    clean = f"l-clean-{uuid.uuid4().hex[:8]}"  # no recipient, no cookie, eu: not recorded
    r = site.client.get(
        f"/t/l/{site.links.sign(DESTINATION, tech='email_click_link', campaign=clean)}"
    )
    assert r.status_code == 302
    assert r.headers["location"] == DESTINATION

    site.flush()
    clicks = site.events(campaign)
    assert len(clicks) == 2
    for click in clicks:
        assert (click["tech_id"], click["kind"], click["ip_prefix"]) == (
            "email_click_link",
            "click",
            PREFIX,
        )
        assert click["visitor"] == "s:" + site.subject_hash(vid)[:40]
    assert site.events(clean) == []
    assert site.aggregates(clean) == []


def test_no_altered_expired_or_foreign_link_ever_redirects(site: Site) -> None:
    campaign = f"bad-{uuid.uuid4().hex[:8]}"
    token = site.links.sign(DESTINATION, tech="email_click_link", campaign=campaign)
    site.flush()
    before = site.stored()

    bad: list[str] = []
    for i, char in enumerate(token):  # every single character altered, body and signature
        other = "A" if char == "." else next(c for c in ALPHABET if c != char)
        bad.append(token[:i] + other + token[i + 1 :])
    body, mac = token.split(".")
    bad += [token[:-1], token[: len(token) // 2], body, body + ".", "." + mac, token + "A"]
    expired = site.links.sign(DESTINATION, tech="email_click_link", campaign=campaign, ttl=-1)
    bad.append(expired)
    bad.append(LinkSigner(secrets.token_bytes(32)).sign(DESTINATION, tech="x", campaign=""))
    forged = json.dumps({"u": "https://evil.example/", "t": "email_click_link", "c": "", "r": ""})
    bad.append(b64(forged.encode()) + "." + mac)
    for wrong in bad:
        r = site.client.get(f"/t/l/{wrong}", follow_redirects=False)
        assert_problem(r, 400, "token")
    assert_problem(site.client.get(f"/t/l/{expired}", follow_redirects=False), 400, "expired")

    # Open-redirect attempts: there is no parameter or path that names a destination.
    for path in (
        "/t/l/x?url=https://evil.example",
        "/t/l/%2F%2Fevil.example",
        "/t/l//evil.example",
        "/t/l/https://evil.example/",
        "/t/l/",
        "/t/l/%C3%A9.%C3%A9",  # non-ASCII
        "/t/l/%00.%00",
        "/t/l/" + "a" * 3000 + ".b",
    ):
        r = site.client.get(path, follow_redirects=False)
        assert_problem(r, 400, "token")

    # Destinations that are not http(s) cannot even be signed.
    for url in ("javascript:alert(1)", "//evil.example/", "data:text/html,x", "https:evil.example"):
        with pytest.raises(TrackingError):
            site.links.sign(url, tech="email_click_link", campaign="")

    site.flush()
    assert site.stored() == before


def test_a_click_is_judged_under_the_jurisdiction_signed_into_its_link(site: Site) -> None:
    """An undecided recipient in us_ca (opt-out): their clicks are kept when the link says
    us_ca; a link made before links carried a jurisdiction still leads on, judged under the
    default (eu, opt-in): dropped. The open pixel follows its signed jurisdiction over an
    unsigned ``j``; an old open token without one still takes ``j``."""
    vid = new_visitor()
    recipient = site.subject_hash(vid)
    run = uuid.uuid4().hex[:8]

    def click(campaign: str, **claims: Any) -> None:
        token = site.links.sign(
            DESTINATION, tech="email_click_link", campaign=campaign, recipient=recipient, **claims
        )
        r = site.client.get(f"/t/l/{token}", follow_redirects=False)
        assert r.status_code == 302, r.text
        assert r.headers["location"] == DESTINATION

    def open_(campaign: str, j: str | None = None, **claims: Any) -> None:
        token = site.links.sign(
            OPEN_URL, tech="email_open_pixel", campaign=campaign, recipient=recipient, **claims
        )
        params = {"k": "open", "c": campaign, "m": token, **({"j": j} if j else {})}
        r = site.client.get("/t/p/email_open_pixel.gif", params=params)
        assert r.status_code == 200
        assert r.content[:6] == b"GIF89a"

    click(f"j-{run}-signed", jurisdiction="us_ca")
    click(f"j-{run}-old")
    click(f"j-{run}-eu", jurisdiction="eu")
    click(f"j-{run}-gone", jurisdiction="atlantis")  # no longer declared: the default
    open_(f"j-{run}-open-signed", jurisdiction="us_ca")
    open_(f"j-{run}-open-old", j="us_ca")
    open_(f"j-{run}-open-overridden", j="us_ca", jurisdiction="eu")
    site.flush()
    kept = {e["campaign"].removeprefix(f"j-{run}-") for e in site.events(f"j-{run}-")}
    assert kept == {"signed", "open-signed", "open-old"}
    for e in site.events(f"j-{run}-"):
        assert e["visitor"] == "s:" + recipient[:40]
    assert {a["campaign"].removeprefix(f"j-{run}-") for a in site.aggregates(f"j-{run}-")} == (kept)


def test_what_troth_mail_tag_sends_an_opt_out_recipient_is_judged_as_it_was_tagged(
    site: Site, tmp_path: Path
) -> None:
    """End to end: `troth mail tag --jurisdiction us_ca` for an undecided recipient tracks
    the e-mail (us_ca is opt-out); their open and their click are then both kept."""
    vid = new_visitor()
    campaign = f"cli-{uuid.uuid4().hex[:8]}"
    letter = tmp_path / "letter.html"
    letter.write_text(
        '<html><body><p><a href="https://www.example.net/plans">Plans</a></p></body></html>',
        encoding="utf-8",
    )
    out = subprocess.run(
        [TROTH_BIN, "mail", "tag", str(letter), "--policy", str(SEED), "--recipient", vid,
         "--campaign", campaign, "--jurisdiction", "us_ca", "--base-url", site.server.url,
         "--database-url", site.engine.url.render_as_string(hide_password=False)],
        capture_output=True, text=True, cwd=site.keys.parent, timeout=60,
        env={**os.environ, "TROTH_KEYS_DIR": str(site.keys)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "tracked" in out.stderr
    link = re.search(r'href="([^"]+)"', out.stdout)
    pixel = re.search(r'<img src="([^"]+)"', out.stdout)
    assert link is not None, out.stdout
    assert pixel is not None, out.stdout
    assert link.group(1).startswith(site.server.url + "/t/l/")
    r = site.client.get(link.group(1).removeprefix(site.server.url), follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://www.example.net/plans"
    r = site.client.get(unescape(pixel.group(1)).removeprefix(site.server.url))
    assert r.status_code == 200
    site.flush()
    assert sorted(e["kind"] for e in site.events(campaign)) == ["click", "open"]


def test_a_tampered_jurisdiction_fails_the_signature(site: Site) -> None:
    campaign = f"jt-{uuid.uuid4().hex[:8]}"
    recipient = site.subject_hash(new_visitor())
    key = (site.keys / "tracking-links.key").read_bytes()
    site.flush()
    before = site.stored()
    for url, tech in ((DESTINATION, "email_click_link"), (OPEN_URL, "email_open_pixel")):
        token = site.links.sign(
            url, tech=tech, campaign=campaign, recipient=recipient, jurisdiction="eu"
        )
        body, mac = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        assert claims["j"] == "eu"
        for changed in ({**claims, "j": "us_ca"}, {k: v for k, v in claims.items() if k != "j"}):
            forged = b64(json.dumps(changed, separators=(",", ":")).encode()) + "." + mac
            if tech == "email_click_link":
                r = site.client.get(f"/t/l/{forged}", follow_redirects=False)
                assert_problem(r, 400, "signature")
            else:
                r = site.client.get(
                    "/t/p/email_open_pixel.gif", params={"k": "open", "c": campaign, "m": forged}
                )
                assert r.status_code == 200
                assert r.content[:6] == b"GIF89a"
        # Correctly signed, but the claim is not a string: not a tracking link.
        odd = b64(json.dumps({**claims, "j": ["us_ca"]}, separators=(",", ":")).encode())
        odd_mac = b64(hmac.new(key, odd.encode(), hashlib.sha256).digest())
        if tech == "email_click_link":
            r = site.client.get(f"/t/l/{odd}.{odd_mac}", follow_redirects=False)
            assert_problem(r, 400, "not a tracking link")
    site.flush()
    assert site.stored() == before


# --- hostile input ------------------------------------------------------------------------

GOOD_EVENT = {"tech": "analytics_sdk", "name": "signup_click", "campaign": "", "page": "/"}


def batch(*events: Any, **extra: Any) -> dict[str, Any]:
    # us_ca without GPC allows analytics: had any of these been stored, it would show.
    return {"events": list(events), "jurisdiction": "us_ca", **extra}


HOSTILE: list[tuple[str, Any, int, str]] = [
    ("51 events", batch(*[GOOD_EVENT] * 51), 422, "events"),
    ("no events", batch(), 422, "events"),
    ("nested props", batch({**GOOD_EVENT, "props": {"a": {"b": 1}}}), 422, "props"),
    ("list in props", batch({**GOOD_EVENT, "props": {"a": [1]}}), 422, "props"),
    ("null in props", batch({**GOOD_EVENT, "props": {"a": None}}), 422, "props"),
    ("17 props", batch({**GOOD_EVENT, "props": {f"k{i}": i for i in range(17)}}), 422, "props"),
    ("long prop", batch({**GOOD_EVENT, "props": {"a": "x" * 201}}), 422, "props"),
    ("bad prop key", batch({**GOOD_EVENT, "props": {"a b": 1}}), 422, "props"),
    ("huge number", batch({**GOOD_EVENT, "props": {"a": 10**30}}), 422, "props"),
    ("NUL in prop", batch({**GOOD_EVENT, "props": {"a": "x\u0000"}}), 422, "props"),
    ("unknown field", batch(GOOD_EVENT, user="alice"), 422, "user"),
    ("unknown event field", batch({**GOOD_EVENT, "ip": "1.2.3.4"}), 422, "ip"),
    ("events not a list", batch() | {"events": {"tech": "x"}}, 422, "events"),
    ("name not a string", batch({**GOOD_EVENT, "name": 5}), 422, "name"),
    ("bad name", batch({**GOOD_EVENT, "name": "Signup Click"}), 422, "name"),
    ("tech not a string", batch({**GOOD_EVENT, "tech": ["analytics_sdk"]}), 422, "tech"),
    ("long campaign", batch({**GOOD_EVENT, "campaign": "c" * 65}), 422, "campaign"),
    ("NUL in campaign", batch({**GOOD_EVENT, "campaign": "a\u0000"}), 422, "campaign"),
    ("page not a path", batch({**GOOD_EVENT, "page": "https://x.example/"}), 422, "page"),
    ("unknown tech", batch(GOOD_EVENT, {**GOOD_EVENT, "tech": "nope"}), 422, "events.1.tech"),
    ("cookie tech", batch({**GOOD_EVENT, "tech": "session"}), 422, "tech"),
    ("link tech", batch({**GOOD_EVENT, "tech": "email_click_link"}), 422, "tech"),
    ("bad visitor", batch(GOOD_EVENT, visitor="short"), 422, "visitor"),
    ("bad jurisdiction", batch(GOOD_EVENT) | {"jurisdiction": "mars"}, 422, "jurisdiction"),
    ("a list", [GOOD_EVENT], 422, "body"),
    ("null", None, 422, "body"),
]
RAW: list[tuple[str, bytes, int, str]] = [
    ("not JSON", b"{events: [", 400, "JSON"),
    ("NaN", b'{"events":[{"tech":"analytics_sdk","name":"a","props":{"a":NaN}}]}', 422, "props"),
    ("lone surrogate", b'{"events":[{"tech":"analytics_sdk","name":"a","campaign":"\\ud800"}]}',
     422, "campaign"),
    ("surrogate prop", b'{"events":[{"tech":"analytics_sdk","name":"a","props":{"a":"\\udfff"}}]}',
     422, "props"),
    ("not UTF-8", b'{"events":[{"tech":"\xff","name":"a"}]}', 400, ""),
    ("oversized", json.dumps(batch(GOOD_EVENT, pad="x" * 17_000)).encode(), 413, "bytes"),
]  # fmt: skip


def test_hostile_event_batches_are_refused_and_store_nothing(site: Site) -> None:
    site.flush()
    before = site.stored()
    for what, body, status, word in HOSTILE:
        r = site.client.post("/t/e", json=body)
        assert r.status_code == status, (what, r.status_code, r.text)
        assert_problem(r, status, word)
    for what, raw, status, word in RAW:
        r = site.client.post("/t/e", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == status, (what, r.status_code, r.text)
        assert_problem(r, status, word)

    def chunks() -> Iterator[bytes]:  # too large, without a Content-Length
        yield b'{"events": [], "pad": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    r = site.client.post("/t/e", content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(r, 413)
    r = site.client.post("/t/e", content=b"events=1", headers={"Content-Type": "text/plain"})
    assert_problem(r, {400, 415, 422})

    # Pixels with malformed parameters or a recipient token that is not ours.
    token = site.links.sign(OPEN_URL, tech="email_open_pixel", campaign="x", recipient="0" * 64)
    other = site.links.sign(OPEN_URL, tech="ad_pixel", campaign="x", recipient="0" * 64)
    for url, status in (
        ("/t/p/page_pixel.gif?c=" + "c" * 65, 422),
        ("/t/p/page_pixel.gif?c=a%00b", 422),
        ("/t/p/page_pixel.gif?k=click", 422),
        ("/t/p/page_pixel.gif?m=" + token[:-2] + "AA", 200),  # altered: the GIF, nothing kept
        ("/t/p/page_pixel.gif?m=%C3%A9.%C3%A9", 200),
        ("/t/p/page_pixel.gif?m=" + other, 200),  # signed for another technology
        ("/t/p/page_pixel.gif?m=" + token, 200),  # signed for email_open_pixel
    ):
        r = site.client.get(url)
        assert r.status_code == status, (url, r.text)
        if status == 200:
            assert r.content[:6] == b"GIF89a"
        else:
            assert_problem(r, status)
    site.flush()
    assert site.stored() == before


def test_a_valid_batch_is_decided_event_by_event(site: Site) -> None:
    """One batch, three technologies, one visitor without a decision in the EU: the
    page pixel is counted, the others dropped; the banner's beacon shape is accepted."""
    campaign = f"b-{uuid.uuid4().hex[:8]}"
    events = [
        {"tech": tech, "name": "signup_click", "campaign": campaign, "page": "/x", "props": {}}
        for tech in ("page_pixel", "ad_pixel", "analytics_sdk")
    ]
    r = site.client.post(
        "/t/e", json={"events": events, "jurisdiction": "eu"}, headers=consent_cookie(new_visitor())
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 0, "counted": 1, "dropped": 2}
    assert r.headers["cache-control"] == "no-store"
    site.flush()
    assert site.events(campaign) == []
    assert [
        (a["tech_id"], a["kind"], a["consent"], a["count"]) for a in site.aggregates(campaign)
    ] == [("page_pixel", "event", "none", 1)]


def test_a_withdrawal_right_after_a_cached_decision_is_seen_by_the_next_hit(site: Site) -> None:
    """The tracker caches consent for a few seconds (and then decides without a database
    read); a choice recorded through this server must still apply to the very next hit."""
    visitor = new_visitor()
    campaign = f"w-{uuid.uuid4().hex[:8]}"
    site.consent(visitor, "given", "eu")
    beacon = {
        "events": [{"tech": "analytics_sdk", "name": "signup", "campaign": campaign}],
        "visitor": visitor,
        "jurisdiction": "eu",
    }
    for _ in range(2):  # the second is decided from the cache
        r = site.client.post("/t/e", json=beacon)
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 1, "counted": 0, "dropped": 0}
    site.consent(visitor, "refused", "eu")  # withdraws what was given
    r = site.client.post("/t/e", json=beacon)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 0, "counted": 0, "dropped": 1}
    pixel = site.client.get(f"/t/p/ad_pixel.gif?c={campaign}&j=eu", headers=consent_cookie(visitor))
    assert pixel.content == PIXEL
    site.flush()
    assert len(site.events(campaign)) == 2
    assert [(a["tech_id"], a["count"]) for a in site.aggregates(campaign)] == [("analytics_sdk", 2)]


# --- rate limits per client network -------------------------------------------------------

with warnings.catch_warnings():
    # starlette asks for `httpx2`; the dev environment has httpx (the test client works).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def limited_app(db_url: str, work: Path, rate_per_minute: int) -> FastAPI:
    """The tracking endpoints with a low limit, on the services and tracker create_app builds
    and with its lifespan (which runs the writer and the recorder's flushing)."""
    full = create_app(
        load_policy(SEED).policy,
        Settings(
            database_url=db_url,
            keys_dir=work / "keys",
            audit_heads=work / "audit" / "heads.jsonl",
            erasures=work / "audit" / "erasures.jsonl",
        ),
    )
    app = FastAPI(lifespan=full.router.lifespan_context)
    app.state.services = full.state.services
    app.state.tracker = full.state.tracker
    app.include_router(tracking_router(rate_per_minute=rate_per_minute))
    return app


def from_address(app: ASGIApp) -> ASGIApp:
    """The app, seeing each request come from the address in its X-Test-Client header (as
    it would from that client's network), so that one in-process client can be many."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-client":
                    scope = {**scope, "client": (value.decode(), 50000)}
        await app(scope, receive, send)

    return wrapped


@dataclass
class As:
    client: TestClient
    address: str

    def get(self, url: str) -> httpx.Response:
        return self.client.get(url, headers={"X-Test-Client": self.address})

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(url, headers={"X-Test-Client": self.address}, **kwargs)


def test_event_and_pixel_rates_are_limited_per_client_network(db_url: str, tmp_path: Path):
    engine = create_engine(db_url)
    app = limited_app(db_url, tmp_path, rate_per_minute=1)
    # us_ca, no signal: analytics allowed, so every accepted event is stored in full.
    event = {"events": [{**GOOD_EVENT, "campaign": "rl"}], "jurisdiction": "us_ca"}

    def stored(tech: str) -> tuple[int, int]:
        with engine.connect() as conn:
            events = conn.execute(
                select(tracking_events.c.id).where(tracking_events.c.tech_id == tech)
            ).all()
            counts = conn.execute(
                select(tracking_aggregates.c.count).where(tracking_aggregates.c.tech_id == tech)
            ).all()
        return len(events), sum(c for (c,) in counts)

    try:
        with TestClient(from_address(app)) as client:
            first = As(client, "203.0.113.7")
            same_network = As(client, "203.0.113.200")
            other = As(client, "198.51.100.7")
            v6 = As(client, "2001:db8:1:2::7")
            v6_same_48 = As(client, "2001:db8:1:ffff::9")
            for i in range(10):
                client = first if i % 2 else same_network  # one /24, one budget
                r = client.post("/t/e", json=event)
                assert r.status_code == 202, (i, r.text)
            assert stored("analytics_sdk") == (10, 10)
            r = first.post("/t/e", json=event)
            assert_problem(r, 429, "nothing was recorded")
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.headers["cache-control"] == "no-store"
            assert_problem(same_network.post("/t/e", json=event), 429)
            assert stored("analytics_sdk") == (10, 10)  # the refused ones left nothing
            assert other.post("/t/e", json=event).status_code == 202  # another network
            for _ in range(10):
                assert v6.post("/t/e", json=event).status_code == 202
            assert_problem(v6_same_48.post("/t/e", json=event), 429)  # the same /48
            assert stored("analytics_sdk") == (21, 21)

            # The pixel has a budget of its own; over it, the same GIF and nothing recorded.
            gifs = set()
            for _ in range(13):
                r = first.get("/t/p/page_pixel.gif?c=rl&j=us_ca")
                assert r.status_code == 200
                assert r.headers["content-type"] == "image/gif"
                assert r.headers["cache-control"] == "no-store"
                gifs.add(r.content)
            assert gifs == {PIXEL}
            # A barrier from another network: once it is written, so is everything before it.
            assert other.get("/t/p/ad_pixel.gif?c=barrier&j=us_ca").status_code == 200
            deadline = time.monotonic() + 10
            while stored("ad_pixel") == (0, 0):
                assert time.monotonic() < deadline, "best-effort hits not written in 10 s"
                time.sleep(0.05)
            assert stored("page_pixel") == (10, 10)
    finally:
        engine.dispose()
