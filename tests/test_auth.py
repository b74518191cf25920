"""Authentication and roles: passwords, lock-out, sessions, API keys, CSRF, security headers,
and the route × role matrix over every route of the real app."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import Engine, insert, select, update
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from conftest import SEED, running_server
from troth.auth import passwords
from troth.auth.api_keys import create_api_key, revoke_api_key, verify_api_key
from troth.auth.passwords import hash_password, needs_rehash, verify_password
from troth.auth.roles import PERMISSIONS, ROLES, allows, grants
from troth.auth.sessions import SESSION_LIFETIME, create_session, destroy_session, load_session
from troth.auth.users import (
    LOCK_FOR,
    MAX_FAILURES,
    add_user,
    authenticate,
    list_users,
    login_attempt,
)
from troth.config import Settings
from troth.consent.report import consent_report
from troth.errors import TrothError
from troth.policy.loader import LoadedPolicy
from troth.store.engine import make_engine
from troth.store.migrate import upgrade
from troth.store.tables import consent_events, metadata, sessions, users
from troth.web.admin import admin_router
from troth.web.app import create_app
from troth.web.auth_deps import SESSION_COOKIE, AuthProblem, auth_problem_handler
from troth.web.security import ADMIN_CSP, HSTS, SecurityHeaders

with warnings.catch_warnings():
    # starlette asks for `httpx2`; the dev environment has httpx (the test client works).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, including routes of included routers."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):  # FastAPI's included routers
            pairs = [(c.path, c.original_route) for c in route.effective_route_contexts()]
        else:
            pairs = [(getattr(route, "path", repr(route)), route)]
        for path, original in pairs:
            if not isinstance(original, APIRoute | Route):
                pytest.fail(f"{path}: a {type(original).__name__}; give it a rule in this test")
            found += [(m, path) for m in sorted(original.methods or ()) if m != "HEAD"]
    return found


def wire(app: FastAPI, **router_options: Any) -> FastAPI:
    """Add the admin router, its problem handler and the security headers, unless the app
    already has them (create_app will, once they are wired in)."""
    if ("GET", "/admin") not in routes_of(app):
        app.include_router(admin_router(**router_options))
    if AuthProblem not in app.exception_handlers:
        app.add_exception_handler(AuthProblem, auth_problem_handler)
    if not any(m.cls is SecurityHeaders for m in app.user_middleware):
        app.add_middleware(SecurityHeaders)
    return app


def make_app(seed: LoadedPolicy, db_url: str, work: Path, **router_options: Any) -> FastAPI:
    settings = Settings(
        database_url=db_url, keys_dir=work / "keys", audit_heads=work / "audit" / "heads.jsonl"
    )
    return wire(create_app(seed.policy, settings), **router_options)


@pytest.fixture
def app(seed: LoadedPolicy, db_url: str, tmp_path: Path) -> FastAPI:
    return make_app(seed, db_url, tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def app_engine(app: FastAPI) -> Engine:
    eng: Engine = app.state.services.engine
    return eng


def session_cookie(app: FastAPI, role: str, email: str | None = None) -> tuple[str, str]:
    """(cookie header, csrf token) of a fresh session for a new user with ``role``."""
    eng = app_engine(app)
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.org"
    user = add_user(eng, email, PASSWORD, role)
    token, session = create_session(eng, user.id)
    return f"{SESSION_COOKIE}={token}", session.csrf


def dump(eng: Engine) -> str:
    """Every row of every table, as text."""
    out = []
    with eng.connect() as conn:
        for table in metadata.sorted_tables:
            out += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(out)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


# --- roles ---------------------------------------------------------------------------------


def test_role_table():
    assert grants("owner") == set(PERMISSIONS)
    assert grants("privacy_officer") == set(PERMISSIONS) - {"vault.use"}
    assert grants("support_agent") == {"admin.view", "requests.view", "policy.view"}
    assert grants("service") == {
        "vault.use",
        "consent.manage",
        "disclosures.record",
        "requests.submit",
    }
    assert grants("auditor") == {"admin.view", "audit.read", "transfers.view"}
    assert not allows("support_agent", "requests.export")
    assert all(set(roles) <= set(ROLES) for roles in PERMISSIONS.values())
    with pytest.raises(ValueError, match="not a permission"):
        allows("owner", "admin.everything")


# --- passwords -----------------------------------------------------------------------------


def test_passwords_hash_with_argon2id_and_verify():
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert hash_password(PASSWORD) != hashed  # salted
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "!")
    assert not verify_password("not a hash", PASSWORD)
    assert not needs_rehash(hashed)
    assert needs_rehash(PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD))


def test_login_rehashes_a_password_hashed_with_old_parameters(engine):
    user = add_user(engine, "old@example.org", PASSWORD, "owner")
    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user.id).values(password_hash=weak))
    assert authenticate(engine, "old@example.org", PASSWORD) is not None
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored != weak
    assert not needs_rehash(stored)
    assert verify_password(stored, PASSWORD)


# --- users ---------------------------------------------------------------------------------


def test_add_user_validates_and_refuses_duplicates(engine):
    user = add_user(engine, "  Privacy@Example.ORG ", PASSWORD, "privacy_officer")
    assert (user.email, user.role) == ("privacy@example.org", "privacy_officer")
    for email, password, role, message in [
        ("not-an-email", PASSWORD, "owner", "^email: "),
        ("a@b", PASSWORD, "owner", "^email: "),
        ("x@example.org", PASSWORD, "admin", "^role: 'admin' is not a role"),
        ("x@example.org", "short pass", "owner", "^password: use at least 12"),
        ("PRIVACY@example.org", PASSWORD, "owner", "^email: a user with this e-mail"),
    ]:
        with pytest.raises(TrothError, match=message):
            add_user(engine, email, password, role)
    assert [u.email for u in list_users(engine)] == ["privacy@example.org"]
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in dump(engine)


def test_lock_out_after_five_failures_and_unlock_after_fifteen_minutes(engine):
    add_user(engine, "owner@example.org", PASSWORD, "owner")
    now = dt.datetime.now(dt.UTC)
    attempts = [
        login_attempt(engine, "owner@example.org", f"wrong {i} password", now=now)
        for i in range(MAX_FAILURES)
    ]
    assert [a.outcome for a in attempts] == ["wrong_password"] * MAX_FAILURES
    assert [a.locked_now for a in attempts] == [False] * (MAX_FAILURES - 1) + [True]
    # locked: even the right password is refused, and the lock does not move
    assert authenticate(engine, "owner@example.org", PASSWORD, now=now) is None
    assert login_attempt(engine, "owner@example.org", PASSWORD, now=now).outcome == "locked"
    [user] = list_users(engine)
    assert user.failed_logins == MAX_FAILURES
    assert user.locked_until is not None
    assert abs(user.locked_until - (now + LOCK_FOR)) < dt.timedelta(seconds=1)
    assert user.locked(now + LOCK_FOR - dt.timedelta(seconds=1))
    # after the lock, one wrong password starts a new count instead of locking again
    later = now + LOCK_FOR + dt.timedelta(seconds=1)
    attempt = login_attempt(engine, "owner@example.org", "still wrong!", now=later)
    assert attempt.outcome == "wrong_password"
    [user] = list_users(engine)
    assert (user.failed_logins, user.locked_until) == (1, None)
    # and the right password works and resets the count
    assert authenticate(engine, "owner@example.org", PASSWORD, now=later) is not None
    [user] = list_users(engine)
    assert (user.failed_logins, user.locked_until) == (0, None)


def test_a_lock_that_ended_in_the_past_lets_the_user_in(engine):
    user = add_user(engine, "owner@example.org", PASSWORD, "owner")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(failed_logins=MAX_FAILURES, locked_until=past)
        )
    assert authenticate(engine, "owner@example.org", PASSWORD) is not None


def test_disabled_users_cannot_sign_in(engine):
    user = add_user(engine, "gone@example.org", PASSWORD, "owner")
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user.id).values(disabled=True))
    assert login_attempt(engine, "gone@example.org", PASSWORD).outcome == "disabled"


def test_unknown_emails_cost_the_same_argon2_work(engine, monkeypatch):
    add_user(engine, "known@example.org", PASSWORD, "owner")
    calls: list[str] = []
    real = passwords.verify_password

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password_hash[:9])
        return real(password_hash, password)

    monkeypatch.setattr("troth.auth.users.verify_password", counting)
    assert authenticate(engine, "nobody@example.org", PASSWORD) is None
    assert authenticate(engine, "not an email", PASSWORD) is None
    assert authenticate(engine, "known@example.org", "wrong password") is None
    assert calls == ["$argon2id"] * 3


# --- sessions ------------------------------------------------------------------------------


def test_sessions_store_only_a_hash_and_expire(engine):
    user = add_user(engine, "owner@example.org", PASSWORD, "owner")
    now = dt.datetime.now(dt.UTC)
    token, session = create_session(engine, user.id, now=now)
    assert len(token) == 43
    assert session.role == "owner"
    assert len(session.csrf) == 43
    assert token not in dump(engine)
    assert hashlib.sha256(token.encode()).hexdigest() in dump(engine)
    assert load_session(engine, token, now=now + dt.timedelta(hours=7)) == session
    assert load_session(engine, token + "x", now=now) is None
    assert load_session(engine, "A" * 43, now=now) is None
    expired = now + SESSION_LIFETIME + dt.timedelta(seconds=1)
    assert load_session(engine, token, now=expired) is None
    with engine.connect() as conn:  # the expired session was deleted on the way
        assert conn.execute(select(sessions)).all() == []


def test_sign_out_ends_the_session(engine):
    user = add_user(engine, "owner@example.org", PASSWORD, "owner")
    token, _ = create_session(engine, user.id)
    destroy_session(engine, token)
    assert load_session(engine, token) is None


# --- API keys ------------------------------------------------------------------------------


def test_api_keys_are_shown_once_stored_hashed_and_revocable(engine):
    key_id, full = create_api_key(engine, "service", "billing backend")
    assert re.fullmatch(r"troth_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", full)
    assert full.startswith(f"troth_{key_id}_")
    secret = full.removeprefix(f"troth_{key_id}_")
    database = dump(engine)
    assert secret not in database
    assert full not in database
    assert hashlib.sha256(secret.encode()).hexdigest() in database
    assert verify_api_key(engine, full) == (key_id, "service")
    assert verify_api_key(engine, full[:-1] + ("A" if full[-1] != "A" else "B")) is None
    assert verify_api_key(engine, f"troth_{'0' * 16}_{secret}") is None
    assert verify_api_key(engine, "troth_nonsense") is None
    assert revoke_api_key(engine, key_id) is True
    assert revoke_api_key(engine, key_id) is False
    assert verify_api_key(engine, full) is None
    with pytest.raises(TrothError, match=r"^role: "):
        create_api_key(engine, "root", "x")
    with pytest.raises(TrothError, match=r"^label: "):
        create_api_key(engine, "service", "  ")


# --- the route × role matrix ---------------------------------------------------------------

PUBLIC = "public"
SIGNED_IN = "any principal"

# (methods, path; a trailing * matches any continuation) -> who may call it. First match
# wins. A route that no rule matches fails the test: decide its permission here first.
RULES: list[tuple[str, str, str]] = [
    ("GET", "/", PUBLIC),
    ("GET", "/privacy*", PUBLIC),  # /privacy, /privacy/..., /privacy.json
    ("GET", "/troth/*", PUBLIC),  # banner and static assets
    ("GET", "/healthz", PUBLIC),
    ("GET", "/.well-known/*", PUBLIC),
    ("GET", "/openapi.json", PUBLIC),
    ("POST", "/api/consent", PUBLIC),
    ("GET", "/api/consent/{subject}*", PUBLIC),
    ("GET POST", "/admin/login", PUBLIC),
    ("POST", "/admin/logout", SIGNED_IN),
    ("GET", "/admin", "admin.view"),
    ("GET", "/admin/users", "admin.users"),
    ("GET", "/admin/analytics", "consent.report"),
    ("GET", "/api/stats", "consent.report"),
    ("POST", "/admin/audit/verify", "audit.read"),
    ("GET", "/t/p/*", PUBLIC),  # tracking pixel
    ("POST", "/t/e", PUBLIC),  # tracking events
    ("GET", "/t/l/*", PUBLIC),  # tracking links
    ("POST", "/api/mail/tag", "vault.use"),
    ("POST", "/api/vault/put", "vault.use"),
    ("POST", "/api/vault/get", "vault.use"),
    ("POST", "/api/vault/limits*", "consent.manage"),
    ("GET", "/api/audit/*", "audit.read"),
    # --- data subject rights (F5): add rules below this line ---
    ("POST", "/privacy/requests*", PUBLIC),  # submit, enter the code, ask for a new one
    ("POST", "/api/rights/requests", "requests.submit"),
    ("GET", "/api/rights/requests*", "requests.view"),
    ("POST", "/api/rights/requests/*", "requests.manage"),
    ("GET", "/admin/requests*", "requests.view"),
    ("POST", "/admin/requests/*", "requests.manage"),
    # --- transfers, disclosures, legal requests (F6): add rules below this line ---
    ("GET", "/api/transfers", "transfers.view"),
    ("GET", "/api/disclosures*", "transfers.view"),  # the log and its report
    ("POST", "/api/disclosures", "disclosures.record"),
    ("POST", "/api/vault/disclose", "vault.use"),
    ("GET POST", "/api/legal*", "legal.manage"),
    ("GET", "/admin/transfers", "transfers.view"),
    ("GET", "/admin/disclosures", "transfers.view"),
    ("GET POST", "/admin/legal*", "legal.manage"),
]

SAMPLES = {
    "subject": "visitor-0000000000000001",
    "receipt_id": "00000000-0000-4000-8000-000000000000",
    "name": "admin.css",
}


def rule_for(method: str, path: str) -> str | None:
    for methods, pattern, who in RULES:
        if method not in methods.split():
            continue
        if path == pattern or (pattern.endswith("*") and path.startswith(pattern[:-1])):
            return who
    return None


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLES.get(m.group(1), "sample"), path)


def test_every_route_answers_each_role_as_the_table_says(app, client):
    eng = app_engine(app)
    found = routes_of(app)
    unruled = [f"{m} {p}" for m, p in found if rule_for(m, p) is None]
    assert not unruled, f"routes without a rule in RULES (protect them, then add): {unruled}"
    keys = {role: create_api_key(eng, role, f"matrix {role}")[1] for role in ROLES}
    people = {role: add_user(eng, f"{role}@example.org", PASSWORD, role) for role in ROLES}
    failures: list[str] = []

    def check(who: str, method: str, path: str, headers: dict[str, str], want: str) -> None:
        r = client.request(method, concrete(path), headers=headers, follow_redirects=False)
        ok = {
            "open": r.status_code not in (401, 403),
            "401": r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"),
            "403": r.status_code == 403,
        }[want]
        if not ok or r.status_code >= 500:
            failures.append(f"{who}: {method} {path} -> {r.status_code}, wanted {want}")

    for method, path in found:
        rule = rule_for(method, path)
        assert rule is not None
        check("anonymous", method, path, {}, "open" if rule == PUBLIC else "401")
        for role in ROLES:
            want = "open" if rule in (PUBLIC, SIGNED_IN) or allows(role, rule) else "403"
            bearer = {"Authorization": f"Bearer {keys[role]}"}
            check(f"{role} (API key)", method, path, bearer, want)
            token, session = create_session(eng, people[role].id)  # fresh: sign-out ends one
            cookie = {"Cookie": f"{SESSION_COOKIE}={token}", "X-CSRF-Token": session.csrf}
            check(f"{role} (session)", method, path, cookie, want)
    assert not failures, "\n".join(failures)


def test_an_invalid_bearer_key_is_401_even_with_a_session(app, client):
    cookie, _ = session_cookie(app, "owner")
    r = client.get("/admin", headers={"Authorization": "Bearer troth_x_y", "Cookie": cookie})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.headers["content-type"] == "application/problem+json"


def test_revoked_keys_are_refused_by_the_app(app, client):
    key_id, key = create_api_key(app_engine(app), "owner", "soon revoked")
    assert client.get("/admin/users", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    revoke_api_key(app_engine(app), key_id)
    assert client.get("/admin/users", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_browsers_without_a_session_get_a_sign_in_link(client):
    r = client.get("/admin", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 401
    assert 'href="/admin/login"' in r.text


# --- CSRF ----------------------------------------------------------------------------------


def test_session_posts_need_the_csrf_token(app, client):
    cookie, csrf = session_cookie(app, "auditor")
    verify = "/admin/audit/verify"
    assert client.post(verify, headers={"Cookie": cookie}).status_code == 403
    r = client.post(verify, headers={"Cookie": cookie}, data={"csrf": "forged"})
    assert r.status_code == 403
    assert "CSRF" in r.json()["title"]
    other_cookie, other_csrf = session_cookie(app, "auditor")
    assert (
        client.post(verify, headers={"Cookie": cookie, "X-CSRF-Token": other_csrf}).status_code
        == 403
    )
    assert client.post(verify, headers={"Cookie": cookie}, data={"csrf": csrf}).status_code == 200
    assert client.post(verify, headers={"Cookie": cookie, "X-CSRF-Token": csrf}).status_code == 200
    # an API key is no ambient credential: no CSRF token needed
    _, key = create_api_key(app_engine(app), "auditor", "ci")
    assert client.post(verify, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # sign-out is a session POST too
    assert client.post("/admin/logout", headers={"Cookie": other_cookie}).status_code == 403


# --- sign-in through the form --------------------------------------------------------------


def sign_in(client: TestClient, email: str, password: str) -> httpx.Response:
    token = form_token(client.get("/admin/login").text)
    data = {"email": email, "password": password, "csrf": token}
    return client.post("/admin/login", data=data, follow_redirects=False)


def test_sign_in_sets_a_strict_session_cookie_and_sign_out_ends_it(app, client):
    add_user(app_engine(app), "owner@example.org", PASSWORD, "owner")
    r = sign_in(client, "Owner@Example.org", PASSWORD)
    assert r.status_code == 303
    assert r.headers["location"] == "/admin"
    [cookie] = [c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict"} <= flags
    assert "secure" not in flags  # plain http in this test
    page = client.get("/admin")
    assert page.status_code == 200
    assert "Overview" in page.text
    assert "owner@example.org" in page.text
    # signing in again while signed in goes to the overview
    r = client.get("/admin/login", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/admin")
    csrf = form_token(page.text)
    r = client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/admin").status_code == 401


def test_cookies_are_secure_over_https(app):
    add_user(app_engine(app), "owner@example.org", PASSWORD, "owner")
    with TestClient(app, base_url="https://testserver") as client:
        r = sign_in(client, "owner@example.org", PASSWORD)
        assert r.status_code == 303
        for cookie in r.headers.get_list("set-cookie"):
            assert "secure" in cookie.lower(), cookie
        assert r.headers["strict-transport-security"] == HSTS


def test_wrong_passwords_and_locked_accounts_get_the_same_answer(app, client):
    add_user(app_engine(app), "owner@example.org", PASSWORD, "owner")
    answers = set()
    for attempt in range(MAX_FAILURES + 1):
        r = sign_in(client, "owner@example.org", f"wrong password {attempt}")
        assert r.status_code == 401
        answers.add(re.sub(r'value="[^"]*"', "", r.text))
    r = sign_in(client, "owner@example.org", PASSWORD)  # locked now
    assert r.status_code == 401
    answers.add(re.sub(r'value="[^"]*"', "", r.text))
    r = sign_in(client, "nobody@example.org", PASSWORD)
    answers.add(re.sub(r'value="[^"]*"', "", r.text).replace("nobody@", "owner@"))
    assert len(answers) == 1
    assert "Wrong e-mail address or password" in answers.pop()


def test_the_sign_in_form_needs_its_own_token(app, client):
    add_user(app_engine(app), "owner@example.org", PASSWORD, "owner")
    client.get("/admin/login")
    data = {"email": "owner@example.org", "password": PASSWORD, "csrf": "forged"}
    r = client.post("/admin/login", data=data, follow_redirects=False)
    assert r.status_code == 400
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_service_accounts_do_not_use_the_admin_pages(app, client):
    add_user(app_engine(app), "backend@example.org", PASSWORD, "service")
    r = sign_in(client, "backend@example.org", PASSWORD)
    assert r.status_code == 403
    assert "API key" in r.text


def test_sign_in_is_rate_limited_per_network(seed, tmp_path):
    app = make_app(seed, f"sqlite:///{tmp_path / 'troth.db'}", tmp_path, login_rate_per_minute=10)
    with TestClient(app) as client:
        statuses = [
            client.post(
                "/admin/login", data={"email": "a@example.org", "password": "x"}
            ).status_code
            for _ in range(11)
        ]
    assert statuses[:10] == [400] * 10  # no form token: refused before any password work
    assert statuses[10] == 429


def test_the_rate_limit_answer_says_when_to_retry(seed, tmp_path):
    app = make_app(seed, f"sqlite:///{tmp_path / 'troth.db'}", tmp_path, login_rate_per_minute=10)
    with TestClient(app) as client:
        for _ in range(10):
            client.post("/admin/login", data={})
        r = client.post("/admin/login", data={})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "Too many sign-in attempts" in r.text


# --- the overview --------------------------------------------------------------------------


def test_each_role_sees_only_its_sections(app, client):
    sections = {
        "owner": {"policy", "consent", "audit", "requests"},
        "privacy_officer": {"policy", "consent", "audit", "requests"},
        "support_agent": {"policy", "requests"},
        "auditor": {"audit"},
    }
    for role, expected in sections.items():
        cookie, _ = session_cookie(app, role)
        page = client.get("/admin", headers={"Cookie": cookie}).text
        shown = set(re.findall(r'<section id="(\w+)"', page))
        assert shown == expected, role
        nav = re.search(r'<nav aria-label="Admin">(.*?)</nav>', page, re.S)
        assert nav is not None
        assert ('href="/admin/users"' in nav.group(1)) == allows(role, "admin.users"), role
        assert ('href="/admin#audit"' in nav.group(1)) == allows(role, "audit.read"), role


def test_overview_shows_the_policy_and_verifies_the_audit_log(app, client):
    add_user(app_engine(app), "owner@example.org", PASSWORD, "owner")
    assert sign_in(client, "owner@example.org", PASSWORD).status_code == 303
    page = client.get("/admin").text
    policy = app.state.services.policy
    assert policy.version in page
    assert policy.effective.isoformat() in page
    assert "Not verified since this server started" in page
    page = client.post("/admin/audit/verify", data={"csrf": form_token(page)}).text
    assert re.search(r'<span class="ok">intact</span>', page), page
    assert re.search(r"<dt>Entries</dt><dd>[1-9]", page)  # at least the sign-in itself
    assert "No data subject requests yet" in page


def insert_consent(eng: Engine, at: dt.datetime, choices: dict[str, str]) -> None:
    with eng.begin() as conn:
        conn.execute(
            insert(consent_events).values(
                receipt_id=str(uuid.uuid4()),
                subject_hash="0" * 64,
                policy_version="1.1.0",
                language="en",
                method="api",
                jurisdiction="",
                gpc=False,
                choices=choices,
                created_at=at,
                signature="-",
                receipt={},
            )
        )


def test_consent_rates_per_day_and_category(app, client, seed):
    eng = app_engine(app)
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0)
    yesterday = today - dt.timedelta(days=1)
    insert_consent(eng, today - dt.timedelta(days=40), {"analytics": "refused"})  # too old
    insert_consent(eng, yesterday, {"analytics": "given"})
    insert_consent(eng, today, {"analytics": "given", "advertising": "refused"})
    insert_consent(eng, today, {"analytics": "withdrawn", "advertising": "given"})
    report = consent_report(eng, seed.policy, days=30)
    assert report.counts == {
        (today.date(), "analytics"): (1, 2),
        (today.date(), "advertising"): (1, 2),
        (yesterday.date(), "analytics"): (1, 1),
    }
    assert report.share(today.date(), "analytics") == 0.5
    assert [row[0] for row in report.table()] == [today.date(), yesterday.date()]
    capped = consent_report(eng, seed.policy, days=30, limit=2)
    assert capped.capped == 2
    assert len(capped.counts) == 2

    cookie, _ = session_cookie(app, "privacy_officer")
    page = client.get("/admin", headers={"Cookie": cookie}).text
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    assert re.search(r'<path d="M[\d.]+ [\d.]+ L[\d.]+ [\d.]+"', svg.group(0))  # two days joined
    assert "Analytics, " + today.date().isoformat() + ": 50% (1 of 2)" in svg.group(0)
    assert "50% <span" in page
    assert "(1 of 2)" in page


def test_users_page_lists_users_and_keys(app, client):
    eng = app_engine(app)
    add_user(eng, "locked@example.org", PASSWORD, "support_agent")
    for _ in range(MAX_FAILURES):
        authenticate(eng, "locked@example.org", "wrong password!")
    create_api_key(eng, "service", "billing <backend>")
    cookie, _ = session_cookie(app, "owner", "boss@example.org")
    page = client.get("/admin/users", headers={"Cookie": cookie}).text
    assert "locked@example.org" in page
    assert "boss@example.org" in page
    assert re.search(r"locked@example.org</td>\s*<td>support agent</td>\s*<td><span", page)
    assert "billing &lt;backend&gt;" in page  # autoescaped


# --- security headers ----------------------------------------------------------------------

INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son\w+=", re.I)


def test_admin_pages_have_a_strict_policy_and_no_inline_code(app, client):
    cookie, _ = session_cookie(app, "owner")
    insert_consent(app_engine(app), dt.datetime.now(dt.UTC), {"analytics": "given"})
    for path, headers in [
        ("/admin/login", {}),
        ("/admin", {"Cookie": cookie}),
        ("/admin/users", {"Cookie": cookie}),
        ("/admin", {}),  # the 401 answer too
    ]:
        r = client.get(path, headers=headers, follow_redirects=False)
        csp = r.headers["content-security-policy"]
        assert csp == ADMIN_CSP
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "strict-transport-security" not in r.headers  # plain http
        if r.headers["content-type"].startswith("text/html"):
            assert not INLINE.search(r.text), (path, INLINE.search(r.text))
    assert client.get("/troth/admin.css").headers["content-type"].startswith("text/css")


def test_public_pages_may_only_be_framed_by_the_site(client):
    for path in ["/privacy", "/privacy/preferences", "/healthz", "/troth/banner.js"]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == "frame-ancestors 'self'"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "cache-control" not in r.headers or "no-store" not in r.headers["cache-control"]


@pytest.mark.parametrize(
    ("trust", "scheme", "forwarded", "hsts"),
    [
        (False, "http", None, False),
        (False, "https", None, True),
        (False, "http", "https", False),  # an untrusted header changes nothing
        (True, "http", "https", True),
        (True, "http", "http", False),
    ],
)
def test_hsts_only_over_https(trust, scheme, forwarded, hsts):
    inner = Starlette(routes=[Route("/", lambda _r: PlainTextResponse("ok"))])
    app = SecurityHeaders(inner, trust_forwarded_proto=trust)
    headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
    with TestClient(app, base_url=f"{scheme}://testserver") as client:
        r = client.get("/", headers=headers)
    assert ("strict-transport-security" in r.headers) == hsts
    if hsts:
        assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


# --- a real server -------------------------------------------------------------------------


def test_sign_in_over_http_on_a_real_server(db_url, tmp_path):
    """`troth serve` as deployed: sign in through the form and see the overview."""
    with running_server(SEED, db_url, tmp_path / "work") as server:
        eng = make_engine(db_url)  # the server has migrated it
        add_user(eng, "owner@example.org", PASSWORD, "owner")
        eng.dispose()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/admin").status_code == 401
            form = http.get("/admin/login")
            assert form.status_code == 200, "is the admin router wired into create_app?"
            assert form.headers["content-security-policy"] == ADMIN_CSP
            data = {
                "email": "owner@example.org",
                "password": PASSWORD,
                "csrf": form_token(form.text),
            }
            r = http.post("/admin/login", data=data)
            assert r.status_code == 303
            assert r.headers["location"] == "/admin"
            page = http.get("/admin")
            assert page.status_code == 200
            assert "<h1>Overview</h1>" in page.text
            assert "1.1.0" in page.text
            assert page.headers["cache-control"] == "no-store"


# --- the CLI -------------------------------------------------------------------------------


def test_cli_adds_users_and_prints_api_keys_once(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from troth.cli import app as cli

    monkeypatch.setenv("TROTH_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("TROTH_AUDIT_HEADS", str(tmp_path / "audit" / "heads.jsonl"))
    db = ["--database-url", f"sqlite:///{tmp_path / 'troth.db'}"]
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(cli, [*args, *db], input=stdin)

    assert run("db", "upgrade").exit_code == 0
    r = run("users", "add", "Owner@Example.org", "--role", "owner", stdin=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "added owner@example.org as owner" in r.stdout
    assert PASSWORD not in r.output
    r = run("users", "add", "owner@example.org", "--role", "owner", stdin=PASSWORD + "\n")
    assert r.exit_code == 2
    assert "already exists" in r.stderr
    r = run("users", "add", "x@example.org", "--role", "owner", stdin="too short\n")
    assert r.exit_code == 2
    assert "password: use at least 12" in r.stderr
    r = run("users", "add", "x@example.org", "--role", "root", stdin=PASSWORD + "\n")
    assert r.exit_code == 2
    assert "not a role" in r.stderr
    assert "owner@example.org\towner\tactive" in run("users", "list").stdout

    r = run("keys", "create", "--role", "service", "--label", "billing backend")
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert re.fullmatch(r"troth_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    assert "not shown again" in r.stderr
    eng = make_engine(f"sqlite:///{tmp_path / 'troth.db'}")
    key_id = key.split("_")[1]
    assert verify_api_key(eng, key) == (key_id, "service")
    listing = run("keys", "list").stdout
    assert key_id in listing
    assert key not in listing
    assert run("keys", "revoke", key_id).exit_code == 0
    assert run("keys", "revoke", key_id).exit_code == 1
    assert verify_api_key(eng, key) is None
    eng.dispose()
    # each addition, creation and revocation is in the audit log, which still verifies
    r = run("audit", "verify")
    assert r.exit_code == 0, r.output
    assert "intact: 3 entries" in r.stdout
