"""HTTP API and admin pages of the transfers capability."""

from __future__ import annotations

from fastapi import APIRouter

from troth.web.services import Services

__all__ = ["transfers_router"]


def transfers_router(services: Services) -> APIRouter:
    _ = services
    return APIRouter()
