"""Backups and restores of troth's database, SQLite or PostgreSQL, that never bring an
erased subject back.

``backup(settings, out)`` writes one tar archive with three members:

``manifest.json``
    format version, engine, troth schema revision (Alembic), ``taken_at`` (UTC), the
    dump's byte size and SHA-256, the audit log's size and Merkle root at that moment
    (from ``audit_state``), and the id of the key that signed it.
``manifest.sig``
    a detached Ed25519 signature of the exact manifest bytes, by the installation's
    backup key (``backup.ed25519.pem`` in ``TROTH_KEYS_DIR``, created on first use).
``database.sqlite3`` / ``database.pgdump``
    SQLite: a copy made with SQLite's online backup API (consistent while the server
    runs). PostgreSQL: ``pg_dump --format=custom`` of an exported snapshot, so the
    manifest's revision and audit state describe exactly the dumped data.

**Keys are never in the archive** (the manifest says so: ``"keys_included": false``).
``TROTH_KEYS_DIR`` (KEK, subject-hash key, signing keys) must be backed up separately and
securely: an archive alone cannot decrypt a vault value, and a keys backup alone holds
no personal data. The archive is written ``0600``; it holds consent records and
(encrypted) vault values, so store it like the database.

``verify_backup(path)`` re-reads the archive: member names, manifest fields, dump size and
SHA-256, and — given the backup public key — the signature. A truncated or altered
archive raises :class:`StoreError` with one line naming the file.

``restore(settings, archive, force=...)`` verifies the archive (the signature must verify
with the backup key in ``TROTH_KEYS_DIR``; restore the keys directory first), refuses an
archive of the other engine, and refuses a target that holds data unless ``force``. Stop
``troth serve`` first: on SQLite a database another process has open is refused (replacing
it under an open connection would corrupt it); on PostgreSQL other sessions are refused
unless ``force``. Then:

1. SQLite: the dump is copied next to the database file, migrated, its erasures replayed
   and the restore recorded, all in that copy, which then atomically replaces the file
   (stale ``-wal``/``-shm`` files removed). PostgreSQL: ``pg_restore --clean --if-exists
   --no-owner --no-acl`` renders the archive to SQL, which ``psql --single-transaction``
   runs after dropping troth's tables (so a newer schema's tables cannot block the
   migration): the data restore is all or nothing. Migration, replay and the audit entry
   follow in a second transaction — if a restore is interrupted between the two, run it
   again before starting the server.
2. Migrations to head (``troth.store.migrate.upgrade``).
3. **Erasures are replayed** from ``settings.erasures`` (kept apart from the database, so
   it survives the restore). Every subject in the file is considered, not only those
   erased after ``taken_at``: that needs no agreement between the clocks of the backup host
   and the servers, and a backup taken a moment before an erasure committed cannot slip
   through. A subject is erased again — vault values deleted and data key shredded, the
   same two deletes as ``Vault.erase_hashed`` — unless their data key in the restored
   database was created *after* their last erasure: then they came back as a new subject
   after being erased, and the data in the backup is that new data. Consent records are
   left as they are. One ``erasure.replayed`` audit entry records the counts.
4. **The audit log and its signed heads.** Restoring an older database rolls the audit log
   back to the size it had at ``taken_at``, while the heads file (apart from the database)
   holds heads for the larger, lost log. Leaving that file as it is would make ``troth
   audit verify`` fail for good: the log grows again from the restored size, and every new
   head would disagree with an old head for the same size. So the restore

   - first checks the restored log against the old heads (every head up to the restored
     size must match: an archive from another installation, or with a rewritten log, is
     refused before anything changes when a head for the archive's exact size exists, and
     otherwise reported);
   - appends a ``backup.restored`` entry recording the archive, the restored size, the
     size the old heads had signed, how many entries were lost, the problem found (if any),
     and the name and SHA-256 of the old heads file;
   - when entries were lost (or the old heads do not match), moves the old heads file aside
     to ``<heads>.before-restore-<UTC time>`` — kept, never deleted — and starts a new
     heads file with the head signed for the restored log plus these entries.

   ``troth audit verify`` then reports the log intact from the restore on; the loss is not
   hidden: it is in the log itself, in the kept file, and in the restore's report. An
   auditor can check the restored prefix against the old heads by pointing
   ``TROTH_AUDIT_HEADS`` at the kept file (expect "truncated" at the restored size).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, delete, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from troth.audit.log import AuditEvent, AuditLog, TreeHead, VerifyReport, read_heads, verify_log
from troth.audit.merkle import Frontier
from troth.config import Settings
from troth.errors import StoreError
from troth.keyring.signing import b64, key_id, unb64
from troth.store.engine import make_engine, writing
from troth.store.migrate import upgrade
from troth.store.secrets import Secrets
from troth.store.tables import audit_state, metadata, subject_keys, vault_values

__all__ = [
    "FORMAT",
    "BackupInfo",
    "ErasureReplay",
    "RestoreReport",
    "backup",
    "backup_public_key",
    "read_erasures",
    "replay_erasures",
    "restore",
    "verify_backup",
]

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
DUMP = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
KEY_NAME = "backup"  # Secrets(keys_dir).signing_key("backup") -> backup.ed25519.pem
ACTOR = "system:restore"
KEYS_NOTE = (
    "troth's keys (TROTH_KEYS_DIR: KEK, subject-hash key, signing keys) are not in this "
    "archive; back them up separately and securely"
)
_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# libpq parameters a SQLAlchemy URL may carry in its query string -> environment variables
_QUERY_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslpassword": "PGSSLPASSWORD",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


# --- what the functions return ---------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    """What an archive's manifest says, after its integrity was checked."""

    path: Path
    engine: str
    revision: str
    taken_at: str
    dump_name: str
    dump_bytes: int
    dump_sha256: str
    audit_size: int
    audit_root: str
    key_id: str
    signature_checked: bool
    manifest: Mapping[str, Any] = field(repr=False)

    def summary(self) -> str:
        signed = (
            f"signature by backup key {self.key_id} verified"
            if self.signature_checked
            else f"signature by key {self.key_id} NOT checked (no backup key here)"
        )
        return (
            f"{self.path}: intact {self.engine} backup taken {self.taken_at}, schema "
            f"{self.revision}, {self.dump_bytes} bytes, {self.audit_size} audit entries; {signed}"
        )


