"""Backup and restore on SQLite and PostgreSQL: signed archives, integrity checks, and a
restore that replays erasures so that no erased subject comes back."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import new_postgres_database
from troth.audit.log import read_heads
from troth.config import Settings
from troth.consent.ledger import ConsentChange
from troth.errors import StoreError
from troth.store import backup as bk
from troth.store.migrate import head_revision
from troth.store.tables import audit_entries, subject_keys
from troth.web.services import Services


def someone() -> str:
    return "acct:" + secrets.token_hex(8)


def make_settings(url: str, base: Path) -> Settings:
    return Settings(
        database_url=url,
        keys_dir=base / "keys",
        audit_heads=base / "audit" / "heads.jsonl",
        erasures=base / "audit" / "erasures.jsonl",
    )


@pytest.fixture
def fresh_url(db_url, tmp_path, request):
    """Another empty database on the same engine as ``db_url``."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'restored.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


def other_engine_url(db_url, tmp_path, request):
    if db_url.startswith("sqlite"):
        return new_postgres_database(request.getfixturevalue("postgres_server"))
    return f"sqlite:///{tmp_path / 'other.db'}"


class Fixture:
    """A database with consents and vault values, and a backup of it."""

    def __init__(self, policy, url, base: Path):
        self.policy = policy
        self.base = base
        self.settings = make_settings(url, base)
        self.services = Services.open(policy, self.settings)
        self.kept, self.late, self.early, self.back = (someone() for _ in range(4))
        for s in (self.kept, self.late, self.early, self.back):
            self.services.ledger.record(
                ConsentChange(s, {"analytics": "given"}, "api", "en", "1.1.0")
            )
            self.services.vault.put(
                s, "bandwidth_usage", f"{s} used 5 GB", purpose="provide_service"
            )
        self.services.vault.erase(self.early, actor="test")  # erased before the backup
        self.services.vault.erase(self.back, actor="test")  # ... and came back before it
        self.services.vault.put(self.back, "bandwidth_usage", "new 1 GB", purpose="provide_service")
        self.archive = base / "troth.backup"
        self.info = bk.backup(self.settings, self.archive)

    def hash(self, subject: str) -> str:
        return self.services.vault.hash(subject)

    def close(self) -> None:
        self.services.engine.dispose()


@pytest.fixture
def world(seed, db_url, tmp_path):
    w = Fixture(seed.policy, db_url, tmp_path)
    yield w
    w.close()


def read_value(services: Services, subject: str) -> str | None:
    return services.vault.get(subject, ["bandwidth_usage"], purpose="provide_service")[
        "bandwidth_usage"
    ]


