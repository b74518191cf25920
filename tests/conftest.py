"""Shared fixtures: the minimal and seed policies, and a way to write variants of them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from troth.policy.loader import LoadedPolicy, load_policy

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "fixtures" / "minimal.yaml"
SEED = ROOT / "examples" / "seed-service" / "policy.yaml"
SEED_TEXT = ROOT.parent / "shared" / "seed" / "privacy-policy.txt"

Variant = Callable[[Callable[[dict[str, Any]], None]], LoadedPolicy]


def write_variant(base: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = copy.deepcopy(yaml.safe_load(base.read_text(encoding="utf-8")))
    edit(data)
    out = tmp_path / f"variant-{len(list(tmp_path.iterdir()))}.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


@pytest.fixture
def minimal_variant(tmp_path: Path) -> Variant:
    """Load the minimal policy after applying ``edit`` to its YAML data."""

    def make(edit: Callable[[dict[str, Any]], None]) -> LoadedPolicy:
        return load_policy(write_variant(MINIMAL, tmp_path, edit))

    return make


@pytest.fixture
def seed_variant(tmp_path: Path) -> Callable[[Callable[[dict[str, Any]], None]], Path]:
    """Write the seed policy after applying ``edit`` and return its path."""

    def make(edit: Callable[[dict[str, Any]], None]) -> Path:
        return write_variant(SEED, tmp_path, edit)

    return make


@pytest.fixture(scope="session")
def seed() -> LoadedPolicy:
    return load_policy(SEED)


@pytest.fixture(scope="session")
def minimal() -> LoadedPolicy:
    return load_policy(MINIMAL)
