"""The ASGI app. Pages and banner configurations are rendered once at start-up, never per
request; the request path of the API is validation, one short transaction or one indexed
read."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from troth import __version__
from troth.config import Settings
from troth.consent.banner_config import banner_assets, banner_config
from troth.policy.loader import load_policy
from troth.policy.model import Policy
from troth.render.output import render_policy, render_table
from troth.store.batch import BatchWriter
from troth.store.maintenance import claim
from troth.tracking.purge import purge
from troth.tracking.recorder import Recorder
from troth.tracking.tracker import Tracker
from troth.web.admin import admin_router
from troth.web.auth_deps import AuthProblem, auth_problem_handler
from troth.web.consent_api import consent_router
from troth.web.mail_api import mail_router
from troth.web.pages import PageRenderer
from troth.web.problems import BodyLimit, RateLimiter, problem
from troth.web.rights_api import rights_router
from troth.web.security import SecurityHeaders
from troth.web.services import Services
from troth.web.stats_api import stats_router
from troth.web.tracking_api import PIXEL, tracking_router
from troth.web.transfers_api import transfers_router
from troth.web.vault_api import vault_router

__all__ = ["create_app", "create_app_from_env"]

_HTML = "text/html; charset=utf-8"


async def _purge_hourly(services: Services, first_after: float = 60.0) -> None:
    """Retention inside `troth serve`: purge a minute after start, then every hour (audited;
    with several workers, the first to ask each hour does it).

    A purge in progress is allowed to finish on shutdown, so it never holds a connection
    while the engine is disposed."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(first_after)
    while True:
        job = loop.run_in_executor(None, lambda: _purge_if_due(services))
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await job
            raise
        except Exception as exc:  # a failed purge is retried next hour, and said
            print(
                f"troth: purge failed ({type(exc).__name__}); retrying in an hour", file=sys.stderr
            )
        await asyncio.sleep(3600)


