"""Fixtures of the transfers tests: a migrated database on each engine and a world on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from transfers.transfers_world import World
from troth.store.engine import make_engine
from troth.store.migrate import upgrade


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def world(engine: Engine, seed: Any, tmp_path: Path) -> World:
    return World(engine, seed.policy, tmp_path)
