"""`troth rights ...`: data subject requests from the command line, and request workers.

Every command reads the policy (``--policy`` or ``$TROTH_POLICY``) and the database
(``--database-url`` or ``$TROTH_DATABASE_URL``); the datasets file is ``$TROTH_DATASETS``,
else ``datasets.yaml`` beside the policy. Exit codes: 0 done; 1 refused (wrong state, wrong
code, erasure not proven); 2 unusable input (policy, database, arguments).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from troth.config import Settings
from troth.errors import TrothError

if TYPE_CHECKING:
    from troth.rights.requests_model import RequestView
    from troth.rights.requests_service import Rights

__all__ = ["register"]

PolicyOpt = Annotated[
    Path,
    typer.Option("--policy", envvar="TROTH_POLICY", help="policy.yaml (or $TROTH_POLICY)"),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="Default: $TROTH_DATABASE_URL or sqlite:///troth.db"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
RequestArg = Annotated[str, typer.Argument(help="The request's reference (32 hex digits)")]
ACTOR = "cli"


def _open(policy: Path, database_url: str | None) -> Rights:
    from troth.policy.loader import load_policy
    from troth.rights.requests_service import datasets_path, open_rights
    from troth.web.services import Services

    settings = Settings(database_url=database_url) if database_url else Settings()
    try:
        loaded = load_policy(policy)
        services = Services.open(loaded.policy, settings)
    except TrothError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return open_rights(
        settings,
        loaded.policy,
        services.engine,
        services.audit,
        services.vault,
        services.ledger,
        datasets=datasets_path(settings, policy),
    )


def _refused(exc: TrothError) -> typer.Exit:
    typer.echo(f"troth: {exc}", err=True)
    # unusable input (a malformed or invalid argument) is 2; a refusal (wrong state, wrong
    # code, an extension too long) is 1
    unusable = getattr(exc, "status", 0) == 400 or getattr(exc, "title", "") == "Invalid request"
    return typer.Exit(2 if unusable else 1)


def _show(rights: Rights, view: RequestView, as_json: bool) -> None:
    today = rights.desk.today()
    if as_json:
        typer.echo(json.dumps(view.as_dict(today), indent=2))
        return
    flag = " OVERDUE" if view.overdue(today) else ""
    typer.echo(f"{view.id}  {view.kind}  {view.state}  deadline {view.deadline}{flag}")
    if view.extended_due:
        typer.echo(f"  extended from {view.due}: {view.extension_reason}")
    if view.reason:
        typer.echo(f"  rejected: {view.reason}")
    for step in view.steps:
        typer.echo(f"  {step.at:%Y-%m-%d %H:%M:%S}  {step.step:<18} {step.actor:<24} {step.note}")


def _pairs(values: list[str], option: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            typer.echo(f"{option}: expected KIND=VALUE", err=True)
            raise typer.Exit(2)
        out.setdefault(key, []).append(value)
    return out


def register(app: typer.Typer) -> None:
    """Add this capability's commands and command groups to ``app``."""
    rights_app = typer.Typer(help="Data subject requests and their workers.", no_args_is_help=True)
    app.add_typer(rights_app, name="rights")

    @rights_app.command("request")
    def request_cmd(
        kind: Annotated[str, typer.Argument(help="access, portability, erasure, ...")],
        policy: PolicyOpt,
        email: Annotated[str | None, typer.Option(help="Sends the verification code here")] = None,
        identity: Annotated[
            list[str] | None,
            typer.Option(help="KIND=VALUE, e.g. account_id=42 (repeatable)"),
        ] = None,
        verified: Annotated[
            str | None,
            typer.Option(help="How the officer verified the identity (no code is sent)"),
        ] = None,
        scope: Annotated[str, typer.Option(help="restriction/objection: a purpose or *")] = "*",
        correct: Annotated[
            list[str] | None,
            typer.Option(help="rectification: store.table.field=VALUE (repeatable)"),
        ] = None,
        database_url: DatabaseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Record a request. With --verified it is verified at once; else a code is e-mailed."""
        identities = _pairs(identity or [], "--identity")
        if email:
            identities.setdefault("email", []).append(email)
        corrections = {k: v[-1] for k, v in _pairs(correct or [], "--correct").items()}
        rights = _open(policy, database_url)
        try:
            view = rights.desk.submit(
                kind,
                identities,
                channel="cli",
                actor=ACTOR,
                language=rights.executor.policy.default_language,
                params={"scope": scope},
                corrections=corrections,
                verified_by=f"officer: {verified}" if verified else None,
            )
        except TrothError as exc:
            raise _refused(exc) from None
        _show(rights, view, as_json)

    @rights_app.command("list")
    def list_cmd(
        policy: PolicyOpt,
        state: Annotated[str | None, typer.Option(help="open, or a state")] = None,
        database_url: DatabaseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Requests by deadline (earliest first); overdue ones are flagged."""
        rights = _open(policy, database_url)
        try:
            views = rights.desk.list_requests(state)
        except TrothError as exc:
            raise _refused(exc) from None
        today = rights.desk.today()
        if as_json:
            typer.echo(json.dumps([v.as_dict(today) for v in views], indent=2))
            return
        for v in views:
            flag = " OVERDUE" if v.overdue(today) else ""
            typer.echo(f"{v.id}  {v.kind:<13} {v.state:<10} deadline {v.deadline}{flag}")

    def decision(name: str, run: Any, help_text: str) -> None:
        def command(
            request_id: RequestArg,
            policy: PolicyOpt,
            database_url: DatabaseOpt = None,
            as_json: JsonOpt = False,
        ) -> None:
            rights = _open(policy, database_url)
            try:
                view = run(rights, request_id)
            except TrothError as exc:
                raise _refused(exc) from None
            _show(rights, view, as_json)

        command.__doc__ = help_text
        rights_app.command(name)(command)

    decision("show", lambda r, i: r.desk.get(i), "A request, with its steps.")
    decision("approve", lambda r, i: r.desk.approve(i, ACTOR), "Approve a verified request.")
    decision(
        "execute", lambda r, i: r.desk.execute(i, ACTOR), "Queue its jobs (or retry failed ones)."
    )
    decision("resend-code", lambda r, i: r.desk.resend_code(i), "E-mail a new code.")

    @rights_app.command("verify")
    def verify_cmd(
        request_id: RequestArg,
        code: Annotated[str, typer.Argument(help="The code from the e-mail")],
        policy: PolicyOpt,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Enter the code the requester received."""
        rights = _open(policy, database_url)
        try:
            view = rights.desk.verify_code(request_id, code)
        except TrothError as exc:
            raise _refused(exc) from None
        _show(rights, view, False)

    @rights_app.command("extend")
    def extend_cmd(
        request_id: RequestArg,
        policy: PolicyOpt,
        reason: Annotated[str, typer.Option(help="Why more time is needed (told to them)")],
        months: Annotated[int, typer.Option(min=1, max=2)] = 1,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Extend the deadline (two months at most in all, GDPR Art. 12(3))."""
        rights = _open(policy, database_url)
        try:
            view = rights.desk.extend(request_id, months, reason, ACTOR)
        except TrothError as exc:
            raise _refused(exc) from None
        _show(rights, view, False)

    @rights_app.command("reject")
    def reject_cmd(
        request_id: RequestArg,
        policy: PolicyOpt,
        reason: Annotated[str, typer.Option(help="Why (told to them)")],
        database_url: DatabaseOpt = None,
    ) -> None:
        """Reject a request, with a reason."""
        rights = _open(policy, database_url)
        try:
            view = rights.desk.reject(request_id, reason, ACTOR)
        except TrothError as exc:
            raise _refused(exc) from None
        _show(rights, view, False)

    @rights_app.command("work")
    def work_cmd(
        policy: PolicyOpt,
        once: Annotated[bool, typer.Option(help="Run the jobs there are now, then stop")] = False,
        idle: Annotated[float, typer.Option(help="Seconds to wait when there is no job")] = 1.0,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Run request jobs (start as many as you like, on any hosts sharing the database)."""
        rights = _open(policy, database_url)
        worker = rights.worker()
        done = 0
        try:
            if once:
                while worker.run_once() is not None:
                    done += 1
                typer.echo(f"troth: {done} job(s) run")
                return
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            typer.echo(f"troth: request worker {worker.owner} started")
            while not stop.is_set():
                if rights.housekeeping_due():
                    rights.housekeeping()
                if worker.run_once() is None:
                    stop.wait(idle)
        finally:
            rights.executor.close()
            rights.engine.dispose()

    @rights_app.command("purge")
    def purge_cmd(policy: PolicyOpt, database_url: DatabaseOpt = None) -> None:
        """Empty expired download packages and drop the identities of requests closed more
        than TROTH_RIGHTS_KEEP_DAYS ago (workers and `troth serve` also do this)."""
        rights = _open(policy, database_url)
        try:
            emptied, forgotten = rights.housekeeping()
        except TrothError as exc:
            raise _refused(exc) from None
        finally:
            rights.engine.dispose()
        typer.echo(
            f"troth: {emptied} expired package(s) emptied; identities of {forgotten} closed "
            "request(s) dropped"
        )

    @rights_app.command("verify-erasure")
    def verify_erasure_cmd(
        request_id: RequestArg,
        policy: PolicyOpt,
        database_url: DatabaseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Re-query every declared store for every identity the request found. Exit 0 when
        no row remains; 1 otherwise; 2 when a datastore cannot be reached. Rows kept with a
        reason are listed apart."""
        rights = _open(policy, database_url)
        try:
            check = rights.executor.verify_erasure(request_id, ACTOR)
        except TrothError as exc:
            if getattr(exc, "status", 0) == 503:  # not a verdict: exit 2, not 1 (not erased)
                typer.echo(f"troth: {exc}", err=True)
                raise typer.Exit(2) from None
            raise _refused(exc) from None
        finally:
            rights.executor.close()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "proven": check.proven,
                        "remaining": check.remaining,
                        "kept": check.kept,
                        "reasons": check.reasons,
                    },
                    indent=2,
                )
            )
        else:
            for table, n in sorted(check.remaining.items()):
                typer.echo(f"{table}: {n} row(s) remain")
            for table, n in sorted(check.kept.items()):
                typer.echo(f"{table}: {n} row(s) kept: {'; '.join(check.reasons.get(table, []))}")
            left = sum(check.remaining.values())
            verdict = "erasure proven" if check.proven else f"NOT ERASED: {left} row(s) remain"
            typer.echo(f"{verdict} ({len(check.remaining)} declared tables)")
        if not check.proven:
            raise typer.Exit(1)
