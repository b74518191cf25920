"""`troth export ...`, `troth transfers ...`, `troth disclosures ...`, `troth legal ...`.

Exports and transfer checks read only the policy. Disclosures and legal requests also use
the database (``--database-url`` or ``$TROTH_DATABASE_URL``); their commands take the policy
as ``--policy`` (or ``$TROTH_POLICY``). Subject identifiers are read from standard input,
one per line, never from the command line (where process lists and shell histories would
show them). Exit codes: 0 done; 1 refused or not valid; 2 unusable input.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from troth.config import Settings
from troth.errors import PurposeDenied, TrothError

if TYPE_CHECKING:
    from troth.policy.model import Policy
    from troth.transfers.disclosures import DisclosureLog
    from troth.transfers.legal import LegalRequests

__all__ = ["register"]

PolicyArg = Annotated[Path, typer.Argument(help="policy.yaml")]
PolicyOpt = Annotated[
    Path, typer.Option("--policy", envvar="TROTH_POLICY", help="policy.yaml (or $TROTH_POLICY)")
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="Default: $TROTH_DATABASE_URL or sqlite:///troth.db"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout)")]
SubjectsOpt = Annotated[
    bool, typer.Option("--subjects-stdin", help="Read subject ids from stdin, one per line")
]
SubjectOpt = Annotated[
    list[str] | None,
    typer.Option("--subject", help="Data subjects who use the app (repeatable; default: all)"),
]
ACTOR = "cli"


class LayoutChoice(enum.StrEnum):
    ico = "ico"
    cnil = "cnil"


class ViewChoice(enum.StrEnum):
    controller = "controller"
    processor = "processor"


class FileFormat(enum.StrEnum):
    csv = "csv"
    xlsx = "xlsx"


class ByChoice(enum.StrEnum):
    recipient = "recipient"
    country = "country"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"troth: {message}", err=True)
    return typer.Exit(code)


def _policy(path: Path) -> Policy:
    from troth.policy.loader import load_policy

    try:
        return load_policy(path).policy
    except TrothError as exc:
        raise _fail(str(exc)) from None


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise _fail(f"{output}: cannot write: {exc.strerror}") from None
    typer.echo(str(output))


def _json(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()


def _open(policy: Path, database_url: str | None) -> tuple[DisclosureLog, LegalRequests]:
    """The disclosure log and legal requests on the database, opened from the capabilities
    and the store directly (the CLI does not go through the web layer): the schema is
    brought up to date, keys come from ``TROTH_KEYS_DIR`` (or ``TROTH_KEK``/``TROTH_KEK_FILE``)
    and audit heads go to ``TROTH_AUDIT_HEADS``, as for ``troth serve``."""
    from troth.audit.log import AuditLog
    from troth.keyring.subjects import SubjectHasher
    from troth.policy.compiled import compile_policy
    from troth.store.engine import make_engine
    from troth.store.migrate import upgrade
    from troth.store.secrets import Secrets
    from troth.transfers.disclosures import DisclosureLog
    from troth.transfers.legal import LegalRequests
    from troth.vault.vault import Vault

    settings = Settings(database_url=database_url) if database_url else Settings()
    loaded = _policy(policy)
    try:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        secrets = Secrets(settings.keys_dir)
        from troth.keyring.open import open_keyring

        keyring = open_keyring(settings)
        audit = AuditLog(keyring, secrets.signing_key("audit"), settings.audit_heads)
        hasher = SubjectHasher(secrets.key("subject"))
    except TrothError as exc:
        raise _fail(str(exc)) from None
    # These commands record limits and disclosures but never read vault values, so no
    # consent lookup is needed; were one made, it would find no consent (fail closed).
    vault = Vault(
        engine, compile_policy(loaded), hasher, keyring, audit, lambda _s: set(), settings.erasures
    )
    log = DisclosureLog(engine, loaded, hasher, audit, vault)
    return log, LegalRequests(engine, loaded, hasher, audit, vault, log)


def _subjects(enabled: bool) -> list[str]:
    if not enabled:
        return []
    return [line.strip() for line in sys.stdin if line.strip()]


def _refused(exc: TrothError) -> typer.Exit:
    rule = getattr(exc, "rule", "")
    return _fail(f"{rule}: {exc}" if rule else str(exc), 1)


def register(app: typer.Typer) -> None:
    """Add this capability's commands and command groups to ``app``."""
    export = typer.Typer(help="Exports derived from the policy.", no_args_is_help=True)
    transfers = typer.Typer(help="Recipients and international transfers.", no_args_is_help=True)
    disclosures = typer.Typer(help="The disclosure log.", no_args_is_help=True)
    legal = typer.Typer(help="Requests from authorities and legal holds.", no_args_is_help=True)
    app.add_typer(export, name="export")
    app.add_typer(transfers, name="transfers")
    app.add_typer(disclosures, name="disclosures")
    app.add_typer(legal, name="legal")

    # --- exports ------------------------------------------------------------------------

    @export.command("ropa")
    def export_ropa(
        policy: PolicyArg,
        layout: Annotated[LayoutChoice, typer.Option(help="ico or cnil")] = LayoutChoice.ico,
        view: Annotated[
            ViewChoice, typer.Option(help="controller (Art. 30(1)) or processor (Art. 30(2))")
        ] = ViewChoice.controller,
        fmt: Annotated[FileFormat, typer.Option("--format", "-f")] = FileFormat.csv,
        locale: Annotated[str | None, typer.Option("--locale", "-l")] = None,
        output: OutOpt = None,
    ) -> None:
        """The record of processing activities (GDPR Art. 30) as CSV or XLSX."""
        from troth.render.exports import ropa_csv, ropa_xlsx

        loaded = _policy(policy)
        make = ropa_csv if fmt is FileFormat.csv else ropa_xlsx
        if fmt is FileFormat.xlsx and output is None:
            raise _fail("--output: XLSX is binary; name a file")
        try:
            data = make(loaded, layout.value, view.value, locale)
        except TrothError as exc:
            raise _fail(str(exc)) from None
        _write(data, output)

    def subjects_of(loaded: Policy, subject: list[str] | None) -> list[str]:
        declared = [s.id for s in loaded.subjects]
        chosen = subject or declared
        unknown = [s for s in chosen if s not in declared]
        if unknown:
            raise _fail(f"--subject: {', '.join(unknown)} is not declared ({', '.join(declared)})")
        return chosen

    @export.command("app-store")
    def export_app_store(
        policy: PolicyArg, subject: SubjectOpt = None, output: OutOpt = None
    ) -> None:
        """Answers for the App Store privacy label, as JSON."""
        from troth.render.exports import app_store_label

        loaded = _policy(policy)
        _write(_json(app_store_label(loaded, subjects_of(loaded, subject))), output)

    @export.command("play-data-safety")
    def export_play(policy: PolicyArg, subject: SubjectOpt = None, output: OutOpt = None) -> None:
        """Answers for Google Play's data safety form, as JSON."""
        from troth.render.exports import play_data_safety

        loaded = _policy(policy)
        _write(_json(play_data_safety(loaded, subjects_of(loaded, subject))), output)

    # --- transfers ----------------------------------------------------------------------

    @transfers.command("check")
    def transfers_check(
        policy: PolicyArg,
        on: Annotated[
            dt.datetime | None,
            typer.Option(formats=["%Y-%m-%d"], help="Date to check (default: today)"),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Whether every recipient's transfer mechanism is valid on a date. Exit 1 if not."""
        from troth.transfers.register import transfer_register

        day = on.date() if on else dt.date.today()
        rows = transfer_register(_policy(policy), day)
        ok = all(r.ok for r in rows)
        if as_json:
            typer.echo(
                json.dumps(
                    {"date": day.isoformat(), "ok": ok, "recipients": [r.as_dict() for r in rows]},
                    ensure_ascii=False,
                    indent=2,
                )
            )
        else:
            for r in rows:
                state = "ok " if r.ok else "BAD"
                where = ", ".join(r.transfer_countries) or "no transfer"
                mechanism = f"{r.mechanism_label} {r.detail}".strip()
                typer.echo(f"{state} {r.recipient:<20} {where:<12} {mechanism}")
                for problem in r.problems:
                    typer.echo(f"      {problem}")
            typer.echo(f"{day}: {'every transfer is covered' if ok else 'transfers not covered'}")
        raise typer.Exit(0 if ok else 1)

    @transfers.command("list")
    def transfers_list(policy: PolicyArg) -> None:
        """Recipients by country."""
        from troth.transfers.register import by_country, transfer_register

        for c in by_country(transfer_register(_policy(policy), dt.date.today())):
            kind = "transfer" if c.transfer else "inside"
            typer.echo(f"{c.country}  {c.name:<32} {kind:<8} {', '.join(c.recipients)}")

    # --- disclosures --------------------------------------------------------------------

    @disclosures.command("record")
    def disclosures_record(
        policy: PolicyOpt,
        recipient: Annotated[str, typer.Option(help="A declared recipient id")],
        purpose: Annotated[str, typer.Option(help="The purpose served")],
        category: Annotated[list[str], typer.Option(help="Data category id (repeatable)")],
        country: Annotated[str | None, typer.Option(help="Destination country")] = None,
        subjects_stdin: SubjectsOpt = False,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Record a disclosure (one per subject read from stdin, or one without subject)."""
        log, _ = _open(policy, database_url)
        subjects: list[str | None] = list(_subjects(subjects_stdin)) or [None]
        try:
            for subject in subjects:
                found = log.record(
                    recipient=recipient,
                    purpose=purpose,
                    categories=category,
                    actor=ACTOR,
                    subject=subject,
                    country=country.upper() if country else None,
                )
                typer.echo(f"disclosure {found.id}: {found.recipient} {found.country}")
        except TrothError as exc:
            raise _refused(exc) from None

    @disclosures.command("report")
    def disclosures_report(
        policy: PolicyOpt,
        by: Annotated[ByChoice, typer.Option(help="recipient or country")] = ByChoice.recipient,
        since: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
        until: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
        database_url: DatabaseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Disclosures per recipient or per country."""
        log, _ = _open(policy, database_url)
        rows = log.report(
            by.value,
            since=since.date() if since else None,
            until=until.date() if until else None,
        )
        if as_json:
            typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
            return
        for r in rows:
            typer.echo(
                f"{r.key:<20} {r.disclosures:>6} disclosures {r.subjects:>6} subjects  "
                f"{', '.join(r.categories)}"
            )

    # --- legal requests -----------------------------------------------------------------

    @legal.command("add")
    def legal_add(
        policy: PolicyOpt,
        authority: Annotated[str, typer.Option()],
        country: Annotated[str, typer.Option(help="The authority's country")],
        reference: Annotated[str, typer.Option(help="The authority's file reference")],
        received: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"])],
        decision: Annotated[str, typer.Option(help="pending, disclosed, partial or refused")],
        legal_basis: Annotated[str, typer.Option(help="The law that requires or allows it")],
        category: Annotated[
            list[str] | None, typer.Option(help="Category disclosed (repeatable)")
        ] = None,
        recipient: Annotated[str | None, typer.Option(help="The authorities recipient")] = None,
        purpose: Annotated[str | None, typer.Option()] = None,
        note: Annotated[str, typer.Option()] = "",
        subjects_stdin: SubjectsOpt = False,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Log a request from an authority (subjects from stdin are stored hashed)."""
        from troth.transfers.legal import DECISIONS

        if decision not in DECISIONS:
            raise _fail(f"--decision: expected one of {', '.join(DECISIONS)}")
        _, requests = _open(policy, database_url)
        try:
            found = requests.add(
                authority=authority,
                country=country,
                reference=reference,
                received=received.date(),
                decision=decision,  # type: ignore[arg-type]
                legal_basis=legal_basis,
                categories=category or [],
                subjects=_subjects(subjects_stdin),
                actor=ACTOR,
                recipient=recipient,
                purpose=purpose,
                note=note,
            )
        except PurposeDenied as exc:
            raise _refused(exc) from None
        except TrothError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"legal request {found.id}: {found.subjects} subject(s)")

    @legal.command("hold")
    def legal_hold(
        policy: PolicyOpt,
        request_id: Annotated[int, typer.Argument(help="The legal request")],
        reason: Annotated[str, typer.Option()],
        scope: Annotated[str, typer.Option(help="'*' or a data category id")] = "*",
        database_url: DatabaseOpt = None,
    ) -> None:
        """Put every subject of a request under a legal hold (blocks erasure)."""
        _, requests = _open(policy, database_url)
        try:
            holds = requests.hold(request_id, scope=scope, reason=reason, actor=ACTOR)
        except PurposeDenied as exc:
            raise _refused(exc) from None
        except TrothError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"{len(holds)} hold(s): {', '.join(str(h.id) for h in holds)}")

    @legal.command("release")
    def legal_release(
        policy: PolicyOpt,
        hold_id: Annotated[int, typer.Argument(help="The hold")],
        reason: Annotated[str, typer.Option(help="Why the hold ends")],
        database_url: DatabaseOpt = None,
    ) -> None:
        """Release a legal hold, recording why."""
        _, requests = _open(policy, database_url)
        try:
            hold = requests.release(hold_id, reason=reason, actor=ACTOR)
        except PurposeDenied as exc:
            raise _refused(exc) from None
        except TrothError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"hold {hold.id} released")

    @legal.command("list")
    def legal_list(
        policy: PolicyOpt, database_url: DatabaseOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Requests from authorities with their holds."""
        _, requests = _open(policy, database_url)
        found = requests.recent()
        if as_json:
            typer.echo(json.dumps([r.as_dict() for r in found], ensure_ascii=False, indent=2))
            return
        for r in found:
            typer.echo(
                f"{r.id:>4}  {r.received}  {r.authority} ({r.country}) {r.reference}  "
                f"{r.decision}  {r.subjects} subject(s)"
            )
            for h in r.holds:
                state = "active" if h.active else f"released: {h.release_reason}"
                typer.echo(f"      hold {h.id} [{h.scope}] {h.reason} — {state}")
