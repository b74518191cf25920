"""Deadlines (one calendar month, extensions, overdue), the e-mailed code's expiry and
attempt limit, and the admin pages that show and decide requests — with a clock the
tests move, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rights.conftest import ALEX
from rights.lifecycle_support import Clock, Lifecycle, lifecycle
from troth.auth.sessions import create_session
from troth.auth.users import add_user
from troth.rights.requests import RequestDesk
from troth.rights.requests_deadlines import add_months, due_date
from troth.rights.requests_errors import RequestError
from troth.web.auth_deps import SESSION_COOKIE

EMAIL = ALEX["email"]


@pytest.fixture
def life(db_url: str, tmp_path: Path) -> Iterator[Lifecycle]:
    with lifecycle(db_url, tmp_path) as made:
        yield made


def desk_at(life: Lifecycle, when: dt.datetime) -> tuple[RequestDesk, Clock]:
    clock = Clock(when)
    return life.rights(clock).desk, clock


def test_one_calendar_month_clamped_to_the_end_of_shorter_months():
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2028, 1, 31), 1) == dt.date(2028, 2, 29)
    assert add_months(dt.date(2026, 11, 15), 2) == dt.date(2027, 1, 15)
    late = dt.datetime(2026, 3, 31, 23, 30, tzinfo=dt.UTC)
    assert due_date(late) == dt.date(2026, 4, 30)
    assert due_date(late, 2) == dt.date(2026, 6, 30)


def test_extensions_are_recorded_capped_at_two_months_and_overdue_is_flagged(life):
    desk, clock = desk_at(life, dt.datetime(2026, 1, 31, 9, 0, tzinfo=dt.UTC))
    view = desk.submit(
        "erasure", {"email": [EMAIL]}, channel="portal", actor="requester", language="en"
    )
    assert view.deadline == dt.date(2026, 2, 28)

    with pytest.raises(RequestError, match=r"^reason: "):
        desk.extend(view.id, 1, "   ", "user:1")
    extended = desk.extend(view.id, 1, "Records archived off-site", "user:1")
    assert (extended.deadline, extended.due) == (dt.date(2026, 3, 28), dt.date(2026, 2, 28))
    assert extended.extension_reason == "Records archived off-site"
    assert extended.steps[-1].step == "extended"
    with pytest.raises(RequestError, match="to 2026-04-30 at the latest") as refused:
        desk.extend(view.id, 2, "Still searching", "user:1")
    assert refused.value.status == 422
    assert desk.get(view.id).deadline == dt.date(2026, 3, 28)  # unchanged
    # the person is told, with the reason
    assert "by 2026-03-28" in life.last_mail(EMAIL)
    assert "Records archived off-site" in life.last_mail(EMAIL)

    clock.now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)  # past the first month
    with pytest.raises(RequestError, match=r"within the first month \(by 2026-02-28") as late:
        desk.extend(view.id, 1, "Forgot to say", "user:1")
    assert late.value.status == 409

    clock.now = dt.datetime(2026, 3, 22, tzinfo=dt.UTC)
    work = desk.workload()
    assert (work.open, work.due_soon, work.overdue) == (1, 1, 0)
    clock.now = dt.datetime(2026, 3, 29, tzinfo=dt.UTC)
    assert desk.get(view.id).overdue(desk.today())
    work = desk.workload()
    assert (work.open, work.due_soon, work.overdue) == (1, 0, 1)


def test_a_code_expires_and_allows_five_tries_then_a_new_code_works(life):
    desk, clock = desk_at(life, dt.datetime.now(dt.UTC))
    view = desk.submit(
        "access", {"email": [EMAIL]}, channel="portal", actor="requester", language="en"
    )
    first = life.code(EMAIL)
    clock.advance(minutes=31)
    with pytest.raises(RequestError, match=r"^code: it has expired") as expired:
        desk.verify_code(view.id, first)
    assert expired.value.status == 410
    assert desk.get(view.id).state == "submitted"

    desk.resend_code(view.id)
    second = life.code(EMAIL)
    wrong = str((int(second) + 1) % 10**8).zfill(8)
    statuses = []
    for _ in range(5):
        with pytest.raises(RequestError) as refused:
            desk.verify_code(view.id, wrong)
        statuses.append(refused.value.status)
    assert statuses == [422, 422, 422, 422, 429]
    # the right code no longer helps: the limit is reached
    with pytest.raises(RequestError, match="5 wrong attempts") as locked:
        desk.verify_code(view.id, second)
    assert locked.value.status == 429

    desk.resend_code(view.id)
    assert desk.verify_code(view.id, life.code(EMAIL)).state == "executing"
    steps = [s.step for s in desk.get(view.id).steps]
    assert steps.count("code_sent") == 3
    assert steps.count("code_refused") == 5


def session(life: Lifecycle, role: str) -> tuple[dict[str, str], str]:
    user = add_user(life.services.engine, f"{role}@example.org", "correct horse battery", role)
    token, made = create_session(life.services.engine, user.id)
    return {"Cookie": f"{SESSION_COOKIE}={token}"}, made.csrf


def test_officers_see_requests_by_deadline_and_decide_with_csrf_forms(life):
    desk, _ = desk_at(life, dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    late = desk.submit(
        "rectification",
        {"account_ref": [ALEX["ref"]]},
        channel="cli",
        actor="cli",
        language="en",
        corrections={"lumen.accounts.name": "Alex Beispiel"},
        verified_by="officer: passport seen",
    )
    officer, csrf = session(life, "privacy_officer")
    page = life.client.get("/admin/requests", headers=officer)
    assert page.status_code == 200
    assert late.id[:8] in page.text
    assert "OVERDUE" in page.text
    overview = life.client.get("/admin", headers=officer).text
    assert re.search(r"Overdue</dt><dd><span class=\"bad\">1<", overview), overview

    detail = life.client.get(f"/admin/requests/{late.id}", headers=officer)
    assert "Approve and execute" in detail.text
    assert "Alex Beispiel" not in detail.text  # corrections are sealed, not shown
    # without the CSRF token nothing happens
    r = life.client.post(f"/admin/requests/{late.id}/approve", headers=officer)
    assert r.status_code == 403
    assert desk.get(late.id).state == "verified"
    r = life.client.post(
        f"/admin/requests/{late.id}/approve",
        headers=officer,
        data={"csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert life.work() == 2  # discovery, then the one datastore the correction names
    assert life.lumen("SELECT name FROM accounts WHERE id = 1") == [("Alex Beispiel",)]
    done = desk.get(late.id)
    assert done.state == "completed"
    assert done.result is not None
    assert done.result["jobs"]["rectify:lumen"] == {"changed": 1, "fields": 1}

    # a wrong decision is refused on the page, naming the field
    r = life.client.post(
        f"/admin/requests/{late.id}/reject", headers=officer, data={"csrf": csrf, "reason": "x"}
    )
    assert r.status_code == 409
    assert "request: it is completed" in r.text

    # a correction is no erasure: there is nothing to prove
    r = life.client.post(
        f"/admin/requests/{late.id}/verify-erasure", headers=officer, data={"csrf": csrf}
    )
    assert r.status_code == 409
    assert "request: it is not an erasure request" in r.text

    agent, agent_csrf = session(life, "support_agent")
    assert life.client.get(f"/admin/requests/{late.id}", headers=agent).status_code == 200
    r = life.client.post(
        f"/admin/requests/{late.id}/extend",
        headers=agent,
        data={"csrf": agent_csrf, "months": "1", "reason": "x"},
    )
    assert r.status_code == 403


def test_closed_requests_drop_their_identities_after_the_retention_period(life):
    desk, clock = desk_at(life, dt.datetime.now(dt.UTC))
    view = desk.submit(
        "access", {"email": [EMAIL]}, channel="portal", actor="requester", language="en"
    )
    # a reason goes into mail and the audit log: no control characters, as for extend
    for bad in ("Duplicate\x1b[2J", "Dup\x00licate", "   "):
        with pytest.raises(RequestError, match=r"^reason: .*no control characters"):
            desk.reject(view.id, bad, "user:1")
    assert desk.get(view.id).state == "submitted"
    rejected = desk.reject(view.id, "Duplicate of an earlier request", "user:1")
    assert desk.identities(view.id) == {"email": [EMAIL]}
    clock.advance(days=89)
    assert desk.forget(dt.timedelta(days=90)) == 0
    clock.advance(days=2)
    assert desk.forget(dt.timedelta(days=90)) == 1
    assert desk.forget(dt.timedelta(days=90)) == 0  # once
    assert desk.identities(view.id) == {}
    kept = desk.get(view.id)
    assert (kept.state, kept.reason, kept.kind) == ("rejected", rejected.reason, "access")
    assert kept.steps[-1].step == "forgotten"
