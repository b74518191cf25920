"""The audit log: every consent change, purpose decision, disclosure, erasure and admin
action, in an append-only RFC 6962 Merkle tree.

Entries are appended inside the caller's own transaction, so an action and its entry
commit together. Each commit then adds a *signed tree head* (size, root, Ed25519
signature) to a file kept apart from the database: rewriting, removing, reordering or
truncating rows is detected by :meth:`AuditLog.verify` even by someone who can write to
the database, because they cannot sign a matching head.

Subjects appear only as ``subject_ref``: a keyed hash under the subject's own data key
(see :mod:`troth.keyring.keys`), which erasure destroys.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from troth.audit.merkle import Frontier, inclusion_path, leaf_hash, verify_inclusion
from troth.errors import AuditError
from troth.keyring.keys import Keyring
from troth.keyring.signing import b64, canonical, key_id, unb64
from troth.store.engine import writing
from troth.store.tables import audit_entries, audit_state

__all__ = ["AuditEvent", "AuditLog", "TreeHead", "VerifyReport", "entry_bytes"]

_PENDING = "troth_audit_pending"
_STATE = select(audit_state.c.size, audit_state.c.frontier).where(audit_state.c.id == 1)
_INSERT = insert(audit_entries)
_UPDATE_STATE = (
    update(audit_state)
    .where(audit_state.c.id == 1)
    .values(size=bindparam("size"), frontier=bindparam("frontier"))
)


@dataclass
class _Pending:
    frontier: Frontier
    at: str
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEvent:
    action: str
    actor: str
    subject_hash: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: str
    timestamp: str
    key_id: str
    signature: str
    recovered: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
        }

    def as_dict(self) -> dict[str, Any]:
        out = {**self.payload(), "signature": self.signature}
        if self.recovered:
            out["recovered"] = True
        return out


@dataclass
class VerifyReport:
    ok: bool
    size: int
    signed_size: int
    heads: int
    first_bad_index: int | None = None
    problem: str = ""
    recovered_heads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def entry_bytes(
    seq: int, at: str, actor: str, action: str, subject_ref: str | None, details: str
) -> bytes:
    """The exact bytes a leaf hashes: one field per line; details is canonical JSON."""
    return f"{seq}\n{at}\n{actor}\n{action}\n{subject_ref or ''}\n{details}".encode()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, keyring: Keyring, signing_key: Ed25519PrivateKey, heads_path: Path) -> None:
        self.keyring = keyring
        self._key = signing_key
        self.public = signing_key.public_key()
        self.key_id = key_id(self.public)
        self.heads_path = heads_path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode = 0

    # --- writing -----------------------------------------------------------------------

    def append(self, conn: Connection, events: Sequence[AuditEvent]) -> list[int]:
        """Append ``events`` in the caller's transaction; returns their indexes.

        Rows are written, and the head signed, once per transaction by :meth:`take_head`,
        which the caller must call before the transaction ends; after it has committed,
        :meth:`publish` the head."""
        if not events:
            return []
        pending: _Pending | None = conn.info.get(_PENDING)
        if pending is None:
            state = _STATE
            if conn.dialect.name == "postgresql":
                state = state.with_for_update()
            row = conn.execute(state).one()
            pending = _Pending(Frontier.from_json(json.loads(row.frontier)), _now())
            conn.info[_PENDING] = pending
        seqs: list[int] = []
        self.keyring.preload(conn, [e.subject_hash for e in events if e.subject_hash])
        for event in events:
            seq = pending.frontier.size
            seqs.append(seq)
            ref = self.keyring.subject_ref(conn, event.subject_hash) if event.subject_hash else None
            details = canonical(dict(event.details)).decode()
            leaf = leaf_hash(entry_bytes(seq, pending.at, event.actor, event.action, ref, details))
            pending.frontier.append(leaf)
            pending.rows.append(
                {
                    "seq": seq,
                    "at": pending.at,
                    "actor": event.actor,
                    "action": event.action,
                    "subject_ref": ref,
                    "details": details,
                    "leaf_hash": leaf.hex(),
                }
            )
        return seqs

    def record(self, engine: Engine, events: Sequence[AuditEvent]) -> list[int]:
        """Append in a transaction of its own (for actions that write nothing else)."""
        with writing(engine).begin() as conn:
            seqs = self.append(conn, events)
            head = self.take_head(conn)
        self.publish(head)
        return seqs

    def take_head(self, conn: Connection) -> TreeHead | None:
        """Write what this transaction appended and sign its head (call before it ends)."""
        pending: _Pending | None = conn.info.pop(_PENDING, None)
        if pending is None or not pending.rows:
            return None
        conn.execute(_INSERT, pending.rows)
        frontier = pending.frontier
        conn.execute(
            _UPDATE_STATE, {"size": frontier.size, "frontier": json.dumps(frontier.to_json())}
        )
        return self._sign(frontier.size, frontier.root().hex(), pending.at)

    def publish(self, head: TreeHead | None) -> None:
        """After the commit: write the head to the heads file (fsynced)."""
        if head is not None:
            self._write_head(head)

    def _sign(self, size: int, root: str, at: str, *, recovered: bool = False) -> TreeHead:
        payload = {"size": size, "root": root, "timestamp": at, "key_id": self.key_id}
        return TreeHead(
            size, root, at, self.key_id, b64(self._key.sign(canonical(payload))), recovered
        )

    def _write_head(self, head: TreeHead) -> None:
        line = (json.dumps(head.as_dict(), sort_keys=True) + "\n").encode()
        with self._lock:
            if self._fd is None or not self._same_file():
                self._open_heads()
            assert self._fd is not None
            os.write(self._fd, line)  # O_APPEND: whole lines, even from several processes
            os.fsync(self._fd)

    def _open_heads(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self.heads_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(self.heads_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._inode = os.fstat(self._fd).st_ino

    def _same_file(self) -> bool:
        """False when the heads file was moved or replaced (e.g. by a restore)."""
        try:
            return os.stat(self.heads_path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def recover(self, engine: Engine) -> TreeHead | None:
        """Sign entries that a crash left without a head (marked ``recovered``)."""
        heads = read_heads(self.heads_path, self.public)
        signed = max((h.size for h in heads), default=0)
        with engine.connect() as conn:
            row = conn.execute(select(audit_state.c.size, audit_state.c.frontier)).one()
        if row.size <= signed:
            return None
        frontier = Frontier.from_json(json.loads(row.frontier))
        head = self._sign(frontier.size, frontier.root().hex(), _now(), recovered=True)
        self._write_head(head)
        return head

    # --- checking ----------------------------------------------------------------------

    def verify(self, engine: Engine) -> VerifyReport:
        return verify_log(engine, self.heads_path, self.public)

    def prove(self, engine: Engine, index: int) -> dict[str, Any]:
        return prove_entry(engine, self.heads_path, self.public, index)


def read_heads(path: Path, public: Ed25519PublicKey) -> list[TreeHead]:
    """Every signed head in the heads file; a bad line or signature is an AuditError."""
    if not path.exists():
        return []
    heads = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                data = json.loads(raw)
                head = TreeHead(
                    int(data["size"]),
                    str(data["root"]),
                    str(data["timestamp"]),
                    str(data["key_id"]),
                    str(data["signature"]),
                    bool(data.get("recovered", False)),
                )
                public.verify(unb64(head.signature), canonical(head.payload()))
            except (ValueError, KeyError, TypeError):
                raise AuditError(f"{path}:{number}: not a signed tree head") from None
            except InvalidSignature:
                raise AuditError(
                    f"{path}:{number}: the signature of the head for size {data.get('size')} "
                    "does not verify: the heads file was altered"
                ) from None
            heads.append(head)
    return heads


def _rows(engine: Engine, chunk: int = 10_000) -> Iterator[Any]:
    last = -1
    while True:
        with engine.connect() as conn:
            batch = conn.execute(
                select(audit_entries)
                .where(audit_entries.c.seq > last)
                .order_by(audit_entries.c.seq)
                .limit(chunk)
            ).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


def verify_log(engine: Engine, heads_path: Path, public: Ed25519PublicKey) -> VerifyReport:
    heads = read_heads(heads_path, public)
    by_size: dict[int, str] = {}
    for head in heads:
        if by_size.get(head.size, head.root) != head.root:
            return VerifyReport(
                False,
                0,
                0,
                len(heads),
                head.size,
                f"two signed heads for size {head.size} disagree",
            )
        by_size[head.size] = head.root
    signed = max(by_size, default=0)
    recovered = sum(1 for h in heads if h.recovered)
    frontier = Frontier()
    last_good = 0
    for row in _rows(engine):
        i = frontier.size
        if row.seq != i:
            return VerifyReport(
                False,
                i,
                signed,
                len(heads),
                i,
                f"entry {i} is missing (the next entry is {row.seq})",
            )
        leaf = leaf_hash(
            entry_bytes(row.seq, row.at, row.actor, row.action, row.subject_ref, row.details)
        )
        if leaf.hex() != row.leaf_hash:
            return VerifyReport(False, i, signed, len(heads), i, f"entry {i} was altered")
        frontier.append(leaf)
        size = frontier.size
        if size in by_size:
            if frontier.root().hex() != by_size[size]:
                return VerifyReport(
                    False,
                    size,
                    signed,
                    len(heads),
                    last_good,
                    f"entries {last_good}..{size - 1} do not match the head signed for size {size} "
                    "(rewritten or reordered); the first of them is the first bad index",
                )
            last_good = size
    n = frontier.size
    if n < signed:
        return VerifyReport(
            False,
            n,
            signed,
            len(heads),
            n,
            f"the log was truncated: a head is signed for {signed} entries, {n} remain",
        )
    if n > signed:
        return VerifyReport(
            False,
            n,
            signed,
            len(heads),
            signed,
            f"entries {signed}..{n - 1} are covered by no signed head (inserted, or the server "
            "stopped before signing; `troth audit recover` signs them after investigation)",
        )
    return VerifyReport(True, n, signed, len(heads), recovered_heads=recovered)


def prove_entry(
    engine: Engine, heads_path: Path, public: Ed25519PublicKey, index: int
) -> dict[str, Any]:
    heads = read_heads(heads_path, public)
    covering = [h for h in heads if h.size > index]
    if not covering:
        raise AuditError(f"no signed head covers entry {index} yet")
    head = max(covering, key=lambda h: h.size)
    leaves: list[bytes] = []
    entry: Any = None
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(audit_entries)).scalar_one()
    if count < head.size:
        raise AuditError("the log is shorter than its signed head: run `troth audit verify`")
    for row in _rows(engine):
        if row.seq >= head.size:
            break
        leaves.append(bytes.fromhex(row.leaf_hash))
        if row.seq == index:
            entry = row
    if entry is None:
        raise AuditError(f"entry {index} does not exist")
    path = inclusion_path(leaves, index)
    root = bytes.fromhex(head.root)
    leaf = leaves[index]
    if not verify_inclusion(leaf, index, head.size, path, root):
        raise AuditError(f"entry {index} is not in the signed tree: run `troth audit verify`")
    return {
        "index": index,
        "entry": {
            "at": entry.at,
            "actor": entry.actor,
            "action": entry.action,
            "subject_ref": entry.subject_ref,
            "details": json.loads(entry.details),
        },
        "leaf_hash": leaf.hex(),
        "tree_head": head.as_dict(),
        "audit_path": [p.hex() for p in path],
    }