@dataclass(frozen=True)
class ErasureReplay:
    """What replaying the erasures file did to a restored database."""

    listed: int = 0  # distinct subjects in the erasures file
    erased: int = 0  # subjects the restored data still held, erased again
    values: int = 0  # vault values deleted
    keys: int = 0  # data keys shredded
    returned: int = 0  # data key created after the last erasure: a new subject, left alone

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RestoreReport:
    archive: Path
    database: str  # the target URL, password hidden
    engine: str
    taken_at: str
    revision: str  # the schema after the migrations
    erasures: ErasureReplay
    audit_restored: int  # audit log size in the archive
    audit_signed_before: int  # largest size the heads file had signed before the restore
    audit_lost: int  # entries signed before the restore that the restored log no longer has
    audit_size: int  # audit log size after the restore's own entries
    audit_problem: str  # the old heads did not match the restored log (empty when they did)
    heads_kept: Path | None  # where the old heads file was moved, if it was

    def lines(self) -> list[str]:
        """What the CLI prints, one fact per line."""
        e = self.erasures
        out = [
            f"restored {self.archive} ({self.engine}, taken {self.taken_at}) into "
            f"{self.database}; schema at {self.revision}",
            f"erasures replayed: {e.erased} of {_n(e.listed, 'erased subject')} "
            f"{'was' if e.listed == 1 else 'were'} still in the backup and erased again "
            f"({_n(e.values, 'value')} deleted, {_n(e.keys, 'key')} shredded)"
            + (
                f"; {e.returned} had come back after their erasure and kept their new data"
                if e.returned
                else ""
            ),
        ]
        if self.audit_problem:
            out.append(
                "WARNING: the restored audit log does not match the old signed heads: "
                + self.audit_problem
            )
        if self.audit_lost:
            lost = (
                f"entry {self.audit_restored} was"
                if self.audit_lost == 1
                else f"entries {self.audit_restored}..{self.audit_signed_before - 1} were"
            )
            out.append(
                f"the audit log was rolled back from {self.audit_signed_before} to "
                f"{self.audit_restored} entries: {lost} lost with the restore"
            )
        if self.heads_kept is not None:
            out.append(
                f"the old signed heads were kept in {self.heads_kept}; a new heads file starts "
                f"at this restore, recorded as audit entry {self.audit_restored} "
                "(backup.restored): `troth audit verify` checks the restored log against it"
            )
        return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --- small helpers ----------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; troth only ever stores UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _url(database_url: str) -> URL:
    try:
        return make_url(database_url)
    except Exception as exc:
        raise StoreError(f"database URL is not valid: {type(exc).__name__}") from None