def test_archive_is_signed_and_holds_no_keys(world):
    info = world.info
    assert info.engine == world.services.engine.dialect.name
    assert info.revision == head_revision()
    assert info.signature_checked
    with tarfile.open(world.archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert names == ["manifest.json", "manifest.sig", info.dump_name]
    assert manifest["keys_included"] is False
    assert "separately" in manifest["keys_note"]
    assert manifest["audit"]["size"] == info.audit_size > 0
    assert manifest["dump"]["sha256"] == info.dump_sha256
    assert (world.archive.stat().st_mode & 0o777) == 0o600
    raw = world.archive.read_bytes()
    for secret in (world.base / "keys").iterdir():  # no key file's bytes are in the archive
        body = secret.read_bytes().strip()
        assert body not in raw, secret.name
    public = bk.backup_public_key(world.settings)
    assert bk.verify_backup(world.archive, public).signature_checked
    with pytest.raises(StoreError, match="already exists"):
        bk.backup(world.settings, world.archive)


def test_restore_brings_data_back_and_keeps_erased_subjects_erased(world, fresh_url):
    world.services.vault.erase(world.late, actor="test")  # erased AFTER the backup
    late_hash = world.hash(world.late)
    world.services.vault.put(
        world.kept, "service_time", "after the backup", purpose="provide_service"
    )
    world.close()

    target = make_settings(fresh_url, world.base)
    report = bk.restore(target, world.archive, force=False)

    assert report.engine == world.info.engine
    assert report.erasures.listed == 3  # early, back, late
    assert report.erasures.erased == 1  # only 'late' was still in the backup
    assert report.erasures.values == 1
    assert report.erasures.keys == 1
    assert report.erasures.returned == 1  # 'back' returned before the backup: kept
    assert report.audit_restored == world.info.audit_size
    assert report.audit_lost > 0  # the erasure and write after the backup
    assert report.heads_kept is not None
    assert report.heads_kept.exists()
    assert report.audit_problem == ""
    text = "\n".join(report.lines())
    assert "rolled back" in text
    assert str(report.heads_kept) in text

    restored = Services.open(world.policy, target)
    try:
        # (read the keys first: an audited vault read of an erased subject mints a new key)
        with restored.engine.connect() as conn:
            keys = set(conn.execute(select(subject_keys.c.subject_hash)).scalars())
        assert late_hash not in keys
        assert world.hash(world.early) not in keys
        assert {world.hash(world.kept), world.hash(world.back)} <= keys
        assert read_value(restored, world.kept) == f"{world.kept} used 5 GB"
        assert restored.vault.get(world.kept, ["service_time"], purpose="provide_service") == {
            "service_time": None  # written after the backup: not in it
        }
        assert read_value(restored, world.late) is None
        assert read_value(restored, world.early) is None
        assert read_value(restored, world.back) == "new 1 GB"
        with restored.engine.connect() as conn:
            actions = list(conn.execute(select(audit_entries.c.action)).scalars())
        # consent records are left alone
        assert restored.ledger.effective(world.late).categories["analytics"].allowed
        assert restored.ledger.effective(world.kept).categories["analytics"].allowed
        # the log records the restore, and verifies against the new heads file
        assert actions[report.audit_restored : report.audit_restored + 2] == [
            "backup.restored",
            "erasure.replayed",
        ]
        assert restored.audit.verify(restored.engine).ok
        old = read_heads(report.heads_kept, restored.audit.public)
        assert max(h.size for h in old) == report.audit_signed_before
    finally:
        restored.engine.dispose()


def test_restore_refuses_a_non_empty_target_without_force(world):
    world.services.vault.erase(world.late, actor="test")
    world.close()
    with pytest.raises(StoreError, match="already holds data; pass --force"):
        bk.restore(world.settings, world.archive, force=False)
    report = bk.restore(world.settings, world.archive, force=True)
    assert report.erasures.erased == 1
    again = Services.open(world.policy, world.settings)
    try:
        assert read_value(again, world.late) is None
        assert read_value(again, world.kept) == f"{world.kept} used 5 GB"
        assert again.audit.verify(again.engine).ok
    finally:
        again.engine.dispose()


def test_restore_of_the_latest_backup_loses_nothing(world, fresh_url):
    world.close()
    report = bk.restore(make_settings(fresh_url, world.base), world.archive)
    assert report.audit_lost == 0
    assert report.heads_kept is None  # the old heads still describe the restored log
    assert report.erasures.erased == 0


def test_sqlite_restore_refuses_a_database_in_use(seed, tmp_path):
    w = Fixture(seed.policy, f"sqlite:///{tmp_path / 'troth.db'}", tmp_path)
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            bk.restore(w.settings, w.archive, force=True)
    finally:
        w.close()
    assert not list(tmp_path.glob(".troth.db.restore-*"))


def damage(archive: Path, how: str) -> None:
    if how == "truncated":
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) * 2 // 3])
        return
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("database."))
        offset = member.offset_data + member.size // 2
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0x01
    archive.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["tampered", "truncated"])
