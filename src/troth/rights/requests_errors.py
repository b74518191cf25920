"""The error of the request lifecycle: a request, code or download link that cannot be
accepted. It carries the HTTP status the web layer answers with; its message starts with
the field it is about and never echoes what the requester sent."""

from __future__ import annotations

from troth.errors import TrothError

__all__ = ["RequestError"]


class RequestError(TrothError):
    """``status``: 400 malformed, 404 unknown, 409 wrong state, 410 expired or used,
    422 invalid field, 429 too many attempts, 503 mail could not be sent."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status = status
        self.title = title
        super().__init__(detail)
