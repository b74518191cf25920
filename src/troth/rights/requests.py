"""The lifecycle of a data subject request.

    submitted ──(e-mail code, or an authenticated account)──> verified
    verified ──(automatically for the kinds configured, or a privacy officer)──> approved
    approved ──(jobs queued, one per datastore)──> executing ──(all jobs done)──> completed
    any open state ──(a privacy officer, with a reason)──> rejected

The deadline is one calendar month from receipt, extendable by up to two months with a
reason. Every step is a row in ``rights_steps`` (shown to officers) and an audit entry
that names the subject only by keyed hash. Identities (and a rectification's new values)
are personal data: they are kept sealed, and never appear in URLs, logs, steps or audit
entries.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.engine import Row

from troth.audit.log import AuditEvent, AuditLog
from troth.errors import TrothError
from troth.keyring.subjects import SUBJECT_PATTERN
from troth.rights.codes import Sealer, new_code, normalise_code
from troth.rights.jobs import Job, jobs_of
from troth.rights.mailer import Mailer
from troth.rights.requests_deadlines import MAX_EXTENSION_MONTHS, add_months, due_date
from troth.rights.requests_errors import RequestError
from troth.rights.requests_model import (
    CONTROL_CHARS,
    IDENTITY_KINDS,
    KINDS,
    OPEN_STATES,
    REQUEST_ID,
    STATES,
    Clock,
    DeskConfig,
    Outbox,
    RequestView,
    Step,
    Workload,
    aware,
    check_identities,
    request_workload,
    utcnow,
    view_of,
)
from troth.rights.requests_texts import texts
from troth.store.engine import reading, writing
from troth.store.tables_rights import rights_codes, rights_requests, rights_steps

MAX_CODES = 5  # codes sent per request (the first and four more)

__all__ = ["MAX_CODES", "RequestDesk"]


class RequestDesk:
    """Submitting, verifying and deciding requests. Execution (jobs) is in
    :mod:`troth.rights.requests_execution`; this class only queues it (``queue_execution``)."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        sealer: Sealer,
        mailer: Mailer,
        subject_hash: Callable[[str], str],
        config: DeskConfig,
        clock: Clock = utcnow,
    ) -> None:
        """``subject_hash`` is the vault's hasher (account ids), so that a request about an
        account carries the same pseudonym in the audit log as that account's other entries."""
        self.engine = engine
        self.audit = audit
        self.sealer = sealer
        self.mailer = mailer
        self._account_hash = subject_hash
        self.config = config
        self.clock = clock
        # set by the executor: queues a request's jobs inside the caller's transaction
        self.queue_execution: Callable[[Connection, RequestView, str], None] | None = None
        # set by the executor from the dataset annotations: the identity kinds declared,
        # the kinds whose values are troth subjects (vault, consent), the correctable fields
        self.identity_kinds: Callable[[], Sequence[str] | None] | None = None
        self.subject_kinds: Callable[[], Sequence[str]] = lambda: ("account_id",)
        self.correctable: Callable[[], Sequence[str] | None] | None = None
        # set by the executor: raises RequestError when a correction's value does not fit
        # its column (checked before the request is queued)
        self.check_correction: Callable[[str, str], None] | None = None
        # set by the executor: whether identities given together lead to one person (the
        # account found by one of them carries the others); None when it cannot tell
        self.same_person: Callable[[Mapping[str, Sequence[str]]], bool] | None = None

    # --- reading ---------------------------------------------------------------------------

    def today(self) -> dt.date:
        return self.clock().astimezone(dt.UTC).date()

    def get(self, request_id: str, *, steps: bool = True) -> RequestView:
        self._check_id(request_id)
        with reading(self.engine).connect() as conn:
            row = conn.execute(
                select(rights_requests).where(rights_requests.c.id == request_id)
            ).first()
            if row is None:
                raise RequestError(404, "No such request", "request: no request with this id")
            found = self._steps(conn, request_id) if steps else []
        return view_of(row, found)

    def _steps(self, conn: Connection, request_id: str) -> list[Step]:
        rows = conn.execute(
            select(rights_steps)
            .where(rights_steps.c.request_id == request_id)
            .order_by(rights_steps.c.id)
        ).all()
        return [Step(aware(r.at), r.step, r.actor, r.note) for r in rows]

    def list_requests(self, state: str | None = None, limit: int = 500) -> list[RequestView]:
        """Requests by deadline (earliest first); open ones only when ``state`` is 'open'."""
        deadline = func.coalesce(rights_requests.c.extended_due, rights_requests.c.due)
        query = select(rights_requests).order_by(deadline, rights_requests.c.received_at)
        if state == "open":
            query = query.where(rights_requests.c.state.in_(OPEN_STATES))
        elif state is not None:
            if state not in STATES:
                raise RequestError(
                    422, "Invalid request", f"state: use open or one of {', '.join(STATES)}"
                )
            query = query.where(rights_requests.c.state == state)
        with reading(self.engine).connect() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [view_of(r) for r in rows]

    def workload(self) -> Workload:
        return request_workload(self.engine, self.today())

    def jobs(self, request_id: str) -> list[Job]:
        """The request's jobs (datastore, state, attempts, error): counts, nothing personal."""
        self._check_id(request_id)
        with reading(self.engine).connect() as conn:
            return jobs_of(conn, request_id)

    def identities(self, request_id: str) -> dict[str, list[str]]:
        """The identities the request was made with (personal data: for execution only)."""
        with reading(self.engine).connect() as conn:
            sealed = conn.execute(
                select(rights_requests.c.sealed).where(rights_requests.c.id == request_id)
            ).scalar_one_or_none()
        if sealed is None:
            raise RequestError(404, "No such request", "request: no request with this id")
        opened: dict[str, list[str]] = self.sealer.open(request_id, sealed)["identities"]
        return opened

    def sealed_payload(self, conn: Connection, request_id: str) -> dict[str, Any]:
        sealed = conn.execute(
            select(rights_requests.c.sealed).where(rights_requests.c.id == request_id)
        ).scalar_one()
        payload: dict[str, Any] = self.sealer.open(request_id, sealed)
        return payload

    # --- writing helpers -------------------------------------------------------------------

    @staticmethod
    def _check_id(request_id: str) -> None:
        if not REQUEST_ID.match(request_id):
            raise RequestError(404, "No such request", "request: no request with this id")

    def lock(self, conn: Connection, request_id: str) -> Row[Any]:
        self._check_id(request_id)
        row = conn.execute(
            select(rights_requests).where(rights_requests.c.id == request_id).with_for_update()
        ).first()
        if row is None:
            raise RequestError(404, "No such request", "request: no request with this id")
        return row

    def step(
        self,
        conn: Connection,
        row: Row[Any] | RequestView,
        step: str,
        actor: str,
        note: str = "",
        **details: Any,
    ) -> None:
        """Record a step of the request: a row for officers and an audit entry."""
        now = self.clock()
        conn.execute(
            insert(rights_steps).values(
                request_id=row.id, at=now, step=step, actor=actor, note=note
            )
        )
        subject: str | None
        if row.kind == "erasure" and row.state == "completed":
            # the person is erased: a pseudonym now would need a new data key for them
            subject = None
        else:
            subject = row.subject_hash if isinstance(row, Row) else self._subject_of(conn, row.id)
        self.audit.append(
            conn,
            [
                AuditEvent(
                    f"rights.{step}",
                    actor,
                    subject,
                    {"request": row.id, "kind": row.kind, **details},
                )
            ],
        )

    def record(self, request_id: str, step: str, actor: str, note: str, **details: Any) -> None:
        """Record a step in a transaction of its own."""

        def run(conn: Connection, _outbox: Outbox) -> None:
            self.step(conn, self.lock(conn, request_id), step, actor, note, **details)

        self._commit(run)

    def _subject_of(self, conn: Connection, request_id: str) -> str:
        subject: str = conn.execute(
            select(rights_requests.c.subject_hash).where(rights_requests.c.id == request_id)
        ).scalar_one()
        return subject

    def update(self, conn: Connection, request_id: str, **values: Any) -> None:
        conn.execute(
            update(rights_requests)
            .where(rights_requests.c.id == request_id)
            .values(updated_at=self.clock(), **values)
        )

    def _commit(
        self,
        run: Callable[[Connection, Outbox], Any],
        request_id: str | None = None,
        *,
        code_mail: bool = False,
    ) -> Any:
        """Run ``run`` in one write transaction with its audit head, then send its mail.

        Mail that cannot go is a step of ``request_id`` (what was decided stays decided);
        when the mail carried a verification code the requester waits for, the error is
        raised too, with where to ask for a new code."""
        outbox = Outbox()
        with writing(self.engine).begin() as conn:
            result = run(conn, outbox)
            head = self.audit.take_head(conn)
        self.audit.publish(head)
        try:
            self.deliver(outbox)
        except RequestError as exc:
            if request_id is None:
                raise
            self.record(request_id, "mail_failed", "troth", str(exc))
            if code_mail:
                raise RequestError(
                    exc.status,
                    exc.title,
                    f"{exc}; the request is recorded: ask for a new code at "
                    f"/privacy/requests/{request_id}",
                ) from None
        return result

    def mail(
        self,
        outbox: Outbox,
        to: str,
        language: str,
        name: str,
        kind: str,
        **fields: Any,
    ) -> None:
        """Queue the e-mail ``name`` (see :mod:`troth.rights.requests_texts`) in the
        requester's language."""
        t = texts(language)
        values = {"service": self.config.service, "kind": t[f"name.{kind}"], **fields}
        outbox.add(
            to, t[f"mail.{name}.subject"].format(**values), t[f"mail.{name}.body"].format(**values)
        )

    def deliver(self, outbox: Outbox) -> None:
        for to, subject, body in outbox.messages:
            self.mailer.send(to, subject, body)

    def status_url(self, request_id: str) -> str:
        return f"{self.config.public_url.rstrip('/')}/privacy/requests/{request_id}"

    def _email_of(self, conn: Connection, request_id: str) -> str | None:
        emails = self.sealed_payload(conn, request_id)["identities"].get("email") or []
        return emails[0] if emails else None

    def subject_hash_for(self, identities: Mapping[str, Sequence[str]]) -> str:
        accounts = [
            a
            for kind in self.subject_kinds()
            for a in identities.get(kind, [])
            if SUBJECT_PATTERN.match(a)
        ]
        if accounts:
            return self._account_hash(accounts[0])
        kind = sorted(identities)[0]
        # the same person however they typed their address
        values = sorted(v.lower() if kind == "email" else v for v in identities[kind])
        return self.sealer.digest("subject", kind, values[0])

    # --- the lifecycle ---------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        identities: Mapping[str, Sequence[str]],
        *,
        channel: str,
        actor: str,
        language: str,
        params: Mapping[str, Any] | None = None,
        corrections: Mapping[str, str] | None = None,
        verified_by: str | None = None,
        identity_kinds: Sequence[str] | None = None,
    ) -> RequestView:
        """Record a request. Without ``verified_by`` it waits for the code e-mailed to its
        e-mail identity; with it (an authenticated account) it is verified at once."""
        if kind not in KINDS:
            raise RequestError(422, "Invalid request", f"kind: use one of {', '.join(KINDS)}")
        kinds = identity_kinds or (self.identity_kinds() if self.identity_kinds else None)
        clean = check_identities(identities, kinds or IDENTITY_KINDS)
        if verified_by is None and "email" not in clean:
            raise RequestError(
                422,
                "Invalid request",
                "identities.email: needed to send the verification code",
            )
        if kind in ("access", "portability") and "email" not in clean:
            raise RequestError(
                422,
                "Invalid request",
                "identities.email: needed to send the download link of the package",
            )
        if kind == "rectification" and not corrections:
            raise RequestError(
                422, "Invalid request", "corrections: say which data to correct, and to what"
            )
        if kind in ("restriction", "objection"):
            scope = str((params or {}).get("scope", "*"))
            if scope != "*" and scope not in self.config.purposes:
                raise RequestError(422, "Invalid request", "scope: not a purpose of the policy")
        allowed = self.correctable() if self.correctable else None
        for target, value in (corrections or {}).items():
            if allowed is not None and target not in allowed:
                raise RequestError(
                    422,
                    "Invalid request",
                    f"corrections.{target}: not a declared field a request may correct "
                    "(store.table.field with 'rectify: true' in the annotations; identities, "
                    "keys, references and records kept by law cannot be)",
                )
            if self.check_correction is not None:
                self.check_correction(target, value)
        request_id = uuid.uuid4().hex
        now = self.clock()
        sealed = self.sealer.seal(
            request_id, {"identities": clean, "corrections": dict(corrections or {})}
        )
        subject = self.subject_hash_for(clean)
        code = new_code() if verified_by is None else None

        def run(conn: Connection, outbox: Outbox) -> None:
            conn.execute(
                insert(rights_requests).values(
                    id=request_id,
                    kind=kind,
                    state="submitted",
                    subject_hash=subject,
                    sealed=sealed,
                    params=dict(params or {}),
                    language=language,
                    channel=channel,
                    received_at=now,
                    due=due_date(now),
                    updated_at=now,
                )
            )
            row = self.lock(conn, request_id)
            self.step(conn, row, "submitted", actor, f"{kind} request via {channel}")
            if code is not None:
                self._new_code(conn, row, code, clean["email"][0], outbox, sent=1)
            else:
                assert verified_by is not None
                self._verified(conn, row, verified_by, actor, outbox)

        self._commit(run, request_id, code_mail=code is not None)
        return self.get(request_id)

    def _new_code(
        self, conn: Connection, row: Row[Any], code: str, email: str, outbox: Outbox, sent: int
    ) -> None:
        minutes = int(self.config.code_ttl.total_seconds() // 60)
        values = {
            "code_hash": self.sealer.digest("code", row.id, code),
            "expires_at": self.clock() + self.config.code_ttl,
            "attempts": 0,
            "sent": sent,
        }
        if sent == 1:
            conn.execute(insert(rights_codes).values(request_id=row.id, **values))
        else:
            conn.execute(
                update(rights_codes).where(rights_codes.c.request_id == row.id).values(**values)
            )
        self.step(conn, row, "code_sent", "troth", f"verification code {sent} e-mailed")
        self.mail(
            outbox,
            email,
            row.language,
            "code",
            row.kind,
            code=f"{code[:4]} {code[4:]}",
            url=self.status_url(row.id),
            minutes=minutes,
        )

    def resend_code(self, request_id: str) -> RequestView:
        def run(conn: Connection, outbox: Outbox) -> None:
            row = self.lock(conn, request_id)
            if row.state != "submitted":
                raise RequestError(409, "Already verified", "request: it needs no code any more")
            codes = conn.execute(
                select(rights_codes.c.sent).where(rights_codes.c.request_id == request_id)
            ).scalar_one_or_none()
            if codes is None or codes >= MAX_CODES:
                raise RequestError(
                    429,
                    "Too many codes",
                    f"code: {MAX_CODES} codes were sent for this request; submit a new one",
                )
            email = self._email_of(conn, request_id)
            assert email is not None  # requests verified by code always have one
            self._new_code(conn, row, new_code(), email, outbox, sent=codes + 1)

        self._commit(run, request_id, code_mail=True)
        return self.get(request_id)

    def verify_code(self, request_id: str, code: str) -> RequestView:
        """Accept the e-mailed code: verified (and approved, if configured). A wrong code
        counts against the attempt limit, and the count is kept even though it raises."""
        typed = normalise_code(code)
        failure: list[RequestError] = []

        def run(conn: Connection, outbox: Outbox) -> None:
            row = self.lock(conn, request_id)
            if row.state != "submitted":
                raise RequestError(409, "Already verified", "request: it needs no code any more")
            found = conn.execute(
                select(rights_codes).where(rights_codes.c.request_id == request_id)
            ).first()
            if found is None:
                raise RequestError(409, "No code", "code: none was sent for this request")
            limit = self.config.code_attempts
            if found.attempts >= limit:
                raise RequestError(
                    429,
                    "Too many attempts",
                    f"code: {limit} wrong attempts; ask for a new code",
                )
            if aware(found.expires_at) <= self.clock():
                raise RequestError(410, "Code expired", "code: it has expired; ask for a new one")
            if not (
                typed.isdigit() and self.sealer.matches(found.code_hash, "code", row.id, typed)
            ):
                conn.execute(
                    update(rights_codes)
                    .where(rights_codes.c.request_id == request_id)
                    .values(attempts=rights_codes.c.attempts + 1)
                )
                left = limit - found.attempts - 1
                self.step(conn, row, "code_refused", "requester", f"{left} attempts left")
                failure.append(
                    RequestError(
                        422 if left else 429,
                        "Wrong code",
                        f"code: wrong; {left} attempt{'' if left == 1 else 's'} left"
                        if left
                        else "code: wrong, and that was the last attempt; ask for a new code",
                    )
                )
                return
            conn.execute(delete(rights_codes).where(rights_codes.c.request_id == request_id))
            self._verified(conn, row, "email_code", "requester", outbox)

        self._commit(run, request_id)
        if failure:
            raise failure[0]
        return self.get(request_id)

    def _verified(
        self, conn: Connection, row: Row[Any], verified_by: str, actor: str, outbox: Outbox
    ) -> None:
        self.update(conn, row.id, state="verified", verified_by=verified_by)
        self.step(conn, row, "verified", actor, f"identity verified by {verified_by}")
        if row.kind not in self.config.auto_approve:
            return
        identities = self.sealed_payload(conn, row.id)["identities"]
        if sum(len(v) for v in identities.values()) > 1 and not self._one_person(identities):
            self.step(
                conn,
                row,
                "approval_needed",
                "troth",
                "the identities given do not all lead to the same person; an officer decides",
            )
            return
        self._approve(conn, row, "troth", "approved automatically (configured kind)", outbox)

    def _one_person(self, identities: Mapping[str, Sequence[str]]) -> bool:
        if self.same_person is None:
            return False
        try:
            return self.same_person(identities)
        except TrothError:  # annotations or a datastore unusable: an officer decides
            return False

    def approve(self, request_id: str, actor: str) -> RequestView:
        def run(conn: Connection, outbox: Outbox) -> None:
            row = self.lock(conn, request_id)
            if row.state != "verified":
                raise RequestError(
                    409,
                    "Cannot approve",
                    f"request: it is {row.state}; only verified requests can be approved",
                )
            self._approve(conn, row, actor, "approved by a privacy officer", outbox)

        self._commit(run, request_id)
        return self.get(request_id)

    def _approve(
        self, conn: Connection, row: Row[Any], actor: str, note: str, outbox: Outbox
    ) -> None:
        self.update(conn, row.id, state="approved")
        self.step(conn, row, "approved", actor, note)
        self._queue(conn, row.id, actor)

    def _queue(self, conn: Connection, request_id: str, actor: str) -> None:
        if self.queue_execution is None:
            return
        view = view_of(self.lock(conn, request_id))
        try:
            with conn.begin_nested():
                self.queue_execution(conn, view, actor)
        except RequestError as exc:
            # approved stays approved; officers see why it could not run yet
            self.step(conn, view, "execution_blocked", "troth", str(exc))

    def execute(self, request_id: str, actor: str) -> RequestView:
        """Queue (again) the jobs of an approved request, or retry its failed jobs."""

        def run(conn: Connection, _outbox: Outbox) -> None:
            row = self.lock(conn, request_id)
            if row.state not in ("approved", "executing"):
                raise RequestError(
                    409,
                    "Cannot execute",
                    f"request: it is {row.state}; only approved requests are executed",
                )
            if self.queue_execution is None:
                raise RequestError(409, "Cannot execute", "request: no executor is configured")
            self.queue_execution(conn, view_of(row), actor)

        self._commit(run, request_id)
        return self.get(request_id)

    def extend(self, request_id: str, months: int, reason: str, actor: str) -> RequestView:
        """Extend the deadline by ``months`` (in total at most two, GDPR Art. 12(3))."""
        reason = reason.strip()
        if not reason or len(reason) > 1000 or CONTROL_CHARS.search(reason.replace("\n", " ")):
            raise RequestError(
                422, "Invalid request", "reason: say why (1-1000 characters, no control characters)"
            )
        if months not in (1, 2):
            raise RequestError(422, "Invalid request", "months: 1 or 2")

        def run(conn: Connection, outbox: Outbox) -> None:
            row = self.lock(conn, request_id)
            if row.state not in OPEN_STATES:
                raise RequestError(409, "Cannot extend", f"request: it is {row.state}")
            received = aware(row.received_at)
            if self.today() > row.due:
                raise RequestError(
                    409,
                    "Too late to extend",
                    f"months: an extension must be decided, and the person told, within the "
                    f"first month (by {row.due.isoformat()}; GDPR Art. 12(3))",
                )
            current = row.extended_due or row.due
            new_due = add_months(current, months)
            limit = due_date(received, MAX_EXTENSION_MONTHS)
            if new_due > limit:
                raise RequestError(
                    422,
                    "Extension too long",
                    f"months: the deadline can be extended by {MAX_EXTENSION_MONTHS} months in "
                    f"all, to {limit.isoformat()} at the latest",
                )
            self.update(conn, row.id, extended_due=new_due, extension_reason=reason)
            self.step(conn, row, "extended", actor, f"deadline now {new_due.isoformat()}: {reason}")
            email = self._email_of(conn, row.id)
            if email:
                self.mail(
                    outbox,
                    email,
                    row.language,
                    "extended",
                    row.kind,
                    day=new_due.isoformat(),
                    reason=reason,
                    url=self.status_url(row.id),
                )

        self._commit(run, request_id)
        return self.get(request_id)

    def reject(self, request_id: str, reason: str, actor: str) -> RequestView:
        reason = reason.strip()
        if not reason or len(reason) > 1000 or CONTROL_CHARS.search(reason.replace("\n", " ")):
            raise RequestError(
                422, "Invalid request", "reason: say why (1-1000 characters, no control characters)"
            )

        def run(conn: Connection, outbox: Outbox) -> None:
            row = self.lock(conn, request_id)
            if row.state not in ("submitted", "verified", "approved"):
                raise RequestError(409, "Cannot reject", f"request: it is {row.state}")
            now = self.clock()
            self.update(conn, row.id, state="rejected", reason=reason, completed_at=now)
            conn.execute(delete(rights_codes).where(rights_codes.c.request_id == row.id))
            self.step(conn, row, "rejected", actor, reason)
            email = self._email_of(conn, row.id)
            if email:
                self.mail(outbox, email, row.language, "rejected", row.kind, reason=reason)

        self._commit(run, request_id)
        return self.get(request_id)

    def forget(self, keep: dt.timedelta, limit: int = 500) -> int:
        """Drop the sealed identities (and corrections) of requests closed more than
        ``keep`` ago: the request, its steps and its audit entries stay as the record of
        what was asked and done; who asked is no longer known. Returns how many."""
        cutoff = self.clock() - keep
        with reading(self.engine).connect() as conn:
            due = list(
                conn.execute(
                    select(rights_requests.c.id)
                    .where(
                        rights_requests.c.state.in_(("completed", "rejected")),
                        rights_requests.c.completed_at < cutoff,
                        func.coalesce(rights_requests.c.verified_by, "") != "forgotten",
                    )
                    .limit(limit)
                ).scalars()
            )

        def run(conn: Connection, _outbox: Outbox) -> None:
            for request_id in due:
                row = self.lock(conn, request_id)
                self.update(
                    conn,
                    request_id,
                    sealed=self.sealer.seal(request_id, {"identities": {}, "corrections": {}}),
                    found=None,
                    verified_by="forgotten",
                )
                self.step(conn, row, "forgotten", "troth", "identities dropped (retention)")

        if due:
            self._commit(run)
        return len(due)
