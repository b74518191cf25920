"""The ASGI app. Pages are rendered once when the app is created, never per request."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from troth import __version__
from troth.policy.model import Policy
from troth.render.output import render_policy, render_table

__all__ = ["create_app"]

_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class _Pages:
    policy: Policy
    html: dict[tuple[str, str], bytes]
    json: dict[str, bytes]

    def language(self, request: Request) -> str | None:
        """The ``lang`` query parameter, else the best Accept-Language match, else default."""
        asked = request.query_params.get("lang")
        if asked is not None:
            return asked if asked in self.policy.languages else None
        header = request.headers.get("accept-language", "")
        ranked: list[tuple[float, str]] = []
        for part in header.split(",")[:20]:
            lang, _, q = part.strip().partition(";q=")
            try:
                weight = float(q) if q else 1.0
            except ValueError:
                continue
            ranked.append((weight, lang.split("-")[0].lower()))
        for _weight, lang in sorted(ranked, key=lambda x: -x[0]):
            if lang in self.policy.languages:
                return lang
        return self.policy.default_language


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def create_app(policy: Policy) -> FastAPI:
    pages = _Pages(
        policy=policy,
        html={
            (name, lang): content.encode()
            for lang in policy.languages
            for name, content in (
                ("policy", render_policy(policy, lang, "html")),
                ("tracking", render_table(policy, "tracking", lang, "html")),
                ("recipients", render_table(policy, "recipients", lang, "html")),
            )
        },
        json={lang: render_policy(policy, lang, "json").encode() for lang in policy.languages},
    )
    app = FastAPI(title="troth", version=__version__, docs_url=None, redoc_url=None)
    headers = {"X-Policy-Version": policy.version, "Vary": "Accept-Language"}

    def page(request: Request, name: str) -> Response:
        lang = pages.language(request)
        if lang is None:
            return _problem(
                404,
                "No such language",
                "lang: this policy is published in " + ", ".join(policy.languages),
            )
        return Response(
            pages.html[(name, lang)],
            media_type=_HTML,
            headers={**headers, "Content-Language": lang},
        )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/privacy", status_code=307)

    @app.get("/privacy", response_class=Response, summary="The privacy policy (HTML)")
    def privacy(request: Request) -> Response:
        return page(request, "policy")

    @app.get("/privacy/tracking", response_class=Response, summary="Tracking technologies")
    def tracking(request: Request) -> Response:
        return page(request, "tracking")

    @app.get("/privacy/recipients", response_class=Response, summary="Recipients and transfers")
    def recipients(request: Request) -> Response:
        return page(request, "recipients")

    @app.get("/privacy.json", response_class=Response, summary="The privacy policy (JSON)")
    def privacy_json(request: Request) -> Response:
        lang = pages.language(request)
        if lang is None:
            return _problem(404, "No such language", "lang: " + ", ".join(policy.languages))
        return Response(pages.json[lang], media_type="application/json", headers=headers)

    @app.get("/healthz", summary="Liveness")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"])
        return _problem(422, "Invalid request", f"{field}: {first['msg']}")

    return app
