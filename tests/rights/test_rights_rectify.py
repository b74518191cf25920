"""Rectification: declared fields of the person's rows change; identities, keys, links and
undeclared fields are refused with a clear error — on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest

from rights.conftest import ALEX, World
from troth.errors import PolicyError, TrothError

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