def _purge_if_due(services: Services) -> None:
    """Of several workers (or hosts) on one database, only one purges each hour."""
    if claim(services.engine, "tracking.purge", dt.timedelta(minutes=55)):
        purge(services.engine, services.policy, services.audit)


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers: reads ``TROTH_POLICY``."""
    return create_app(load_policy(os.environ["TROTH_POLICY"]).policy, Settings())


def create_app(policy: Policy, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = Services.open(policy, settings)
    ledger = services.ledger
    writer = BatchWriter(
        services.engine, finish=services.audit.take_head, after_commit=services.audit.publish
    )
    recorder = Recorder(services.engine, writer)
    tracker = Tracker(services.compiled, ledger, services.salts, services.links, recorder)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Request threads are bounded to what the connection pool can serve without churn.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        writer.start()
        recorder.start()
        purging = asyncio.get_running_loop().create_task(_purge_hourly(services))
        yield
        purging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purging
        await recorder.stop()
        await writer.stop()
        services.engine.dispose()

    app = FastAPI(
        title="troth",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        description=f"Privacy API of {policy.service}, policy version {policy.version}",
    )
    pages = PageRenderer(policy, services.history)
    js, css = banner_assets()
    banners: dict[tuple[str, str], tuple[bytes, str]] = {}
    for lang in policy.languages:
        for j in [None, *policy.jurisdictions]:
            config = banner_config(policy, lang, ledger.revisions, j or ledger.jurisdiction(None))
            body = (
                f"window.trothConfig={json.dumps(config)};window.trothCss={json.dumps(css)};\n{js}"
            ).encode()
            banners[(lang, j.id if j else "")] = (body, hashlib.sha256(body).hexdigest()[:16])
    policy_pages = {
        (name, lang): content.encode()
        for lang in policy.languages
        for name, content in (
            ("policy", render_policy(policy, lang, "html")),
            ("tracking", render_table(policy, "tracking", lang, "html")),
            ("recipients", render_table(policy, "recipients", lang, "html")),
        )
    }
    policy_json = {lang: render_policy(policy, lang, "json").encode() for lang in policy.languages}
    static = resources.files("troth.web") / "static"
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    statics = {
        entry.name: (entry.read_bytes(), types[Path(entry.name).suffix])
        for entry in static.iterdir()
        if Path(entry.name).suffix in types
    }
    statics["pixel.gif"] = (PIXEL, "image/gif")
    headers = {"X-Policy-Version": policy.version, "Vary": "Accept-Language"}

    def language(request: Request) -> str | None:
        asked = request.query_params.get("lang")
        if asked is not None:
            return asked if asked in policy.languages else None
        ranked: list[tuple[float, str]] = []
        for part in request.headers.get("accept-language", "").split(",")[:20]:
            tag, _, q = part.strip().partition(";q=")
            try:
                weight = float(q) if q else 1.0
            except ValueError:
                continue
            ranked.append((weight, tag.split("-")[0].lower()))
        for _weight, tag in sorted(ranked, key=lambda x: -x[0]):
            if tag in policy.languages:
                return tag
        return policy.default_language

    def region(request: Request) -> str | None:
        asked = request.query_params.get("region")
        if asked is None:
            return ""
        return asked if asked in ledger.jurisdictions else None

    def no_language() -> Response:
        return problem(404, "No such language", "lang: published in " + ", ".join(policy.languages))

    def html(body: bytes, lang: str) -> Response:
        return Response(body, media_type=_HTML, headers={**headers, "Content-Language": lang})

    @app.get("/", response_class=Response, include_in_schema=False)
    def demo(request: Request) -> Response:
        lang, jid = language(request), region(request)
        if lang is None:
            return no_language()
        if jid is None:
            return problem(404, "No such region", "region: " + ", ".join(ledger.jurisdictions))
        return html(pages.demo(lang, jid).encode(), lang)

    @app.get("/privacy", response_class=Response, summary="The privacy policy (HTML)")
    def privacy(request: Request) -> Response:
        lang = language(request)
        return no_language() if lang is None else html(policy_pages[("policy", lang)], lang)

    @app.get("/privacy/tracking", response_class=Response, summary="Tracking technologies")
    def tracking(request: Request) -> Response:
        lang = language(request)
        return no_language() if lang is None else html(policy_pages[("tracking", lang)], lang)

    @app.get("/privacy/recipients", response_class=Response, summary="Recipients and transfers")
    def recipients(request: Request) -> Response:
        lang = language(request)
        return no_language() if lang is None else html(policy_pages[("recipients", lang)], lang)

    @app.get("/privacy/preferences", response_class=Response, summary="Preference centre")
    def preferences(request: Request) -> Response:
        lang, jid = language(request), region(request)
        if lang is None:
            return no_language()
        if jid is None:
            return problem(404, "No such region", "region: " + ", ".join(ledger.jurisdictions))
        return html(pages.preferences(lang, jid).encode(), lang)

    @app.get("/privacy.json", response_class=Response, summary="The privacy policy (JSON)")
    def privacy_json(request: Request) -> Response:
        lang = language(request)
        if lang is None:
            return no_language()
        return Response(policy_json[lang], media_type="application/json", headers=headers)

    @app.get("/troth/banner.js", response_class=Response, summary="The consent banner")
    def banner(request: Request) -> Response:
        lang = language(request)
        jid = request.query_params.get("jurisdiction", "")
        found = banners.get((lang or "", jid))
        if found is None:
            return problem(404, "No such banner", "lang, jurisdiction: not declared by the policy")
        body, etag = found
        if request.headers.get("if-none-match") == f'"{etag}"':
            return Response(status_code=304)
        return Response(
            body,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300", "ETag": f'"{etag}"'},
        )

    @app.get("/troth/{name}", response_class=Response, include_in_schema=False)
    def static_js(name: str) -> Response:
        found = statics.get(name)
        if found is None:
            return problem(404, "Not found", "no such file")
        return Response(
            found[0], media_type=found[1], headers={"Cache-Control": "public, max-age=300"}
        )

    @app.get("/healthz", summary="Liveness")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.include_router(consent_router(ledger, writer, RateLimiter(settings.write_rate_per_minute)))
    app.include_router(admin_router(trust_forwarded_proto=settings.trust_proxy))
    app.include_router(vault_router(services))
    app.include_router(mail_router())
    app.include_router(tracking_router(settings.tracking_rate_per_minute))
    app.include_router(stats_router())
    app.include_router(rights_router(services))
    app.include_router(transfers_router(services))
    app.add_exception_handler(AuthProblem, auth_problem_handler)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = "Payload too large" if exc.status_code == 413 else str(exc.detail)
        return problem(exc.status_code, title, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug in troth, not the client's mistake: say so without echoing anything.
        print(f"troth: unexpected {type(exc).__name__} while answering a request", file=sys.stderr)
        return problem(500, "Internal error", "troth could not answer this request")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return problem(400, "Malformed JSON", "body: not valid JSON")
        where = ".".join(str(p) for p in first["loc"] if p not in ("body",)) or "body"
        return problem(422, "Invalid request", f"{where}: {first['msg']}")

    origins = settings.origin_list() or ([policy.url.rstrip("/")] if policy.url else [])
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o for o in origins if o.startswith("http")],
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        max_age=600,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, trust_forwarded_proto=settings.trust_proxy)
    app.state.services = services
    app.state.tracker = tracker
    return app
