"""Tracking reports: ``GET /api/stats`` and the admin page ``/admin/analytics``."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert

from troth.auth.api_keys import create_api_key
from troth.auth.roles import ROLES, allows
from troth.auth.users import add_user
from troth.config import Settings
from troth.policy.loader import LoadedPolicy
from troth.store.tables import tracking_aggregates
from troth.tracking.recorder import Recorder
from troth.web.app import create_app
from troth.web.security import ADMIN_CSP
from troth.web.stats_api import (
    AnalyticsReport,
    RangeError,
    Split,
    _nice,
    analytics_chart,
    parse_range,
    stats_router,
)

with warnings.catch_warnings():
    # starlette asks for `httpx2`; the dev environment has httpx (the test client works).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son\w+=", re.I)
TODAY = dt.datetime.now(dt.UTC).date()


def day(n: int) -> dt.date:
    """``n`` days before today (UTC)."""
    return TODAY - dt.timedelta(days=n)


# (days ago, tech, kind, campaign, consent, count); two techs add up on the same key
ROWS = [
    (1, "site_stats", "view", "", "given", 50),
    (1, "site_stats", "view", "", "none", 20),
    (1, "pixel", "view", "", "given", 5),  # + the first row: 55
    (1, "mail_pixel", "open", "spring", "given", 30),
    (1, "mail_pixel", "open", "spring", "none", 10),
    (1, "links", "click", "spring", "given", 6),
    (1, "links", "click", "spring", "none", 3),
    (3, "site_stats", "view", "spring", "given", 8),
    (3, "mail_pixel", "open", "autumn", "none", 4),
    (3, "links", "click", "autumn", "given", 1),
    (3, "sdk", "event", "", "given", 2),
    (45, "site_stats", "view", "", "given", 1000),  # outside the default 30 days
]


@pytest.fixture
def app(seed: LoadedPolicy, db_url: str, tmp_path: Path) -> FastAPI:
    settings = Settings(
        database_url=db_url,
        keys_dir=tmp_path / "keys",
        audit_heads=tmp_path / "heads.jsonl",
        erasures=tmp_path / "erasures.jsonl",
    )
    app = create_app(seed.policy, settings)
    if not any(getattr(r, "path", None) == "/api/stats" for r in app.routes):
        app.include_router(stats_router())  # until app.py includes it
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def engine_of(app: FastAPI) -> Engine:
    eng: Engine = app.state.services.engine
    return eng


def insert_rows(eng: Engine, rows: list[tuple[int, str, str, str, str, int]] = ROWS) -> None:
    with eng.begin() as conn:
        conn.execute(
            insert(tracking_aggregates),
            [
                {"day": day(n), "tech_id": t, "kind": k, "campaign": c, "consent": s, "count": x}
                for n, t, k, c, s, x in rows
            ],
        )


def bearer(app: FastAPI, role: str) -> dict[str, str]:
    _, key = create_api_key(engine_of(app), role, f"stats {role}")
    return {"Authorization": f"Bearer {key}"}


def row(n: int, kind: str, campaign: str, consent: str, count: int) -> dict[str, Any]:
    return {
        "day": day(n).isoformat(),
        "kind": kind,
        "campaign": campaign,
        "consent": consent,
        "count": count,
    }


# --- the API -------------------------------------------------------------------------------


def test_stats_per_day_kind_campaign_and_consent(app, client):
    insert_rows(engine_of(app))
    r = client.get("/api/stats", headers=bearer(app, "privacy_officer"))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {
        "from": day(29).isoformat(),
        "to": TODAY.isoformat(),
        "rows": [  # oldest first, then kind, campaign, consent
            row(3, "click", "autumn", "given", 1),
            row(3, "event", "", "given", 2),
            row(3, "open", "autumn", "none", 4),
            row(3, "view", "spring", "given", 8),
            row(1, "click", "spring", "given", 6),
            row(1, "click", "spring", "none", 3),
            row(1, "open", "spring", "given", 30),
            row(1, "open", "spring", "none", 10),
            row(1, "view", "", "given", 55),
            row(1, "view", "", "none", 20),
        ],
        "totals": {
            "view": {"given": 63, "none": 20},
            "open": {"given": 30, "none": 14},
            "click": {"given": 7, "none": 3},
            "event": {"given": 2, "none": 0},
        },
        "campaigns": ["", "autumn", "spring"],
        "dropped": 0,
    }


def test_stats_tell_how_many_hits_a_full_buffer_lost(app, client):
    """Best-effort hits go through a bounded buffer; when it is full the oldest are lost,
    and counted. A small buffer that is never flushed: 3 kept, 4 lost."""
    old = app.state.tracker.recorder
    app.state.tracker.recorder = Recorder(old.engine, old.writer, buffer=3)
    headers = bearer(app, "privacy_officer")
    assert client.get("/api/stats", headers=headers).json()["dropped"] == 0
    for _ in range(7):  # page_pixel: counted (in aggregate) whatever the consent
        r = client.get("/t/p/page_pixel.gif?c=full")
        assert r.status_code == 200
    r = client.get("/api/stats", headers=headers)
    assert r.status_code == 200
    assert r.json()["dropped"] == 4
    assert r.json()["rows"] == []  # nothing was written: no flush ran
    r = client.get("/api/stats?kind=open&campaign=none", headers=headers)
    assert r.json()["dropped"] == 4  # whatever the filters: it is the process's count


def test_stats_filters_by_range_campaign_and_kind(app, client):
    insert_rows(engine_of(app))
    headers = bearer(app, "owner")
    r = client.get(
        "/api/stats",
        params={"from": day(60).isoformat(), "to": day(2).isoformat()},
        headers=headers,
    )
    body = r.json()
    assert (body["from"], body["to"]) == (day(60).isoformat(), day(2).isoformat())
    assert body["rows"][0] == row(45, "view", "", "given", 1000)
    assert body["totals"]["view"] == {"given": 1008, "none": 0}
    assert body["campaigns"] == ["", "autumn", "spring"]

    r = client.get("/api/stats", params={"campaign": "spring"}, headers=headers)
    body = r.json()
    assert {x["campaign"] for x in body["rows"]} == {"spring"}
    assert body["totals"] == {
        "view": {"given": 8, "none": 0},
        "open": {"given": 30, "none": 10},
        "click": {"given": 6, "none": 3},
        "event": {"given": 0, "none": 0},
    }
    assert body["campaigns"] == ["", "autumn", "spring"]  # every campaign of the range

    r = client.get("/api/stats", params={"kind": "click", "campaign": ""}, headers=headers)
    body = r.json()
    assert body["totals"] == {"click": {"given": 7, "none": 3}}
    assert [x["count"] for x in body["rows"]] == [1, 6, 3]

    r = client.get("/api/stats", params={"campaign": "nothing-here"}, headers=headers)
    assert r.json()["rows"] == []
    assert r.json()["totals"]["view"] == {"given": 0, "none": 0}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "yesterday"}, "from: not a date"),
        ({"to": "2024-02-30"}, "to: not a date"),
        ({"from": "20240101"}, "from: not a date"),
        ({"from": "2024-W01-1"}, "from: not a date"),
        ({"from": "2024-03-02", "to": "2024-03-01"}, "from: after to"),
        ({"from": "2023-01-01", "to": "2024-01-02"}, "from, to: a range covers at most 366"),
        ({"to": "2024-01-01", "from": "2022-12-31"}, "from, to: a range covers at most 366"),
        ({"kind": "visit"}, "kind: use one of view, open, click, event"),
    ],
)
def test_stats_refuses_bad_parameters(app, client, params, detail):
    r = client.get("/api/stats", params=params, headers=bearer(app, "owner"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith(detail), r.json()


def test_stats_takes_up_to_366_days(app, client):
    headers = bearer(app, "owner")
    r = client.get("/api/stats", params={"from": "2024-01-01", "to": "2024-12-31"}, headers=headers)
    assert r.status_code == 200  # 2024 is a leap year: 366 days
    r = client.get("/api/stats", params={"from": "2024-01-01", "to": "2024-01-01"}, headers=headers)
    assert r.status_code == 200
    r = client.get("/api/stats", params={"to": "2024-01-31"}, headers=headers)
    assert (r.json()["from"], r.json()["to"]) == ("2024-01-02", "2024-01-31")


def test_stats_needs_the_consent_report_permission(app, client):
    r = client.get("/api/stats")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert (
        client.get("/api/stats", headers={"Authorization": "Bearer troth_x_y"}).status_code == 401
    )
    for role in ROLES:
        want = 200 if allows(role, "consent.report") else 403
        assert client.get("/api/stats", headers=bearer(app, role)).status_code == want, role
    assert client.get("/api/stats", headers=bearer(app, "service")).status_code == 403
    assert client.get("/api/stats", headers=bearer(app, "support_agent")).status_code == 403


# --- the admin page ------------------------------------------------------------------------


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(app: FastAPI, client: TestClient, role: str) -> None:
    email = f"{role}@example.org"
    add_user(engine_of(app), email, PASSWORD, role)
    data = {
        "email": email,
        "password": PASSWORD,
        "csrf": form_token(client.get("/admin/login").text),
    }
    r = client.post("/admin/login", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text


def test_analytics_page_draws_the_days_and_lists_the_campaigns(app, client):
    insert_rows(engine_of(app))
    sign_in(app, client, "privacy_officer")
    r = client.get("/admin/analytics")
    assert r.status_code == 200
    page = r.text
    assert r.headers["content-security-policy"] == ADMIN_CSP
    assert not INLINE.search(page), INLINE.search(page)
    nav = re.search(r'<nav aria-label="Admin">(.*?)</nav>', page, re.S)
    assert nav is not None
    assert '<a href="/admin/analytics" aria-current="page">Analytics</a>' in nav.group(1)

    svg = re.search(r'<svg viewBox="[^"]*" role="img".*?</svg>', page, re.S)
    assert svg is not None
    chart = svg.group(0)
    assert '<title id="bars-title">' in chart
    assert '<desc id="bars-desc">Stacked bars, one per day from ' in chart
    assert "Totals: visits 83 (76% with consent)" in chart
    assert chart.count('<g class="day">') == 2  # the days with hits (day 45 is outside)
    # per day: one segment per kind and consent state with hits
    assert len(re.findall(r'<rect class="seg series-\d', chart)) == 6
    assert len(re.findall(r'<rect class="seg hatched" [^>]*fill="url\(#hatch-\d\)"', chart)) == 4
    for n in range(4):  # visits, opens, clicks and events all have hits
        assert f'<pattern id="hatch-{n}"' in chart
    assert f"Visits, {day(1).isoformat()}, with consent: 55" in chart
    assert f"Opens, {day(1).isoformat()}, without consent: 10" in chart
    assert "Hits per day" in chart  # the axis titles
    assert "Day (UTC)" in chart

    table = re.search(r'<table class="numbers campaigns">.*?</table>', page, re.S)
    assert table is not None
    body = re.sub(r"\s+", " ", table.group(0))
    # busiest first: no campaign (77), spring (8 + 40 + 9), autumn (5)
    assert re.findall(r'<th scope="row">(.*?)</th>', body) == [
        '<span class="hint">no campaign</span>',
        "spring",
        "autumn",
        "All campaigns",
    ]
    # visits with/without, opens, clicks, events, click-through
    assert (
        '<th scope="row">spring</th> <td>8</td><td>0</td> <td>30</td><td>10</td> '
        "<td>6</td><td>3</td> <td>0</td><td>0</td> <td>22.5%</td>" in body
    )
    assert (
        '<th scope="row">autumn</th> <td>0</td><td>0</td> <td>0</td><td>4</td> '
        "<td>1</td><td>0</td> <td>0</td><td>0</td> <td>25.0%</td>" in body
    )
    assert "<td>63</td><td>20</td> <td>30</td><td>14</td> <td>7</td><td>3</td>" in body
    assert body.endswith("<td>22.7%</td> </tr> </tfoot> </table>")  # (9 + 1) / (40 + 4)
    assert 'name="campaign"' in page
    assert '<option value="spring">spring</option>' in page


def test_analytics_page_filters_by_campaign_and_range(app, client):
    insert_rows(engine_of(app))
    sign_in(app, client, "owner")
    page = client.get("/admin/analytics", params={"campaign": "autumn"}).text
    assert '<option value="autumn" selected>autumn</option>' in page
    assert page.count('<g class="day">') == 1
    assert re.findall(r'<th scope="row">(\w+)</th>', page.split("campaigns-h")[-1]) == ["autumn"]
    params = {"from": day(50).isoformat(), "to": day(40).isoformat()}
    page = client.get("/admin/analytics", params=params).text
    assert page.count('<g class="day">') == 1
    assert f"Visits, {day(45).isoformat()}, with consent: 1,000" in page
    assert f'value="{day(50).isoformat()}"' in page


def test_analytics_page_has_an_empty_state(app, client):
    sign_in(app, client, "privacy_officer")
    r = client.get("/admin/analytics")
    assert r.status_code == 200
    assert "No visits, opens or clicks were counted in this range" in r.text
    assert "<svg" not in r.text
    assert not INLINE.search(r.text)


def test_analytics_page_explains_bad_dates(app, client):
    insert_rows(engine_of(app))
    sign_in(app, client, "privacy_officer")
    r = client.get("/admin/analytics", params={"from": "2024-13-01"})
    assert r.status_code == 422
    assert '<p class="alert" role="alert">from: not a date' in r.text
    assert "Showing the last 30 days instead" in r.text
    assert r.text.count('<g class="day">') == 2
    r = client.get("/admin/analytics", params={"from": "2020-01-01", "to": "2024-01-01"})
    assert r.status_code == 422
    assert "at most 366 days" in r.text


def test_analytics_page_is_for_consent_reporters(app, client):
    r = client.get("/admin/analytics", headers={"Accept": "text/html"})
    assert r.status_code == 401
    assert 'href="/admin/login"' in r.text
    for role in ("support_agent", "auditor"):
        client.cookies.clear()
        sign_in(app, client, role)
        assert client.get("/admin/analytics").status_code == 403
        assert 'href="/admin/analytics"' not in client.get("/admin").text
    assert client.get("/admin/analytics", headers=bearer(app, "service")).status_code == 403


# --- the figures and the chart, without a database -----------------------------------------


def test_parse_range_defaults_and_limits():
    today = dt.date(2024, 3, 1)
    assert parse_range(None, None, today=today) == (dt.date(2024, 2, 1), today)  # leap year
    assert parse_range("", "", today=today) == (dt.date(2024, 2, 1), today)
    assert parse_range("2024-02-01", None, today=today) == (dt.date(2024, 2, 1), today)
    assert parse_range(None, "2023-03-01", today=today) == (
        dt.date(2023, 1, 31),
        dt.date(2023, 3, 1),
    )
    assert parse_range("2023-03-02", "2024-03-01", today=today)[0] == dt.date(2023, 3, 2)
    with pytest.raises(RangeError, match=r"^from, to: "):
        parse_range("2023-03-01", "2024-03-01", today=today)  # 367 days


def test_axis_maximum_is_a_round_number_close_to_the_peak():
    assert _nice(0) == (4, 1)
    assert _nice(37) == (40, 10)
    assert _nice(100) == (100, 20)
    assert _nice(251) == (300, 50)
    assert _nice(12_000) == (12_000, 2_000)
    for top in range(1, 5000, 7):
        axis, step = _nice(top)
        assert top <= axis <= 2 * top + 4
        assert axis % step == 0
        assert 3 <= axis // step <= 6 or axis == 4


def test_bars_stack_to_each_day_total():
    first = dt.date(2024, 5, 1)
    counts = {
        (first, "view"): Split(60, 20),
        (first, "click"): Split(0, 5),
        (first + dt.timedelta(days=2), "open"): Split(10, 0),
    }
    report = AnalyticsReport(first, first + dt.timedelta(days=6), "", [""], counts)
    chart = analytics_chart(report)
    assert [k.kind for k in chart.keys] == ["view", "open", "click"]
    assert len(chart.bars) == 2
    bar = chart.bars[0]
    assert [s.css for s in bar.segments] == ["series-0", "hatched", "hatched"]
    assert [s.fill for s in bar.segments] == ["", "url(#hatch-0)", "url(#hatch-2)"]
    # touching segments, from the baseline up; heights in proportion to the counts
    assert bar.segments[0].y + bar.segments[0].height == pytest.approx(chart.bottom)
    for lower, upper in zip(bar.segments, bar.segments[1:], strict=False):
        assert upper.y + upper.height == pytest.approx(lower.y, abs=0.02)
    unit = (chart.bottom - chart.top) / 100  # axis up to 100 for a peak of 85
    assert chart.yticks[-1].label == "100"
    assert [s.height for s in bar.segments] == pytest.approx(
        [60 * unit, 20 * unit, 5 * unit], abs=0.02
    )
    assert chart.bars[1].x > bar.x
    assert "Totals: visits 80 (75% with consent); opens 10 (100% with consent)" in chart.desc


def test_analytics_page_tells_how_many_hits_a_full_buffer_lost(app, client):
    old = app.state.tracker.recorder
    app.state.tracker.recorder = Recorder(old.engine, old.writer, buffer=2)
    sign_in(app, client, "privacy_officer")
    line = re.compile(r'<p class="hint dropped">(.*?)</p>', re.S)
    found = line.search(client.get("/admin/analytics").text)
    assert found is not None
    assert "<strong>0</strong> hits" in found.group(1)
    for _ in range(5):
        assert client.get("/t/p/page_pixel.gif").status_code == 200
    found = line.search(client.get("/admin/analytics").text)
    assert found is not None
    assert re.sub(r"<[^>]+>", "", found.group(1)) == (
        "Lost to a full write buffer since this server process started: 3 hits (pixels and "
        "link clicks that are in no count). If this grows, the database cannot keep up with "
        "the traffic."
    )