def _backend(url: URL) -> str:
    backend = url.get_backend_name()
    if backend not in DUMP:
        raise StoreError(
            f"unsupported database '{backend}': use sqlite:/// or postgresql+psycopg://"
        )
    return backend


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_path(url: URL) -> Path:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise StoreError("backup and restore need an SQLite database file: sqlite:///path/troth.db")
    return Path(database)


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _known_revisions() -> set[str]:
    config = Config(str(resources.files("troth.store") / "alembic.ini"))
    config.set_main_option("script_location", "troth.store:migrations")
    return {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}


def backup_public_key(settings: Settings) -> Ed25519PublicKey | None:
    """The installation's backup public key, or None when ``keys_dir`` has none yet."""
    key = Secrets(settings.keys_dir).existing_signing_key(KEY_NAME)
    return None if key is None else key.public_key()


def _audit_of(size: int, frontier: str) -> tuple[int, str]:
    return int(size), Frontier.from_json(json.loads(frontier)).root().hex()


# --- backup ---------------------------------------------------------------------------


def backup(settings: Settings, out: Path) -> BackupInfo:
    """Write a signed backup archive of ``settings.database_url`` to ``out`` (not overwritten).

    Keys (``settings.keys_dir``) are never included: back them up separately and securely.
    Safe while the server runs. Raises :class:`StoreError`."""
    url = _url(settings.database_url)
    engine = _backend(url)
    if out.exists():
        raise StoreError(f"{out}: already exists; troth does not overwrite a backup")
    if not out.parent.is_dir():
        raise StoreError(f"{out.parent}: no such directory")
    signer = Secrets(settings.keys_dir).signing_key(KEY_NAME)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".troth-backup-") as scratch:
        dump = Path(scratch) / DUMP[engine]
        if engine == "sqlite":
            taken, facts = _dump_sqlite(_sqlite_path(url), dump)
        else:
            taken, facts = _dump_postgres(url, dump)
        size, digest = _sha256_file(dump)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "software": "troth",
            "engine": engine,
            "revision": facts["revision"],
            "taken_at": _iso(taken),
            "dump": {"name": dump.name, "bytes": size, "sha256": digest},
            "audit": {"size": facts["audit_size"], "root": facts["audit_root"]},
            "keys_included": False,
            "keys_note": KEYS_NOTE,
            "key_id": key_id(signer.public_key()),
            **({"postgres": facts["postgres"]} if "postgres" in facts else {}),
        }
        raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        _write_archive(out, raw, b64(signer.sign(raw)).encode() + b"\n", dump, taken)
    return _info(out, manifest, signature_checked=True)


def _read_state(conn: sqlite3.Connection) -> dict[str, Any]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "alembic_version" not in tables:
        raise StoreError("the database has no troth schema (run `troth db upgrade` first)")
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    audit = (0, Frontier().root().hex())
    if "audit_state" in tables:
        row = conn.execute("SELECT size, frontier FROM audit_state WHERE id = 1").fetchone()
        if row is not None:
            audit = _audit_of(row[0], row[1])
    return {
        "revision": revision[0] if revision else None,
        "audit_size": audit[0],
        "audit_root": audit[1],
    }


