"""Dataset annotations: what a bad file says, and where (file:line:col)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rights.conftest import SEED_DATASETS, write_datasets
from troth.errors import PolicyFileError, StoreError
from troth.policy.datasets import expand_url, load_datasets
from troth.policy.model import Policy


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def problems(path: Path, policy: Policy) -> list[str]:
    with pytest.raises(PolicyFileError) as caught:
        load_datasets(path, policy)
    return [str(p) for p in caught.value.problems]


def test_the_example_loads_with_its_model(seed_policy: Policy) -> None:
    datasets = load_datasets(SEED_DATASETS, seed_policy)
    lumen = datasets.store("lumen")
    assert lumen.kind == "sqlite"
    assert datasets.identity_kinds() == ["email", "account_id", "account_ref", "device_id", "phone"]
    devices = lumen.table("devices")
    assert devices is not None
    assert [(r.column, r.to_table, r.to_column) for r in devices.references] == [
        ("account_id", "accounts", "id")
    ]
    invoices = lumen.table("invoices")
    assert invoices is not None
    assert invoices.erasure == "keep"
    email = invoices.field("email")
    assert email is not None
    assert (email.category, email.identity, invoices.strategy(email)) == (
        "contact",
        "email",
        "null",
    )
    assert datasets.store("troth").subjects == ["account_ref"]


@pytest.mark.parametrize(
    ("edit", "marker", "message"),
    [
        (
            lambda t: t["accounts"]["fields"]["email"].update(category="acount"),
            "category: acount",
            "unknown data category 'acount': the policy declares no such category "
            "(did you mean 'account'?)",
        ),
        (
            lambda t: t["devices"]["references"].update(account_id="acounts.id"),
            "account_id: acounts.id",
            "reference to undeclared table 'acounts' in datastore 'lumen' "
            "(did you mean 'accounts'?)",
        ),
        (
            lambda t: t["devices"]["references"].update(account_id="accounts.owner"),
            "account_id: accounts.owner",
            "reference to 'accounts.owner': table 'accounts' declares no column 'owner'",
        ),
        (
            lambda t: t["invoices"].pop("reason"),
            "erasure: keep",
            "erasure 'keep' needs a 'reason'",
        ),
        (
            lambda t: t["prospects"]["fields"]["email"].update(identity="e_mail"),
            "identity: e_mail",
            "unknown identity kind 'e_mail'",
        ),
        (
            lambda t: t["accounts"]["fields"]["name"].update(erasure="keep"),
            "erasure: keep",
            "the rows of 'accounts' are deleted on erasure, so its fields take no strategy",
        ),
    ],
)
def test_a_wrong_annotation_names_its_place(
    tmp_path: Path, seed_policy: Policy, edit: Any, marker: str, message: str
) -> None:
    path = write_datasets(tmp_path, lambda d: edit(d["datastores"][0]["tables"]))
    found = problems(path, seed_policy)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line_of(path, marker)}:"), found
    assert message in found[0]


def test_a_strategy_that_does_not_exist_is_refused(tmp_path: Path, seed_policy: Policy) -> None:
    path = write_datasets(
        tmp_path, lambda d: d["datastores"][0]["tables"]["prospects"].update(erasure="shred")
    )
    [problem] = problems(path, seed_policy)
    assert problem.startswith(f"{path}:{line_of(path, 'erasure: shred')}:")
    assert "'shred' is not one of delete, null, mask, keep" in problem


def test_unknown_keys_get_a_suggestion(tmp_path: Path, seed_policy: Policy) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["datastores"][0]["tables"]["accounts"]["referenses"] = {}

    path = write_datasets(tmp_path, typo)
    [problem] = problems(path, seed_policy)
    assert problem.startswith(f"{path}:{line_of(path, 'referenses:')}:")
    assert "did you mean 'references'?" in problem


def test_credentials_in_the_file_are_refused(tmp_path: Path, seed_policy: Policy) -> None:
    def password(d: dict[str, Any]) -> None:
        d["datastores"][0]["url"] = "postgresql://lumen:hunter2@db.internal/lumen"

    [problem] = problems(write_datasets(tmp_path, password), seed_policy)
    assert "credentials must not be written in this file" in problem

    def from_env(d: dict[str, Any]) -> None:
        d["datastores"][0]["url"] = "postgresql://lumen:${LUMEN_DB_PASSWORD}@db.internal/lumen"

    assert load_datasets(write_datasets(tmp_path, from_env), seed_policy).store("lumen").url

    for query in ("?password=hunter2", "?sslmode=require&PASSWORD=hunter2", "?sslpassword=x"):

        def in_query(d: dict[str, Any], query: str = query) -> None:
            d["datastores"][0]["url"] = f"postgresql://lumen@db.internal/lumen{query}"

        [problem] = problems(write_datasets(tmp_path, in_query), seed_policy)
        assert "credentials must not be written in this file" in problem, query

    def query_from_env(d: dict[str, Any]) -> None:
        d["datastores"][0]["url"] = (
            "postgresql://lumen@db.internal/lumen?password=${LUMEN_DB_PASSWORD}&sslmode=require"
        )

    assert load_datasets(write_datasets(tmp_path, query_from_env), seed_policy)


def test_urls_take_variables_from_the_environment() -> None:
    assert expand_url("${A}/x", {"A": "sqlite://"}) == "sqlite:///x"
    assert expand_url("${B:-sqlite:///lumen.db}", {}) == "sqlite:///lumen.db"
    with pytest.raises(StoreError, match="LUMEN_URL, which is not set"):
        expand_url("${LUMEN_URL}", {})


def test_not_yaml_and_aliases_are_refused_like_a_policy(
    tmp_path: Path, seed_policy: Policy
) -> None:
    broken = tmp_path / "datasets.yaml"
    broken.write_text("troth: 1\nidentities: [email\n")
    [problem] = problems(broken, seed_policy)
    assert problem.startswith(f"{broken}:2:")
    broken.write_text("troth: 1\nidentities: &a [email]\ndatastores: *a\n")
    [problem] = problems(broken, seed_policy)
    assert "anchors" in problem
