"""Run troth's Alembic migrations; safe to call from several processes at once."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from troth.errors import StoreError

__all__ = ["check_current", "head_revision", "upgrade"]

_LOCK_KEY = 0x7472_6F74  # "trot": serialises concurrent upgrades on PostgreSQL


def _config() -> Config:
    ini = resources.files("troth.store") / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", "troth.store:migrations")
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest schema; returns the revision it is at."""
    config = _config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise StoreError(f"cannot reach the database: {exc.orig.__class__.__name__}") from None
    return head_revision()


def check_current(engine: Engine) -> None:
    """Raise a clear error when the database is not at the newest schema."""
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise StoreError(f"cannot reach the database: {exc.orig.__class__.__name__}") from None
    if current != head_revision():
        raise StoreError(
            f"the database schema is at {current or 'nothing'}, troth needs {head_revision()}: "
            "run `troth db upgrade`"
        )