def _dump_sqlite(source: Path, dump: Path) -> tuple[dt.datetime, dict[str, Any]]:
    if not source.is_file():
        raise StoreError(f"{source}: no such database file")
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: cannot open the database: {exc}") from None
    try:
        dst = sqlite3.connect(dump)
        try:
            taken = _now()  # before the copy's read transaction starts
            src.backup(dst)  # one step: one consistent snapshot, writers are not blocked
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            check = dst.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise StoreError(f"{source}: the copy fails SQLite's integrity check: {check}")
            facts = _read_state(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: cannot back up the database: {exc}") from None
    finally:
        src.close()
    if facts["revision"] is None:
        raise StoreError(f"{source}: the database has no troth schema revision")
    return taken, facts


def _pg_env(url: URL) -> dict[str, str]:
    """libpq settings for pg_dump/pg_restore/psql: the URL's parameters as PG* variables
    (never on the command line, where other users could read the password)."""
    if not url.database:
        raise StoreError("the PostgreSQL URL names no database: postgresql+psycopg://.../NAME")
    env = dict(os.environ)
    env.setdefault("PGAPPNAME", "troth-backup")
    if url.host:
        env["PGHOST"] = url.host
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    env["PGDATABASE"] = url.database
    for key, variable in _QUERY_ENV.items():
        value = url.query.get(key)
        if value is not None:
            env[variable] = value if isinstance(value, str) else ",".join(value)
    return env


def _tool_major(path: str) -> int | None:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", done.stdout)
    return int(found.group(1)) if found else None


def _pg_tool(name: str, at_least: int) -> str:
    """The Debian binary ``/usr/lib/postgresql/N/bin/name`` with the newest N >= ``at_least``,
    else ``name`` on PATH if it is new enough."""
    debian: list[tuple[int, str]] = []
    for path in glob.glob(f"/usr/lib/postgresql/*/bin/{name}"):
        version = Path(path).parts[-3]
        if version.isdigit() and os.access(path, os.X_OK):
            debian.append((int(version), path))
    if debian and max(debian)[0] >= at_least:
        return max(debian)[1]
    on_path = shutil.which(name)
    if on_path is not None:
        major = _tool_major(on_path)
        if major is not None and major >= at_least:
            return on_path
    raise StoreError(
        f"{name} for PostgreSQL {at_least} or newer is not installed "
        f"(Debian: apt-get install postgresql-client-{at_least})"
    )


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    except OSError as exc:
        raise StoreError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        lines = [x.strip() for x in done.stderr.splitlines() if x.strip()]
        detail = next((x for x in lines if "error" in x.lower()), lines[-1] if lines else "")
        raise StoreError(f"{what} failed ({Path(cmd[0]).name} exit {done.returncode}): {detail}")


def _pg_engine(url: URL) -> Engine:
    return make_engine(url.render_as_string(hide_password=False), pool_size=1)


def _dump_postgres(url: URL, dump: Path) -> tuple[dt.datetime, dict[str, Any]]:
    env = _pg_env(url)
    engine = _pg_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.execute(text("SET TRANSACTION READ ONLY"))
                taken = _now()  # before the snapshot
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                facts = _pg_state(conn)
                server = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
                pg_dump = _pg_tool("pg_dump", server)
                major = _tool_major(pg_dump) or server
                # the exporting transaction stays open while pg_dump reads its snapshot
                _run(
                    [pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}",
                     f"--file={dump}"],
                    env, "pg_dump",
                )  # fmt: skip
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot back up {_shown(url)}: {type(getattr(exc, 'orig', exc)).__name__}"
        ) from None
    finally:
        engine.dispose()
    facts["postgres"] = {"server_major": server, "pg_dump_major": major}
    return taken, facts


def _pg_state(conn: Connection) -> dict[str, Any]:
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        raise StoreError("the database has no troth schema (run `troth db upgrade` first)")
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision is None:
        raise StoreError("the database has no troth schema revision")
    audit = (0, Frontier().root().hex())
    if "audit_state" in tables:
        row = conn.execute(select(audit_state.c.size, audit_state.c.frontier)).first()
        if row is not None:
            audit = _audit_of(row.size, row.frontier)
    return {"revision": revision, "audit_size": audit[0], "audit_root": audit[1]}


def _member(name: str, size: int, mtime: dt.datetime) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(mtime.timestamp())
    return info


def _write_archive(out: Path, manifest: bytes, sig: bytes, dump: Path, taken: dt.datetime) -> None:
    partial = out.with_name(f".{out.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_member(MANIFEST, len(manifest), taken), BytesIO(manifest))
                tar.addfile(_member(SIGNATURE, len(sig), taken), BytesIO(sig))
                with dump.open("rb") as data:
                    tar.addfile(_member(dump.name, dump.stat().st_size, taken), data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)


# --- verify ---------------------------------------------------------------------------


@contextlib.contextmanager
def _archive(path: Path) -> Iterator[tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]]:
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
    except (tarfile.TarError, EOFError):
        raise StoreError(f"{path}: not a troth backup archive (truncated or altered)") from None
    try:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError):
            raise StoreError(f"{path}: the archive is truncated or altered") from None
        by_name: dict[str, tarfile.TarInfo] = {}
        for m in members:
            if not m.isfile() or m.name in by_name:
                raise StoreError(f"{path}: unexpected member '{m.name}': not a troth backup")
            by_name[m.name] = m
        yield tar, by_name
    finally:
        tar.close()


