"""Carrying out an approved request as jobs, with the rights engine.

    discover (all datastores)          find every identity the person is known by
      └─ one job per datastore:        access | erase | rectify       (engine)
         or one 'limit' job:           restriction | objection        (vault, consent ledger)
    settle, when the last job is done: access package and its link | completion

Outputs of jobs that hold personal data (identities, rows) are sealed; an access
request's rows are dropped from the jobs once the package is built. Legal holds on the
person's troth subjects (``Vault.holds``) are passed to every erasure, and the request
shows their reasons.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from troth.consent.ledger import ConsentChange, ConsentLedger
from troth.errors import PolicyError, StoreError, TrothError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.policy.datasets import Datasets, load_datasets
from troth.policy.model import Policy
from troth.policy.types import text_for
from troth.rights.delivery import Deliveries
from troth.rights.engine import Discovery, RightsEngine, rectifiable
from troth.rights.jobs import Job, Outcome, enqueue, jobs_of, requeue_failed
from troth.rights.requests import RequestDesk
from troth.rights.requests_errors import RequestError
from troth.rights.requests_model import Outbox, RequestView, view_of
from troth.rights.requests_texts import texts
from troth.store.tables_rights import rights_jobs, rights_requests
from troth.vault.vault import LimitKind, Vault

__all__ = ["ErasureCheck", "Executor"]

_OPERATION = {
    "access": "access",
    "portability": "access",
    "erasure": "erase",
    "rectification": "rectify",
    "restriction": "limit",
    "objection": "limit",
}
_TROTH = "troth"  # the datastore of limit jobs when no annotations are declared


@dataclass(frozen=True)
class _Parts:
    engine: Engine
    vault: Any


@dataclass(frozen=True)
class ErasureCheck:
    """``troth rights verify-erasure``: rows left per (datastore, table) and rows kept."""

    remaining: dict[str, int]
    kept: dict[str, int]
    reasons: dict[str, list[str]]

    @property
    def proven(self) -> bool:
        return not any(self.remaining.values())


def _found(identities: Mapping[str, Sequence[str] | set[str]]) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in sorted(identities.items()) if v}


class Executor:
    def __init__(
        self,
        desk: RequestDesk,
        deliveries: Deliveries,
        policy: Policy,
        engine: Engine,
        vault: Vault,
        ledger: ConsentLedger,
        datasets: Path | None,
    ) -> None:
        self.desk = desk
        self.deliveries = deliveries
        self.policy = policy
        self.engine = engine
        self.vault = vault
        self.ledger = ledger
        self.datasets_path = datasets
        self._lock = threading.Lock()
        self._datasets: Datasets | None = None
        self._rights: RightsEngine | None = None

    # --- the engine, opened on first use ---------------------------------------------------

    def datasets(self) -> Datasets:
        if self.datasets_path is None:
            raise RequestError(
                409,
                "No datasets declared",
                "datasets: no datasets declared, so troth does not know where the service "
                "keeps personal data; set TROTH_DATASETS to the annotations file "
                "(datasets.yaml)",
            )
        with self._lock:
            if self._datasets is None:
                try:
                    self._datasets = load_datasets(self.datasets_path, self.policy)
                except (PolicyError, OSError) as exc:
                    raise RequestError(
                        409, "Datasets unusable", f"datasets: {exc}".splitlines()[0]
                    ) from None
            return self._datasets

    def rights_engine(self) -> RightsEngine:
        datasets = self.datasets()
        with self._lock:
            if self._rights is None:
                from troth.rights.connectors import open_connectors

                try:
                    connectors = open_connectors(datasets, troth=_Parts(self.engine, self.vault))
                except KeyError as exc:  # an unset ${VARIABLE} in a datastore url
                    raise RequestError(
                        409,
                        "Datastore unusable",
                        f"datasets: the environment variable {exc.args[0]} is not set",
                    ) from None
                except StoreError as exc:
                    raise RequestError(409, "Datastore unusable", f"datasets: {exc}") from None
                self._rights = RightsEngine(self.policy, datasets, connectors)
            return self._rights

    def close(self) -> None:
        with self._lock:
            if self._rights is not None:
                for connector in self._rights.connectors.values():
                    connector.close()
                self._rights = None

    def identity_kinds(self) -> list[str] | None:
        """The identity kinds the annotations declare (None without annotations)."""
        if self.datasets_path is None:
            return None
        return list(self.datasets().identity_kinds())

    def rectifiable(self) -> list[tuple[str, str]]:
        """(``store.table.field``, label) of every declared field a request may correct:
        those the annotations open to correction (``rectify: true``), never keys,
        identities or references (they find the person rather than describe them) nor
        fields erasure keeps (records kept by law are not rewritten on request)."""
        if self.datasets_path is None:
            return []
        lang = self.policy.default_language
        names = {c.id: text_for(c.name, lang, lang) or c.id for c in self.policy.categories}
        out = []
        for store in self.datasets().datastores:
            for table in store.tables:
                for f in table.fields:
                    if not rectifiable(table, f.name):
                        continue
                    group = names.get(f.category, f.category) if f.category else store.id
                    label = f"{group}: {table.name} {f.name}"
                    out.append((f"{store.id}.{table.name}.{f.name}", label))
        return out

    def check_correction(self, target: str, value: str) -> None:
        """Refuse (422, naming the field) a correction its column cannot take, before the
        request is queued; 503 when the datastore cannot be reached to say."""
        if self.datasets_path is None:
            return
        store, _, rest = target.partition(".")
        table, _, field = rest.partition(".")
        try:
            self.rights_engine().coerce_value(store, table, field, value)
        except PolicyError as exc:
            message = str(exc).removeprefix(f"{target}: ")
            raise RequestError(422, "Invalid request", f"corrections.{target}: {message}") from None
        except StoreError:
            raise RequestError(
                503,
                "Datastore unreachable",
                f"corrections.{target}: datastore '{store}' cannot be reached to check the "
                "value; try again later",
            ) from None

    def same_person(self, identities: Mapping[str, Sequence[str]]) -> bool:
        """Whether identities given together lead to one person (see RightsEngine.one_person);
        False without annotations (nothing to tell by)."""
        if self.datasets_path is None:
            return False
        return self.rights_engine().one_person(identities)

    def subject_kinds(self) -> list[str]:
        """Identity kinds whose values are troth subjects (the 'troth' datastore's)."""
        if self.datasets_path is None:
            return ["account_id"]
        try:
            datasets = self.datasets()
        except RequestError:
            return ["account_id"]
        kinds = [k for s in datasets.datastores if s.kind == "troth" for k in s.subjects]
        return kinds or ["account_id"]

    def subjects(self, identities: Mapping[str, Sequence[str]]) -> list[str]:
        """The person's troth subjects (vault and consent ids) among ``identities``."""
        return sorted(
            {
                v
                for kind in self.subject_kinds()
                for v in identities.get(kind, ())
                if SUBJECT_PATTERN.match(v)
            }
        )

    def holds(self, identities: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
        out: dict[tuple[str, str], None] = {}
        for subject in self.subjects(identities):
            out.update(dict.fromkeys(self.vault.holds(subject)))
        return list(out)

    # --- queueing ----------------------------------------------------------------------------

    def queue(self, conn: Connection, view: RequestView, actor: str) -> None:
        """Queue a request's first jobs (or retry its failed ones), in the caller's
        transaction; raises RequestError when it cannot run (no datasets declared)."""
        now = self.desk.clock()
        row = self.desk.lock(conn, view.id)
        if row.state == "executing":
            retried = requeue_failed(conn, view.id, now)
            self.desk.step(conn, row, "retried", actor, f"{retried} failed job(s) queued again")
            return
        if view.kind in ("restriction", "objection") and self.datasets_path is None:
            enqueue(conn, view.id, "limit", [_TROTH], now)
        else:
            self.rights_engine()  # refuses here, with the reason, rather than in a job
            enqueue(conn, view.id, "discover", ["*"], now)
        self.desk.update(conn, view.id, state="executing")
        self.desk.step(conn, row, "executing", actor, "jobs queued")

    # --- running (JobRunner) ---------------------------------------------------------------

    def _found_of(self, request_id: str) -> dict[str, list[str]]:
        with self.engine.connect() as conn:
            sealed = conn.execute(
                select(rights_requests.c.found).where(rights_requests.c.id == request_id)
            ).scalar_one()
        if sealed is None:  # limit jobs without annotations: the identities given
            return self.desk.identities(request_id)
        found: dict[str, list[str]] = self.desk.sealer.open(f"found:{request_id}", sealed)
        return found

    def run(self, job: Job) -> Outcome:
        view = self.desk.get(job.request_id, steps=False)
        actor = f"request:{job.request_id}"
        sealer = self.desk.sealer
        if job.operation == "discover":
            found = self.rights_engine().discover(self.desk.identities(job.request_id))
            identities = _found(found.identities)
            counts = {k: len(v) for k, v in identities.items()}
            return Outcome(sealer.seal(f"found:{job.request_id}", identities), counts)
        found_ids = self._found_of(job.request_id)
        if job.operation == "access":
            discovery = self.rights_engine().discover(found_ids)
            rows = {
                table: rows
                for (store, table), rows in discovery.rows.items()
                if store == job.datastore
            }
            label = f"part:{job.request_id}:{job.datastore}"
            blob = sealer.seal_bytes(label, _dump_rows(rows))
            return Outcome(blob, {"rows": sum(len(r) for r in rows.values())})
        if job.operation == "erase":
            holds = self.holds(found_ids)
            report = self.rights_engine().erase(found_ids, job.datastore, holds=holds, actor=actor)
            return Outcome(None, report.as_dict())
        if job.operation == "rectify":
            changed = 0
            corrections = self._corrections(job.request_id, job.datastore)
            for table, field, value in corrections:
                changed += self.rights_engine().rectify(
                    found_ids, job.datastore, table, field, value, actor=actor
                )
            return Outcome(None, {"changed": changed, "fields": len(corrections)})
        if job.operation == "limit":
            return Outcome(None, self._limit(view, found_ids, actor))
        raise RequestError(409, "Unknown job", f"operation: '{job.operation}' is not a job")

    def _corrections(self, request_id: str, datastore: str) -> list[tuple[str, str, str]]:
        with self.engine.connect() as conn:
            payload = self.desk.sealed_payload(conn, request_id)
        out = []
        for target, value in sorted(payload.get("corrections", {}).items()):
            store, _, rest = target.partition(".")
            table, _, field = rest.partition(".")
            if store == datastore:
                out.append((table, field, value))
        return out

    def _limit(
        self, view: RequestView, found: Mapping[str, Sequence[str]], actor: str
    ) -> dict[str, Any]:
        kind: LimitKind = "restriction" if view.kind == "restriction" else "objection"
        scope = str(view.params.get("scope", "*"))
        subjects = self.subjects(found)
        reason = f"data subject request {view.id} ({kind})"
        withdrawn: list[str] = []
        for subject in subjects:
            self.vault.limit(subject, kind, scope, reason, actor=actor)
            if kind == "objection" and scope != "*":
                withdrawn = self._withdraw(subject, scope, view.language)
        return {
            "subjects": len(subjects),
            "scope": scope,
            "consent_withdrawn": withdrawn,
            "note": ""
            if subjects
            else "no account of this person is known to troth; nothing was recorded",
        }

    def _withdraw(self, subject: str, purpose: str, language: str) -> list[str]:
        """Objecting to a purpose also withdraws the consents its activities rest on (direct
        marketing by e-mail, for instance), through the consent ledger."""
        from troth.policy.compiled import compile_policy

        activities = compile_policy(self.policy).activities_by_purpose.get(purpose, ())
        categories = sorted({a.consent for a in activities if a.consent})
        if not categories:
            return []
        lang = language if language in self.policy.languages else self.policy.default_language
        self.ledger.record(
            ConsentChange(
                subject,
                dict.fromkeys(categories, "refused"),
                "api",
                lang,
                self.policy.version,
            )
        )
        return categories

    # --- settling ----------------------------------------------------------------------------

    def settle(self, conn: Connection, job: Job) -> Callable[[], None] | None:
        row = self.desk.lock(conn, job.request_id)
        view = view_of(row)
        outbox = Outbox()
        if job.operation == "discover":
            self._after_discovery(conn, row, view)
        else:
            self.desk.step(
                conn,
                row,
                f"{job.operation}_done",
                f"request:{view.id}",
                f"{job.datastore}: {_summary(job)}",
                datastore=job.datastore,
                counts=_counts(job),
            )
        jobs = jobs_of(conn, job.request_id)
        if any(j.state != "done" for j in jobs):
            return None
        if job.operation != "discover" and self._queue_last(conn, view, jobs):
            return None
        self._complete(conn, row, view, jobs, outbox)
        return lambda: self._send(job.request_id, outbox)

    def _after_discovery(self, conn: Connection, row: Any, view: RequestView) -> None:
        sealed = conn.execute(
            select(rights_jobs.c.output, rights_jobs.c.result).where(
                rights_jobs.c.request_id == view.id, rights_jobs.c.operation == "discover"
            )
        ).one()
        conn.execute(
            update(rights_requests)
            .where(rights_requests.c.id == view.id)
            .values(found=sealed.output)
        )
        conn.execute(
            update(rights_jobs)
            .where(rights_jobs.c.request_id == view.id, rights_jobs.c.operation == "discover")
            .values(output=None)
        )
        counts = ", ".join(f"{n} {k}" for k, n in sorted((sealed.result or {}).items()))
        self.desk.step(conn, row, "discovered", "troth", f"identities found: {counts or 'none'}")
        operation = _OPERATION[view.kind]
        if operation == "limit":
            stores = [_TROTH]
        elif operation == "rectify":
            payload = self.desk.sealed_payload(conn, view.id)
            stores = sorted({t.partition(".")[0] for t in payload.get("corrections", {})})
        else:
            stores = self._first_stores(operation)
        enqueue(conn, view.id, operation, stores, self.desk.clock())

    def _first_stores(self, operation: str) -> list[str]:
        """The datastores whose jobs start at once. An erasure erases the service's own
        databases first and troth's store (where the vault shreds the data key) only after
        they all succeeded: a service database that refuses must not leave a request whose
        key is already gone."""
        stores = self.datasets().datastores
        if operation != "erase":
            return [s.id for s in stores]
        first = [s.id for s in stores if s.kind != "troth"]
        return first or [s.id for s in stores]

    def _queue_last(self, conn: Connection, view: RequestView, jobs: list[Job]) -> bool:
        """After the service databases' erasure jobs are done: queue troth's own store."""
        if _OPERATION[view.kind] != "erase":
            return False
        queued = {j.datastore for j in jobs if j.operation == "erase"}
        last = [
            s.id for s in self.datasets().datastores if s.kind == "troth" and s.id not in queued
        ]
        if not last:
            return False
        return enqueue(conn, view.id, "erase", last, self.desk.clock()) > 0

    def _complete(
        self, conn: Connection, row: Any, view: RequestView, jobs: list[Job], outbox: Outbox
    ) -> None:
        work = [j for j in jobs if j.operation != "discover"]
        result: dict[str, Any] = {"jobs": {f"{j.operation}:{j.datastore}": j.result for j in work}}
        payload = self.desk.sealed_payload(conn, view.id)
        email = (payload["identities"].get("email") or [None])[0]
        if view.kind in ("access", "portability"):
            link = self._package(conn, view, work)
            result["package"] = "link e-mailed" if email else "no e-mail address to send it to"
            if email:
                hours = int(self.deliveries.ttl.total_seconds() // 3600)
                self.desk.mail(
                    outbox, email, view.language, "package", view.kind, link=link, hours=hours
                )
        if view.kind == "erasure":
            found = self._found_in(conn, view.id)
            holds = self.holds(found)
            if holds:
                result["holds"] = [{"scope": s, "reason": r} for s, r in holds]
            kept = {
                f"{j.datastore}.{table}": outcome.get("reasons", [])
                for j in work
                for table, outcome in (j.result or {}).get("tables", {}).items()
                if outcome.get("kept")
            }
            result["kept"] = kept
        now = self.desk.clock()
        conn.execute(
            update(rights_requests)
            .where(rights_requests.c.id == view.id)
            .values(state="completed", result=result, completed_at=now, updated_at=now)
        )
        note = "done"
        if result.get("holds"):
            note = "done; kept under legal hold: " + "; ".join(h["reason"] for h in result["holds"])
        self.desk.step(conn, row, "completed", "troth", note)
        if view.kind == "erasure":
            # the request's own pseudonym in the audit log becomes unlinkable too
            self.desk.audit.keyring.shred(conn, row.subject_hash)
        if email and view.kind not in ("access", "portability"):
            t = texts(view.language)
            said = (
                t["note.held"].format(reasons="; ".join(h["reason"] for h in result["holds"]))
                if result.get("holds")
                else t["note.done"]
            )
            self.desk.mail(
                outbox,
                email,
                view.language,
                "done",
                view.kind,
                note=said,
                url=self.desk.status_url(view.id),
            )

    def _found_in(self, conn: Connection, request_id: str) -> dict[str, list[str]]:
        sealed = conn.execute(
            select(rights_requests.c.found).where(rights_requests.c.id == request_id)
        ).scalar_one()
        if sealed is None:
            return self.desk.sealed_payload(conn, request_id)["identities"]  # type: ignore[no-any-return]
        found: dict[str, list[str]] = self.desk.sealer.open(f"found:{request_id}", sealed)
        return found

    def _package(self, conn: Connection, view: RequestView, work: list[Job]) -> str:
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for job in work:
            blob = conn.execute(
                select(rights_jobs.c.output).where(rights_jobs.c.id == job.id)
            ).scalar_one()
            if blob is None:
                continue
            part = _load_rows(self.desk.sealer.open_bytes(f"part:{view.id}:{job.datastore}", blob))
            for table, table_rows in part.items():
                rows[(job.datastore, table)] = table_rows
        found = self._found_in(conn, view.id)
        discovery = Discovery({k: set(v) for k, v in found.items()}, rows)
        package = self.rights_engine().package(discovery, view.language)
        conn.execute(
            update(rights_jobs).where(rights_jobs.c.request_id == view.id).values(output=None)
        )
        token = self.deliveries.create(conn, view.id, f"{view.kind}-{view.id[:8]}.zip", package)
        return f"{self.desk.config.public_url.rstrip('/')}/privacy/requests/download/{token}"

    def _send(self, request_id: str, outbox: Outbox) -> None:
        try:
            self.desk.deliver(outbox)
        except TrothError as exc:
            self.desk.record(request_id, "mail_failed", "troth", str(exc))

    # --- proof -------------------------------------------------------------------------------

    def verify_erasure(self, request_id: str, actor: str) -> ErasureCheck:
        view = self.desk.get(request_id, steps=False)
        if view.kind != "erasure":
            raise RequestError(409, "Not an erasure", "request: it is not an erasure request")
        if view.state != "completed":
            raise RequestError(
                409, "Not erased yet", f"request: it is {view.state}; nothing to prove yet"
            )
        found = self._found_of(request_id)
        if not any(found.values()):  # a proof that searched for nobody would prove nothing
            raise RequestError(
                409,
                "Identities dropped",
                "request: its identities were dropped after the retention period "
                "(TROTH_RIGHTS_KEEP_DAYS); there is no one to search for",
            )
        try:
            proof = self.rights_engine().prove_erasure(found, holds=self.holds(found))
        except StoreError as exc:  # names the datastore and the kind of error, no URL
            raise RequestError(
                503,
                "Datastore unreachable",
                f"datastore: {exc}; the erasure could not be checked, try again later",
            ) from None
        check = ErasureCheck(
            {f"{s}.{t}": n for (s, t), n in proof.remaining.items()},
            {f"{s}.{t}": n for (s, t), n in proof.kept.items()},
            {f"{s}.{t}": r for (s, t), r in proof.reasons.items()},
        )
        left = sum(check.remaining.values())
        self.desk.record(
            request_id,
            "erasure_verified" if check.proven else "erasure_incomplete",
            actor,
            f"{left} row(s) remain in {len(check.remaining)} declared table(s); "
            f"{sum(check.kept.values())} kept with a reason",
            remaining=left,
        )
        return check


def _counts(job: Job) -> dict[str, int]:
    """A job's result as counts only (what the audit entry of its step carries)."""
    result = job.result or {}
    if job.operation == "erase":
        totals: dict[str, int] = {"deleted": 0, "nulled": 0, "masked": 0, "kept": 0}
        for outcome in result.get("tables", {}).values():
            for what in totals:
                totals[what] += int(outcome.get(what, 0))
        return totals
    return {k: int(v) for k, v in result.items() if isinstance(v, int)}


def _summary(job: Job) -> str:
    counts = _counts(job)
    if job.operation == "erase":
        kept = ", ".join(
            dict.fromkeys(
                reason
                for outcome in (job.result or {}).get("tables", {}).values()
                for reason in outcome.get("reasons", [])
            )
        )
        text = ", ".join(f"{n} {what}" for what, n in counts.items())
        return f"{text} (kept: {kept})" if kept else text
    if job.operation == "access":
        return f"{counts.get('rows', 0)} row(s) found"
    if job.operation == "rectify":
        return f"{counts.get('changed', 0)} row(s) corrected"
    note = (job.result or {}).get("note") or ""
    return f"recorded for {counts.get('subjects', 0)} subject(s)" + (f"; {note}" if note else "")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)  # Decimal, UUID, ...


def _dump_rows(rows: Mapping[str, list[dict[str, Any]]]) -> bytes:
    """A datastore's rows as JSON (dates as ISO text), to be sealed until packaged."""
    return json.dumps(dict(rows), default=_plain, ensure_ascii=False).encode()


def _load_rows(data: bytes) -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = json.loads(data)
    return loaded
