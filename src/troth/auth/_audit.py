"""Write transactions that may carry audit entries (committed together with the change)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine

from troth.audit.log import AuditEvent, AuditLog
from troth.store.engine import writing

__all__ = ["audited", "transaction"]


@contextmanager
def transaction(engine: Engine, audit: AuditLog | None) -> Iterator[Connection]:
    """A write transaction; if ``audit`` is given, the signed head of what the body
    appended is published after the commit."""
    with writing(engine).begin() as conn:
        yield conn
        head = audit.take_head(conn) if audit is not None else None
    if audit is not None:
        audit.publish(head)


def audited(
    conn: Connection,
    audit: AuditLog | None,
    action: str,
    actor: str,
    details: Mapping[str, Any],
) -> None:
    """Append one entry in the caller's transaction (nothing without an audit log).
    ``details`` name users and keys by id, never by e-mail."""
    if audit is not None:
        audit.append(conn, [AuditEvent(action, actor, None, dict(details))])
