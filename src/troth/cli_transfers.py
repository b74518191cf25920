"""`troth` commands of the transfers capability, added to the main command by :func:`register`."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add this capability's commands and command groups to ``app``."""
    _ = app
