"""HTTP API and admin pages of the rights capability."""

from __future__ import annotations

from fastapi import APIRouter

from troth.web.services import Services

__all__ = ["rights_router"]


def rights_router(services: Services) -> APIRouter:
    _ = services
    return APIRouter()