def test_damaged_archives_are_refused_and_change_nothing(world, fresh_url, how):
    world.close()
    damage(world.archive, how)
    with pytest.raises(StoreError) as refused:
        bk.verify_backup(world.archive)
    message = str(refused.value)
    assert str(world.archive) in message
    assert "\n" not in message
    assert ("truncated" if how == "truncated" else "SHA-256") in message

    heads = world.settings.audit_heads.read_bytes()
    target = make_settings(fresh_url, world.base)
    with pytest.raises(StoreError, match=str(world.archive)):
        bk.restore(target, world.archive, force=True)
    assert world.settings.audit_heads.read_bytes() == heads
    if fresh_url.startswith("sqlite"):
        assert not (world.base / "restored.db").exists()
        assert not list(world.base.glob(".restored.db.restore-*"))
    else:
        from sqlalchemy import create_engine, inspect

        engine = create_engine(fresh_url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_a_forged_manifest_is_refused(world, fresh_url):
    """Recomputing the dump's hash is not enough: the manifest is signed."""
    world.close()
    with tarfile.open(world.archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members["manifest.json"])
    manifest["taken_at"] = "2000-01-01T00:00:00.000000Z"
    forged = world.base / "forged.backup"
    with tarfile.open(forged, "w") as tar:
        for name, body in members.items():
            if name == "manifest.json":
                body = json.dumps(manifest).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    assert bk.verify_backup(forged).taken_at.startswith("2000")  # hashes alone still match
    with pytest.raises(StoreError, match="signature does not verify"):
        bk.restore(make_settings(fresh_url, world.base), forged)


def test_an_archive_of_the_other_engine_is_refused(world, tmp_path, request, db_url):
    world.close()
    other = other_engine_url(db_url, tmp_path, request)
    with pytest.raises(StoreError, match="backup cannot be restored into a"):
        bk.restore(make_settings(other, world.base), world.archive, force=True)


def test_a_bad_erasures_line_refuses_the_restore(seed, tmp_path):
    w = Fixture(seed.policy, f"sqlite:///{tmp_path / 'troth.db'}", tmp_path)
    w.close()
    with w.settings.erasures.open("a") as fh:
        fh.write('{"subject_hash": "nope"}\n')
    target = make_settings(f"sqlite:///{tmp_path / 'restored.db'}", tmp_path)
    with pytest.raises(StoreError, match=r"erasures.jsonl:3: not an erasure record"):
        bk.restore(target, w.archive)
    assert not (tmp_path / "restored.db").exists()


def test_restore_needs_the_backup_key(seed, tmp_path):
    w = Fixture(seed.policy, f"sqlite:///{tmp_path / 'troth.db'}", tmp_path)
    w.close()
    elsewhere = Settings(
        database_url=f"sqlite:///{tmp_path / 'restored.db'}",
        keys_dir=tmp_path / "other-keys",
        audit_heads=tmp_path / "other" / "heads.jsonl",
        erasures=tmp_path / "other" / "erasures.jsonl",
    )
    with pytest.raises(StoreError, match="restore troth's keys directory first"):
        bk.restore(elsewhere, w.archive)


def test_backup_does_not_create_a_missing_sqlite_database(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path)
    with pytest.raises(StoreError, match="no such database file"):
        bk.backup(settings, tmp_path / "x.backup")
    assert not (tmp_path / "absent.db").exists()
    assert not (tmp_path / "x.backup").exists()


def test_postgres_parameters_go_to_the_environment_not_the_command_line():
    url = bk.make_url("postgresql+psycopg://alice:s3cr%40t@db.example:6543/troth?sslmode=require")
    env = bk._pg_env(url)
    assert env["PGPASSWORD"] == "s3cr@t"
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"]) == ("db.example", "6543", "alice")
    assert (env["PGDATABASE"], env["PGSSLMODE"]) == ("troth", "require")
    assert "s3cr" not in bk._shown(url)


def test_an_archive_from_another_timeline_is_refused(seed, tmp_path):
    """A head signed for the archive's exact audit size with another root: refused up front."""
    w = Fixture(seed.policy, f"sqlite:///{tmp_path / 'troth.db'}", tmp_path)
    w.services.vault.put(w.kept, "service_time", "1", purpose="provide_service")
    w.services.vault.put(w.kept, "service_time", "2", purpose="provide_service")
    later = bk.backup(w.settings, tmp_path / "later.backup")
    w.close()
    report = bk.restore(w.settings, w.archive, force=True)  # a new timeline from the first
    assert report.audit_size == later.audit_size  # same size, different entries
    heads = w.settings.audit_heads.read_bytes()
    with pytest.raises(StoreError, match="does not match the head signed for that size"):
        bk.restore(w.settings, later.path, force=True)
    assert w.settings.audit_heads.read_bytes() == heads


def test_postgres_restore_refuses_while_other_sessions_are_connected(seed, tmp_path, request):
    server = request.getfixturevalue("postgres_server")
    w = Fixture(seed.policy, new_postgres_database(server), tmp_path)
    w.close()
    target = new_postgres_database(server)
    from sqlalchemy import create_engine

    other = create_engine(target)
    try:
        with other.connect(), pytest.raises(StoreError, match="other session"):
            bk.restore(make_settings(target, tmp_path), w.archive)
    finally:
        other.dispose()
