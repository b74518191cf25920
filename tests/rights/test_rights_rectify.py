"""Rectification: declared fields of the person's rows change; identities, keys, links and
undeclared fields are refused with a clear error — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rights.conftest import ALEX, World, write_datasets
from troth.errors import PolicyError, TrothError
from troth.policy.datasets import load_datasets
from troth.rights.connectors import open_connectors
from troth.rights.engine import RightsEngine

ALEX_IDS = {"email": [ALEX["email"]]}


def test_a_declared_field_is_corrected_in_the_persons_rows_only(world: World) -> None:
    before = world.sql("SELECT id, name FROM accounts WHERE id <> 1 ORDER BY id")
    changed = world.engine().rectify(
        ALEX_IDS, "lumen", "accounts", "name", "Alex Beispiel", actor="officer"
    )
    assert changed == 1
    assert world.sql("SELECT name FROM accounts WHERE id = 1")[0][0] == "Alex Beispiel"
    assert world.sql("SELECT id, name FROM accounts WHERE id <> 1 ORDER BY id") == before
    # the same value again changes nothing
    again = world.engine().rectify(
        ALEX_IDS, "lumen", "accounts", "name", "Alex Beispiel", actor="officer"
    )
    assert again == 0


def test_every_row_of_the_person_in_that_table_is_corrected(world: World) -> None:
    changed = world.engine().rectify(
        {"account_id": ["1"]}, "lumen", "devices", "os", "Android 15", actor="officer"
    )
    assert changed == 2
    assert world.sql("SELECT DISTINCT os FROM devices WHERE account_id = 1")[0][0] == "Android 15"


@pytest.mark.parametrize(
    ("table", "field", "message"),
    [
        ("accounts", "email", "identifies the person or links rows"),
        ("devices", "account_id", "identifies the person or links rows"),
        ("accounts", "nickname", "field 'nickname' is not declared in table 'accounts'"),
        ("plans", "name", "table 'plans' is not declared in datastore 'lumen'"),
    ],
)
def test_what_cannot_be_rectified_is_refused_and_nothing_changes(
    world: World, table: str, field: str, message: str
) -> None:
    before = world.sql("SELECT * FROM accounts ORDER BY id")
    with pytest.raises(PolicyError, match=message):
        world.engine().rectify(ALEX_IDS, "lumen", table, field, "x", actor="officer")
    assert world.sql("SELECT * FROM accounts ORDER BY id") == before


def test_unknown_datastore_and_troth_store_are_refused(world: World) -> None:
    engine = world.engine()
    with pytest.raises(PolicyError, match="no datastore 'crm'"):
        engine.rectify(ALEX_IDS, "crm", "accounts", "name", "x", actor="officer")
    world.services.vault.put(ALEX["ref"], "bandwidth_usage", "5 GB", purpose="provide_service")
    with pytest.raises(TrothError, match="consent API"):
        engine.rectify(ALEX_IDS, "troth", "vault_values", "updated_at", "x", actor="officer")


def _engine_with(world: World, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Any:
    def both(data: dict[str, Any]) -> None:
        data["datastores"][0]["kind"] = world.kind
        edit(data["datastores"][0]["tables"])

    datasets = load_datasets(write_datasets(tmp_path, both), world.policy)
    connectors = open_connectors(datasets, troth=world.services, urls={"lumen": world.url})
    world.opened.append(connectors)
    return RightsEngine(world.policy, datasets, connectors)


def test_secrets_and_records_kept_by_law_are_not_corrected(world: World, tmp_path: Path) -> None:
    def open_invoices(tables: dict[str, Any]) -> None:
        # even opened to correction, a field erasure keeps stays as recorded
        tables["invoices"]["fields"]["customer_name"]["rectify"] = True

    engine = _engine_with(world, tmp_path, open_invoices)
    before = {t: world.sql(f"SELECT * FROM {t} ORDER BY id") for t in ("accounts", "invoices")}
    for table, field in (("accounts", "password_hash"), ("invoices", "customer_name")):
        with pytest.raises(PolicyError, match=f"field '{field}' .* is not open to correction"):
            engine.rectify(ALEX_IDS, "lumen", table, field, "x", actor="officer")
    assert {t: world.sql(f"SELECT * FROM {t} ORDER BY id") for t in before} == before


def test_a_value_the_column_cannot_take_is_refused_naming_the_field(
    world: World, tmp_path: Path
) -> None:
    def open_megabytes(tables: dict[str, Any]) -> None:
        tables["usage_records"]["fields"]["megabytes"]["rectify"] = True

    engine = _engine_with(world, tmp_path, open_megabytes)
    before = world.sql("SELECT id, megabytes FROM usage_records ORDER BY id")
    with pytest.raises(PolicyError, match=r"lumen\.usage_records\.megabytes: a whole number"):
        engine.rectify(ALEX_IDS, "lumen", "usage_records", "megabytes", "lots", actor="officer")
    with pytest.raises(PolicyError, match=r"lumen\.devices\.os: at most 40 characters"):
        engine.rectify(ALEX_IDS, "lumen", "devices", "os", "x" * 41, actor="officer")
    assert world.sql("SELECT id, megabytes FROM usage_records ORDER BY id") == before

    changed = engine.rectify(
        ALEX_IDS, "lumen", "usage_records", "megabytes", " 123 ", actor="officer"
    )
    assert changed == 4
    rows = world.sql("SELECT DISTINCT megabytes FROM usage_records WHERE subscription_id = 1")
    assert [r[0] for r in rows] == [123]