def _read_member(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise StoreError(f"{path}: {member.name} is implausibly large: not a troth backup")
    fh = tar.extractfile(member)
    assert fh is not None
    try:
        data = fh.read()
    except (tarfile.TarError, EOFError, OSError):
        raise StoreError(
            f"{path}: the archive is truncated ({member.name} is incomplete)"
        ) from None
    if len(data) != member.size:
        raise StoreError(f"{path}: the archive is truncated ({member.name} is incomplete)")
    return data


def _copy_checked(
    path: Path, fh: IO[bytes], expected_bytes: int, expected_sha: str, sink: IO[bytes] | None
) -> None:
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
    except (tarfile.TarError, EOFError, OSError):
        raise StoreError(
            f"{path}: the archive is truncated (the database dump is incomplete)"
        ) from None
    if size != expected_bytes:
        raise StoreError(
            f"{path}: the archive is truncated (the dump has {size} of {expected_bytes} bytes)"
        )
    if digest.hexdigest() != expected_sha:
        raise StoreError(
            f"{path}: the database dump does not match its SHA-256 in the manifest: "
            "the archive was altered or damaged"
        )


def _manifest(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StoreError(
            f"{path}: the manifest is not valid JSON: the archive was altered"
        ) from None

    def bad(what: str) -> StoreError:
        return StoreError(f"{path}: the manifest has no valid {what}: not a troth backup")

    if not isinstance(data, dict) or data.get("software") != "troth":
        raise bad("'software'")
    if data.get("format") != FORMAT:
        raise StoreError(
            f"{path}: backup format {data.get('format')!r} is not supported by this troth "
            f"(it reads format {FORMAT})"
        )
    if data.get("engine") not in DUMP:
        raise bad("'engine'")
    if not isinstance(data.get("revision"), str):
        raise bad("'revision'")
    if _parse_time(data.get("taken_at")) is None:
        raise bad("'taken_at'")
    dump, audit = data.get("dump"), data.get("audit")
    if not (
        isinstance(dump, dict)
        and dump.get("name") == DUMP[data["engine"]]
        and isinstance(dump.get("bytes"), int)
        and isinstance(dump.get("sha256"), str)
        and _HEX64.match(dump["sha256"])
    ):
        raise bad("'dump'")
    if not (
        isinstance(audit, dict)
        and isinstance(audit.get("size"), int)
        and isinstance(audit.get("root"), str)
    ):
        raise bad("'audit'")
    if not isinstance(data.get("key_id"), str):
        raise bad("'key_id'")
    return data


def _info(path: Path, manifest: Mapping[str, Any], *, signature_checked: bool) -> BackupInfo:
    return BackupInfo(
        path=path,
        engine=manifest["engine"],
        revision=manifest["revision"],
        taken_at=manifest["taken_at"],
        dump_name=manifest["dump"]["name"],
        dump_bytes=manifest["dump"]["bytes"],
        dump_sha256=manifest["dump"]["sha256"],
        audit_size=manifest["audit"]["size"],
        audit_root=manifest["audit"]["root"],
        key_id=manifest["key_id"],
        signature_checked=signature_checked,
        manifest=manifest,
    )


def _check(path: Path, public_key: Ed25519PublicKey | None, extract_to: Path | None) -> BackupInfo:
    with _archive(path) as (tar, members):
        if MANIFEST not in members or SIGNATURE not in members:
            raise StoreError(f"{path}: no manifest: not a troth backup (or truncated)")
        raw = _read_member(path, tar, members[MANIFEST], 1 << 20)
        sig = _read_member(path, tar, members[SIGNATURE], 4096)
        manifest = _manifest(path, raw)
        if public_key is not None:
            expected = key_id(public_key)
            if manifest["key_id"] != expected:
                raise StoreError(
                    f"{path}: signed by backup key {manifest['key_id']}, not by this "
                    f"installation's backup key {expected}"
                )
            try:
                public_key.verify(unb64(sig.decode().strip()), raw)
            except (InvalidSignature, ValueError, UnicodeDecodeError):
                raise StoreError(
                    f"{path}: the manifest's signature does not verify: the archive was altered"
                ) from None
        name = manifest["dump"]["name"]
        extra = set(members) - {MANIFEST, SIGNATURE, name}
        if extra:
            raise StoreError(f"{path}: unexpected member '{sorted(extra)[0]}': not a troth backup")
        if name not in members:
            raise StoreError(f"{path}: the archive is truncated (no {name})")
        if members[name].size != manifest["dump"]["bytes"]:
            raise StoreError(
                f"{path}: the dump has {members[name].size} bytes, the manifest says "
                f"{manifest['dump']['bytes']}: the archive was altered"
            )
        fh = tar.extractfile(members[name])
        assert fh is not None
        if extract_to is None:
            _copy_checked(path, fh, manifest["dump"]["bytes"], manifest["dump"]["sha256"], None)
        else:
            with extract_to.open("wb") as sink:
                _copy_checked(path, fh, manifest["dump"]["bytes"], manifest["dump"]["sha256"], sink)
                sink.flush()
                os.fsync(sink.fileno())
    return _info(path, manifest, signature_checked=public_key is not None)


def verify_backup(path: Path, public_key: Ed25519PublicKey | None = None) -> BackupInfo:
    """Check an archive's structure, manifest, dump size and SHA-256, and — when
    ``public_key`` is given (see :func:`backup_public_key`) — its signature.
    A truncated or altered archive raises :class:`StoreError` naming the file."""
    return _check(path, public_key, None)


# --- erasures -------------------------------------------------------------------------


def read_erasures(path: Path) -> dict[str, dt.datetime]:
    """Each erased subject hash and the time of its last erasure. A missing file is none;
    a line that cannot be read is a :class:`StoreError` naming ``file:line`` (an erasure
    that cannot be replayed must not be skipped silently)."""
    erased: dict[str, dt.datetime] = {}
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return erased
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the erasures file: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                data = None
            subject = data.get("subject_hash") if isinstance(data, dict) else None
            at = _parse_time(data.get("at")) if isinstance(data, dict) else None
            if not isinstance(subject, str) or not _HEX64.match(subject) or at is None:
                raise StoreError(
                    f"{path}:{number}: not an erasure record (expected "
                    '{"subject_hash": <64 hex>, "at": <ISO time>}); repair the line, the '
                    "restore must replay every erasure"
                )
            if subject not in erased or at > erased[subject]:
                erased[subject] = at
    return erased


def replay_erasures(
    conn: Connection, erasures: Path | Mapping[str, dt.datetime], batch: int = 500
) -> ErasureReplay:
    """Erase again, in the caller's transaction, every subject of the erasures file that the
    (restored) database still holds: delete their vault values and shred their data key —
    unless that key was created after their last erasure (they came back). Consent records
    are not touched."""
    erased = read_erasures(erasures) if isinstance(erasures, Path) else dict(erasures)
    subjects = sorted(erased)
    totals = {"erased": 0, "values": 0, "keys": 0, "returned": 0}
    for start in range(0, len(subjects), batch):
        chunk = subjects[start : start + batch]
        rows = conn.execute(
            select(subject_keys.c.subject_hash, subject_keys.c.created_at).where(
                subject_keys.c.subject_hash.in_(chunk)
            )
        ).all()
        created = {r.subject_hash: r.created_at for r in rows}
        returned = {h for h, at in created.items() if _utc(at) > erased[h]}
        targets = [h for h in chunk if h not in returned]
        if not targets:
            totals["returned"] += len(returned)
            continue
        holding = set(created) - returned
        holding |= set(
            conn.execute(
                select(vault_values.c.subject_hash)
                .where(vault_values.c.subject_hash.in_(targets))
                .distinct()
            ).scalars()
        )
        values = conn.execute(
            delete(vault_values).where(vault_values.c.subject_hash.in_(targets))
        ).rowcount
        keys = conn.execute(
            delete(subject_keys).where(subject_keys.c.subject_hash.in_(targets))
        ).rowcount
        totals["erased"] += len(holding)
        totals["values"] += int(values)
        totals["keys"] += int(keys)
        totals["returned"] += len(returned)
    return ErasureReplay(listed=len(subjects), **totals)


# --- restore --------------------------------------------------------------------------


@dataclass
class _Settled:
    revision: str
    replay: ErasureReplay
    head: TreeHead | None
    audit_size: int
    restored: int
    signed_before: int
    lost: int
    problem: str
    rotate: bool


_Settle = Callable[[Engine], _Settled]


def _classify(report: VerifyReport, signed_before: int) -> tuple[int, str, bool]:
    """(entries lost, problem, whether the old heads file must be moved aside)."""
    if report.ok:
        return 0, "", False
    if report.size > report.signed_size and report.first_bad_index == report.signed_size:
        return 0, "", False  # entries no head covered yet: the restore's head covers them
    if report.problem.startswith("the log was truncated"):
        return signed_before - report.size, "", True
    return max(signed_before - report.size, 0), report.problem, True


def _settle(
    engine: Engine,
    info: BackupInfo,
    audit: AuditLog,
    public: Ed25519PublicKey,
    heads_path: Path,
    signed_before: int,
    erased: Mapping[str, dt.datetime],
    kept: Path,
) -> _Settled:
    """Migrate, check the log against the old heads, replay erasures, record the restore."""
    revision = upgrade(engine)
    with engine.connect() as conn:
        restored = int(conn.execute(select(audit_state.c.size)).scalar_one())
    lost, problem, rotate = _classify(verify_log(engine, heads_path, public), signed_before)
    heads_sha = _sha256_file(heads_path)[1] if rotate and heads_path.exists() else None
    with writing(engine).begin() as conn:
        replay = replay_erasures(conn, erased)
        audit.append(
            conn,
            [
                AuditEvent(
                    "backup.restored",
                    ACTOR,
                    None,
                    {
                        "engine": info.engine,
                        "taken_at": info.taken_at,
                        "dump_sha256": info.dump_sha256,
                        "revision": info.revision,
                        "restored_size": restored,
                        "signed_before": signed_before,
                        "lost": lost,
                        "problem": problem,
                        "heads_kept": kept.name if heads_sha else None,
                        "heads_kept_sha256": heads_sha,
                    },
                ),
                AuditEvent(
                    "erasure.replayed", ACTOR, None, {"count": replay.erased, **replay.as_dict()}
                ),
            ],
        )
        head = audit.take_head(conn)
    return _Settled(
        revision,
        replay,
        head,
        head.size if head else restored,
        restored,
        signed_before,
        lost,
        problem,
        rotate and heads_sha is not None,
    )


def _publish(audit: AuditLog, heads_path: Path, kept: Path, settled: _Settled) -> Path | None:
    moved = None
    if settled.rotate:
        os.replace(heads_path, kept)
        _fsync_dir(heads_path.parent)
        moved = kept
    audit.publish(settled.head)
    return moved


def _sqlite_in_use(path: Path) -> None:
    """Refuse when another connection has the file open; leaves it in rollback-journal
    mode with its WAL checkpointed (so no -wal file survives to be applied to the new file)."""
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(path, timeout=0)
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(
                f"{path}: the database is in use by another process: stop `troth serve` "
                "(and anything else using it) before restoring"
            ) from None
        return  # not a database we can open: it is replaced as it is (only with --force)
    except sqlite3.DatabaseError:
        return
    if mode is None or str(mode[0]).lower() != "delete":
        raise StoreError(f"{path}: the database is in use by another process: stop it first")


def _sqlite_holds_data(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            for name in sorted(tables & set(metadata.tables)):
                if name == "audit_state":
                    if conn.execute("SELECT 1 FROM audit_state WHERE size > 0").fetchone():
                        return True
                elif conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone():
                    return True
            return bool(tables - set(metadata.tables) - {"alembic_version"})
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True  # unreadable: something is there


def _pg_holds_data(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    for name in sorted(tables & set(metadata.tables)):
        if name == "audit_state":
            if conn.execute(text("SELECT 1 FROM audit_state WHERE size > 0")).first():
                return True
        elif conn.execute(text(f'SELECT 1 FROM "{name}" LIMIT 1')).first():
            return True
    return bool(tables - set(metadata.tables) - {"alembic_version"})


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _restore_sqlite(
    url: URL, archive: Path, info: BackupInfo, force: bool, settle: _Settle
) -> _Settled:
    target = _sqlite_path(url)
    if not target.parent.is_dir():
        raise StoreError(f"{target.parent}: no such directory")
    if not force and _sqlite_holds_data(target):
        raise StoreError(
            f"{target}: the database already holds data; pass --force to replace it with the backup"
        )
    _sqlite_in_use(target)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.restore-")
    os.close(fd)
    scratch = Path(name).resolve()
    sidecars = [Path(f"{scratch}{s}") for s in ("-wal", "-shm", "-journal")]
    try:
        _check(archive, None, scratch)  # the hash is checked again on the bytes written
        engine = make_engine(f"sqlite:///{scratch}", pool_size=1)
        try:
            settled: _Settled = settle(engine)
        finally:
            engine.dispose()
        conn = sqlite3.connect(scratch)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()
        _remove(*sidecars)
        if target.exists():
            os.chmod(scratch, target.stat().st_mode & 0o777)
        _sqlite_in_use(target)
        _remove(*(Path(f"{target}{s}") for s in ("-wal", "-shm")))
        os.replace(scratch, target)
        _fsync_dir(target.parent)
    except BaseException:
        _remove(scratch, *sidecars)
        raise
    return settled


def _restore_postgres(
    url: URL, archive: Path, info: BackupInfo, force: bool, settle: _Settle
) -> _Settled:
    env = _pg_env(url)
    engine = _pg_engine(url)
    try:
        with engine.connect() as conn:
            if not force and _pg_holds_data(conn):
                raise StoreError(
                    f"{_shown(url)}: the database already holds data; pass --force to replace "
                    "it with the backup"
                )
            others = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            if others and not force:
                raise StoreError(
                    f"{_shown(url)}: {others} other session(s) are connected: stop `troth serve` "
                    "first, or pass --force"
                )
        needed = int(info.manifest.get("postgres", {}).get("pg_dump_major", 0))
        pg_restore = _pg_tool("pg_restore", needed)
        psql = str(Path(pg_restore).with_name("psql"))
        if not os.access(psql, os.X_OK):
            psql = _pg_tool("psql", needed)
        with tempfile.TemporaryDirectory(prefix="troth-restore-") as scratch:
            dump, script = Path(scratch) / info.dump_name, Path(scratch) / "restore.sql"
            _check(archive, None, dump)
            _run(
                [pg_restore, "--clean", "--if-exists", "--no-owner", "--no-acl",
                 f"--file={script}", str(dump)],
                env, "pg_restore",
            )  # fmt: skip
            drops = "".join(
                f'DROP TABLE IF EXISTS "{t}" CASCADE;\n'
                for t in ["alembic_version", *(t.name for t in reversed(metadata.sorted_tables))]
            )
            # one transaction: troth's tables dropped, the archive restored — or nothing
            _run(
                [psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
                 "--single-transaction", "-c", "SET client_min_messages = warning",
                 "-c", drops, "-f", str(script)],
                env, "restoring the PostgreSQL dump",
            )  # fmt: skip
        settled: _Settled = settle(engine)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot restore into {_shown(url)}: {type(getattr(exc, 'orig', exc)).__name__}"
        ) from None
    finally:
        engine.dispose()
    return settled


def restore(settings: Settings, archive: Path, *, force: bool = False) -> RestoreReport:
    """Restore ``archive`` into ``settings.database_url``, migrate it, and replay the
    erasures recorded in ``settings.erasures``; see the module docstring for what happens
    to the audit log's signed heads. Stop the server first. Raises :class:`StoreError`
    (:class:`~troth.errors.AuditError` when the heads file cannot be read)."""
    from troth.keyring.open import open_keyring

    secrets = Secrets(settings.keys_dir)
    backup_key = secrets.existing_signing_key(KEY_NAME)
    if backup_key is None:
        raise StoreError(
            f"{archive}: no backup key ({KEY_NAME}.ed25519.pem) in {settings.keys_dir} to check "
            "the archive's signature: restore troth's keys directory first"
        )
    info = verify_backup(archive, backup_key.public_key())
    url = _url(settings.database_url)
    target = _backend(url)
    if info.engine != target:
        raise StoreError(
            f"{archive}: a {info.engine} backup cannot be restored into a {target} database "
            f"({_shown(url)})"
        )
    if info.revision not in _known_revisions():
        raise StoreError(
            f"{archive}: schema revision {info.revision} is unknown to this troth "
            "(the backup was made by a newer version): upgrade troth first"
        )
    erased = read_erasures(settings.erasures)
    audit_key: Ed25519PrivateKey = secrets.signing_key("audit")
    public = audit_key.public_key()
    heads_path = settings.audit_heads
    heads = read_heads(heads_path, public)
    signed_before = max((h.size for h in heads), default=0)
    for h in heads:
        if h.size == info.audit_size and h.root != info.audit_root:
            raise StoreError(
                f"{archive}: its audit log (size {h.size}) does not match the head signed for "
                f"that size in {heads_path}: the backup is from another installation, or its "
                "log was altered"
            )
    audit = AuditLog(open_keyring(settings), audit_key, heads_path)
    stamp = _now().strftime("%Y%m%dT%H%M%S%fZ")
    kept = heads_path.with_name(f"{heads_path.name}.before-restore-{stamp}")

    def settle(engine: Engine) -> _Settled:
        return _settle(engine, info, audit, public, heads_path, signed_before, erased, kept)

    try:
        if target == "sqlite":
            settled = _restore_sqlite(url, archive, info, force, settle)
        else:
            settled = _restore_postgres(url, archive, info, force, settle)
    except CommandError as exc:
        raise StoreError(f"{archive}: migrating the restored database failed: {exc}") from None
    moved = _publish(audit, heads_path, kept, settled)
    return RestoreReport(
        archive=archive,
        database=_shown(url),
        engine=target,
        taken_at=info.taken_at,
        revision=settled.revision,
        erasures=settled.replay,
        audit_restored=settled.restored,
        audit_signed_before=settled.signed_before,
        audit_lost=settled.lost,
        audit_size=settled.audit_size,
        audit_problem=settled.problem,
        heads_kept=moved,
    )
