"""The ``troth`` command: check, render, diff and serve a policy.

Exit codes: 0 clean; 1 the policy has lint errors (check) or material changes (diff);
2 a file could not be used. A user's mistake never ends in a traceback.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from troth import cli_rights, cli_scan, cli_transfers
from troth.config import Settings
from troth.errors import TrothError
from troth.policy.diff import diff_policies
from troth.policy.lint import Finding, lint
from troth.policy.loader import LoadedPolicy, load_policy
from troth.render.check import reference_findings
from troth.render.i18n import available_locales
from troth.render.output import write_bundle

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from troth.audit.log import AuditLog

__all__ = ["app", "main"]

app = typer.Typer(
    name="troth",
    help="Make a privacy policy true in running software.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class RenderFormat(StrEnum):
    html = "html"
    md = "md"
    json = "json"


PolicyArg = Annotated[Path, typer.Argument(help="Path to policy.yaml", show_default=False)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fail(exc: TrothError, code: int = 2) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(code)


def _load(path: Path) -> LoadedPolicy:
    try:
        return load_policy(path)
    except TrothError as exc:
        raise _fail(exc) from None


@app.command()
def check(
    policy: PolicyArg,
    output: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="text or json")
    ] = OutputFormat.text,
    datasets: Annotated[
        Path | None,
        typer.Option(
            "--datasets",
            help="Dataset annotations to validate (default: datasets.yaml beside the policy)",
        ),
    ] = None,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect",
            help="Also check the annotations against the live databases: missing tables "
            "and columns, unindexed identity and reference columns",
        ),
    ] = False,
) -> None:
    """Validate and lint a policy (and its dataset annotations). Exit 0 clean, 1 lint
    errors, 2 invalid file."""
    loaded = _load(policy)
    findings: list[Finding] = lint(loaded, available_locales()) + reference_findings(loaded)
    annotations = datasets or (policy.parent / "datasets.yaml")
    summary = ""
    if datasets is not None or annotations.is_file() or connect:
        from troth.policy.datasets import load_datasets

        try:
            declared = load_datasets(annotations, loaded.policy)
        except TrothError as exc:
            raise _fail(exc) from None
        tables = sum(len(s.tables) for s in declared.datastores)
        summary = (
            f"\n{annotations}: {_count(len(declared.datastores), 'datastore')}, "
            f"{_count(tables, 'table')}"
        )
        if connect:
            from troth.rights.schema_check import check_schemas

            schema = check_schemas(declared)
            findings += schema
            summary += f", checked against the live schema ({_count(len(schema), 'finding')})"
    errors = [f for f in findings if f.severity == "error"]
    if output is OutputFormat.json:
        typer.echo(
            json.dumps(
                {
                    "file": str(policy),
                    "version": loaded.policy.version,
                    "valid": True,
                    "errors": len(errors),
                    "warnings": len(findings) - len(errors),
                    "findings": [f.as_dict() for f in findings],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for finding in findings:
            typer.echo(str(finding))
        p = loaded.policy
        typer.echo(
            f"{policy}: {p.service} policy {p.version}: {len(p.purposes)} purposes, "
            f"{sum(len(x.activities) for x in p.purposes)} activities, "
            f"{len(p.tracking)} tracking technologies, {len(p.recipients)} recipients — "
            f"{_count(len(errors), 'error')}, {_count(len(findings) - len(errors), 'warning')}"
            + summary
        )
    raise typer.Exit(1 if errors else 0)


@app.command()
def render(
    policy: PolicyArg,
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Directory to write to")],
    fmt: Annotated[RenderFormat, typer.Option("--format", "-f")] = RenderFormat.html,
    locale: Annotated[
        list[str] | None,
        typer.Option("--locale", "-l", help="Locale to render; repeat for several (default: all)"),
    ] = None,
) -> None:
    """Render the privacy policy, its tables and the record of processing."""
    loaded = _load(policy)
    locales = locale or loaded.policy.languages
    unknown = [x for x in locales if x not in loaded.policy.languages]
    if unknown:
        typer.echo(
            f"{policy}: the policy has no language {', '.join(unknown)}; it declares "
            + ", ".join(loaded.policy.languages),
            err=True,
        )
        raise typer.Exit(2)
    try:
        written = write_bundle(loaded.policy, fmt.value, locales, output_dir)
    except TrothError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        typer.echo(f"{output_dir}: cannot write: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(str(path))


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="The published version")],
    new: Annotated[Path, typer.Argument(help="The proposed version")],
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
) -> None:
    """Semantic diff of two policy versions. Exit 1 when a change is material."""
    result = diff_policies(_load(old).policy, _load(new).policy)
    if output is OutputFormat.json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(f"{old} ({result.old_version}) -> {new} ({result.new_version})")
        for c in result.changes:
            flag = "MATERIAL" if c.material else "minor   "
            again = f"  [ask again: {', '.join(c.reconsent)}]" if c.reconsent else ""
            typer.echo(f"  {flag} {c.kind:<9} {c.entity:<17} {c.id}: {c.detail}{again}")
        if not result.changes:
            typer.echo("  no changes")
        typer.echo(
            f"{len(result.material)} material change(s); ask again for: "
            + (", ".join(result.reconsent) or "nothing")
        )
    raise typer.Exit(1 if result.material else 0)


DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="Default: $TROTH_DATABASE_URL or sqlite:///troth.db"),
]


def _settings(database_url: str | None) -> Settings:
    return Settings(database_url=database_url) if database_url else Settings()


@app.command()
def serve(
    policy: PolicyArg,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    database_url: DatabaseOpt = None,
) -> None:
    """Serve the policy pages, the consent banner and API, and the preference centre."""
    import os

    import uvicorn

    from troth.rights.requests_service import datasets_path
    from troth.web.app import create_app

    loaded = _load(policy)
    settings = _settings(database_url)
    if settings.datasets is None:
        settings.datasets = datasets_path(settings, policy)  # datasets.yaml beside the policy
    try:
        application = create_app(loaded.policy, settings)
    except TrothError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"troth: serving {loaded.policy.service} policy {loaded.policy.version} on "
        f"http://{host}:{port}/ ({workers} worker{'s' if workers > 1 else ''})"
    )
    if workers == 1:
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
        return
    os.environ["TROTH_POLICY"] = str(policy)
    os.environ["TROTH_DATABASE_URL"] = settings.database_url
    if settings.datasets is not None:
        os.environ["TROTH_DATASETS"] = str(settings.datasets)
    uvicorn.run(
        "troth.web.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


db_app = typer.Typer(help="The database troth keeps its records in.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOpt = None) -> None:
    """Create or migrate troth's tables to the newest schema."""
    from troth.store.engine import make_engine
    from troth.store.migrate import upgrade

    settings = _settings(database_url)
    try:
        engine = make_engine(settings.database_url)
        revision = upgrade(engine)
    except TrothError as exc:
        raise _fail(exc) from None
    engine.dispose()
    typer.echo(f"database is at revision {revision}")


consent_app = typer.Typer(help="Consent records and receipts.", no_args_is_help=True)
app.add_typer(consent_app, name="consent")


@consent_app.command("verify-receipt")
def verify_receipt_cmd(
    receipt: Annotated[Path, typer.Argument(help="A downloaded consent receipt (JSON)")],
    public_key: Annotated[
        Path | None,
        typer.Option(help="PEM public key; default: the key in $TROTH_KEYS_DIR"),
    ] = None,
) -> None:
    """Check a consent receipt's signature. Exit 0 valid, 1 invalid, 2 unreadable."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from troth.consent.receipts import verify_receipt
    from troth.store.secrets import Secrets

    try:
        data = json.loads(receipt.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"{receipt}: cannot read: {exc}", err=True)
        raise typer.Exit(2) from None
    except json.JSONDecodeError as exc:
        typer.echo(f"{receipt}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}", err=True)
        raise typer.Exit(2) from None
    try:
        if public_key is not None:
            key = serialization.load_pem_public_key(public_key.read_bytes())
            if not isinstance(key, Ed25519PublicKey):
                typer.echo(f"{public_key}: not an Ed25519 public key", err=True)
                raise typer.Exit(2)
        else:
            keys_dir = Settings().keys_dir
            private = Secrets(keys_dir).existing_signing_key("receipt")
            if private is None:
                typer.echo(
                    f"no receipt key in {keys_dir}; pass --public-key (the server publishes it "
                    "at /.well-known/troth-receipt-key.pem)",
                    err=True,
                )
                raise typer.Exit(2)
            key = private.public_key()
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot load the public key: {exc}", err=True)
        raise typer.Exit(2) from None
    except TrothError as exc:
        raise _fail(exc) from None
    try:
        payload = verify_receipt(data, key)
    except TrothError as exc:
        typer.echo(f"{receipt}: INVALID: {exc}", err=True)
        raise typer.Exit(1) from None
    choices = ", ".join(f"{k}={v}" for k, v in payload["choices"].items())
    typer.echo(
        f"{receipt}: valid receipt {payload['receipt_id']} signed by key {payload['key_id']}: "
        f"{choices} ({payload['method']}, policy {payload['policy_version']}, "
        f"{payload['timestamp']})"
    )


def _audit_log(settings: Settings) -> tuple[Engine, AuditLog]:
    from troth.audit.log import AuditLog
    from troth.keyring.open import open_keyring
    from troth.store.engine import make_engine
    from troth.store.migrate import check_current
    from troth.store.secrets import Secrets

    engine = make_engine(settings.database_url)
    check_current(engine)
    log = AuditLog(
        open_keyring(settings),
        Secrets(settings.keys_dir).signing_key("audit"),
        settings.audit_heads,
    )
    return engine, log


audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    database_url: DatabaseOpt = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
) -> None:
    """Check every entry against the signed tree heads. Exit 0 intact, 1 tampered, 2 error."""
    settings = _settings(database_url)
    try:
        engine, log = _audit_log(settings)
        report = log.verify(engine)
    except TrothError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        note = (
            f", {report.recovered_heads} recovered after a crash" if report.recovered_heads else ""
        )
        typer.echo(
            f"audit log intact: {report.size} entries, {report.heads} signed heads{note} "
            f"({settings.audit_heads})"
        )
    else:
        typer.echo(
            f"audit log TAMPERED: first bad index {report.first_bad_index}: {report.problem}",
            err=True,
        )
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("prove")
def audit_prove(
    entry: Annotated[
        int, typer.Argument(min=0, help="The entry's index (a receipt's audit_index)")
    ],
    database_url: DatabaseOpt = None,
) -> None:
    """Print an inclusion proof for one entry (RFC 6962 audit path and signed tree head)."""
    settings = _settings(database_url)
    try:
        engine, log = _audit_log(settings)
        proof = log.prove(engine, entry)
    except TrothError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(proof, indent=2, ensure_ascii=False))


@audit_app.command("recover")
def audit_recover(database_url: DatabaseOpt = None) -> None:
    """Sign entries a crash left without a signed head (marked as recovered)."""
    settings = _settings(database_url)
    try:
        engine, log = _audit_log(settings)
        head = log.recover(engine)
    except TrothError as exc:
        raise _fail(exc) from None
    typer.echo("nothing to recover" if head is None else f"signed {head.size} entries (recovered)")


keys_app = typer.Typer(help="Keys: API keys and the key-encryption key.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate(database_url: DatabaseOpt = None) -> None:
    """Make a new key-encryption key and re-wrap every data key (values stay as they are)."""
    import os
    import time

    from troth.keyring.kek import load_kek
    from troth.keyring.keys import Keyring
    from troth.keyring.open import open_keyring
    from troth.store.engine import make_engine
    from troth.store.migrate import check_current

    settings = _settings(database_url)
    if settings.kek or settings.kek_file:
        typer.echo(
            "the KEK comes from TROTH_KEK / TROTH_KEK_FILE: rotate it in your KMS or secret store, "
            "then run this with the new key set and the old one in TROTH_KEYS_DIR/kek-<id>.key",
            err=True,
        )
        raise typer.Exit(2)
    try:
        engine = make_engine(settings.database_url)
        check_current(engine)
        current = settings.keys_dir / "kek.key"
        old = open_keyring(settings)
        retired = settings.keys_dir / f"kek-{old.kek.id}.key"
        os.replace(current, retired)
        new = load_kek(None, None, create_at=current)
        keyring = Keyring(new, {**old.keks})
        started = time.perf_counter()
        count = keyring.rotate(engine)
        elapsed = time.perf_counter() - started
    except TrothError as exc:
        raise _fail(exc) from None
    retired.unlink()
    typer.echo(
        f"re-wrapped {count} data keys under key-encryption key {new.id} in {elapsed:.1f} s; "
        f"the old key {old.kek.id} was deleted"
    )


# --- admin users and API keys (troth.auth) ----------------------------------------------

ROLE_HELP = "owner, privacy_officer, support_agent, service or auditor"
RoleOpt = Annotated[str, typer.Option("--role", help=ROLE_HELP, show_default=False)]

users_app = typer.Typer(help="Admin users: who may sign in at /admin.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Argument(help="The user's e-mail address (their sign-in name)")],
    role: RoleOpt,
    database_url: DatabaseOpt = None,
) -> None:
    """Add an admin user. The password (12 characters or more) is read from stdin, one line,
    or asked for twice on a terminal; it never appears on the command line."""
    from troth.auth.users import add_user

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        engine, log = _audit_log(_settings(database_url))
        user = add_user(engine, email, password, role, audit=log)
    except TrothError as exc:
        raise _fail(exc) from None
    typer.echo(f"added {user.email} as {user.role}")


@users_app.command("list")
def users_list(database_url: DatabaseOpt = None) -> None:
    """List admin users: e-mail, role, state."""
    import datetime as dt

    from troth.auth.users import list_users

    try:
        engine, _log = _audit_log(_settings(database_url))
        people = list_users(engine)
    except TrothError as exc:
        raise _fail(exc) from None
    now = dt.datetime.now(dt.UTC)
    for u in people:
        state = "disabled" if u.disabled else "locked" if u.locked(now) else "active"
        typer.echo(f"{u.email}\t{u.role}\t{state}")


@keys_app.command("create")
def keys_create(
    role: RoleOpt,
    label: Annotated[str, typer.Option("--label", help="What the key is for", show_default=False)],
    database_url: DatabaseOpt = None,
) -> None:
    """Create an API key and print it, once: troth keeps only a hash of it."""
    from troth.auth.api_keys import create_api_key

    try:
        engine, log = _audit_log(_settings(database_url))
        key_id, full_key = create_api_key(engine, role, label, audit=log)
    except TrothError as exc:
        raise _fail(exc) from None
    typer.echo(full_key)
    typer.echo(
        f"API key {key_id} ({role}): store it now, it is not shown again. "
        "Send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@keys_app.command("list")
def keys_list(database_url: DatabaseOpt = None) -> None:
    """List API keys: id, role, label, created, revoked (never the keys themselves)."""
    from troth.auth.api_keys import list_api_keys

    try:
        engine, _log = _audit_log(_settings(database_url))
        keys = list_api_keys(engine)
    except TrothError as exc:
        raise _fail(exc) from None
    for k in keys:
        revoked = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        typer.echo(f"{k.id}\t{k.role}\t{k.label}\t{k.created_at:%Y-%m-%d}\t{revoked}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after troth_)")],
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke an API key. Exit 1 if there is no such active key."""
    from troth.auth.api_keys import revoke_api_key

    try:
        engine, log = _audit_log(_settings(database_url))
        revoked = revoke_api_key(engine, key_id, audit=log)
    except TrothError as exc:
        raise _fail(exc) from None
    if not revoked:
        typer.echo(f"no active API key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked API key {key_id}")


# --- backup and restore (troth.store.backup) -------------------------------------------


@app.command("backup")
def backup_cmd(
    out: Annotated[
        Path | None,
        typer.Argument(help="The archive to write (never overwritten)", show_default=False),
    ] = None,
    verify: Annotated[
        Path | None,
        typer.Option(
            "--verify",
            metavar="ARCHIVE",
            help="Check ARCHIVE instead: exit 0 intact, 1 damaged or altered, 2 unreadable",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Write a signed backup archive of the database; safe while the server runs.
    The keys (TROTH_KEYS_DIR) are never in it: back them up separately and securely."""
    from troth.store.backup import backup, backup_public_key, verify_backup

    settings = _settings(database_url)
    if (out is None) == (verify is None):
        typer.echo("give OUT to write a backup, or --verify ARCHIVE to check one", err=True)
        raise typer.Exit(2)
    if verify is not None:
        if not verify.is_file():
            typer.echo(f"{verify}: no such file", err=True)
            raise typer.Exit(2)
        try:
            checked = verify_backup(verify, backup_public_key(settings))
        except TrothError as exc:
            raise _fail(exc, 1) from None
        typer.echo(checked.summary())
        return
    assert out is not None
    try:
        info = backup(settings, out)
    except TrothError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"wrote {out}: {info.engine} backup, schema {info.revision}, {info.dump_bytes} bytes, "
        f"{info.audit_size} audit entries, signed by backup key {info.key_id}"
    )
    typer.echo(
        f"the keys are not in the archive: back up {settings.keys_dir} separately and securely",
        err=True,
    )


@app.command("restore")
def restore_cmd(
    archive: Annotated[
        Path, typer.Argument(help="An archive written by `troth backup`", show_default=False)
    ],
    database_url: DatabaseOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that already holds data")
    ] = False,
) -> None:
    """Restore a backup into the database, migrate it, and erase again every subject erased
    since (TROTH_ERASURES). Stop the server first. Exit 0 restored, 2 refused or failed."""
    from troth.store.backup import restore

    try:
        report = restore(_settings(database_url), archive, force=force)
    except TrothError as exc:
        raise _fail(exc) from None
    for line in report.lines():
        typer.echo(line)


@app.command("purge")
def purge_cmd(
    policy: PolicyArg,
    database_url: DatabaseOpt = None,
) -> None:
    """Delete tracking data older than each technology's declared retention (audited).
    `troth serve` also does this every hour."""
    from troth.tracking.purge import purge

    loaded = _load(policy)
    settings = _settings(database_url)
    try:
        engine, log = _audit_log(settings)
        deleted = purge(engine, loaded.policy, log)
    except TrothError as exc:
        raise _fail(exc) from None
    if not deleted:
        typer.echo("nothing past its retention")
    for tech, count in sorted(deleted.items()):
        typer.echo(f"{tech}: deleted {count} rows past its retention")


mail_app = typer.Typer(
    help="Outgoing e-mail, tagged by each recipient's consent.", no_args_is_help=True
)
app.add_typer(mail_app, name="mail")


@mail_app.command("tag")
def mail_tag(
    html_file: Annotated[
        Path, typer.Argument(help="The e-mail's HTML (UTF-8, up to 512 KiB)", show_default=False)
    ],
    policy: Annotated[Path, typer.Option(help="Path to policy.yaml", show_default=False)],
    recipient: Annotated[
        str, typer.Option(help="The recipient's subject reference", show_default=False)
    ],
    campaign: Annotated[
        str, typer.Option(help="Campaign id: a-z, 0-9, '_' or '-'", show_default=False)
    ],
    base_url: Annotated[
        str | None,
        typer.Option(help="Public address of troth's /t/ endpoints; default: the policy's url"),
    ] = None,
    jurisdiction: Annotated[
        str | None, typer.Option(help="The recipient's jurisdiction; default: the policy's")
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Write HTML_FILE to stdout as it may go to one recipient: open pixel and tracking links
    only if their consent allows them, else clean links. Exit 2 on bad input."""
    from troth.tracking.mail import MAX_HTML_BYTES, tag_email
    from troth.web.mail_api import allowed_categories
    from troth.web.services import Services

    loaded = _load(policy)
    try:
        with html_file.open("rb") as f:
            data = f.read(MAX_HTML_BYTES + 1)
    except OSError as exc:
        typer.echo(f"{html_file}: cannot read: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    if len(data) > MAX_HTML_BYTES:
        typer.echo(f"{html_file}: over {MAX_HTML_BYTES} bytes (512 KiB)", err=True)
        raise typer.Exit(2)
    try:
        html = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        typer.echo(f"{html_file}: not UTF-8 (byte {exc.start})", err=True)
        raise typer.Exit(2) from None
    base = base_url or loaded.policy.url
    if base is None:
        typer.echo("--base-url: required, the policy declares no url", err=True)
        raise typer.Exit(2)
    try:
        services = Services.open(loaded.policy, _settings(database_url))
        try:
            tagged = tag_email(
                html,
                recipient=recipient,
                campaign=campaign,
                base_url=str(base),
                allowed=allowed_categories(services, recipient, jurisdiction),
                links=services.links,
                policy=loaded.policy,
                hash_subject=services.ledger.hash,
                jurisdiction=jurisdiction,
            )
        finally:
            services.engine.dispose()
    except TrothError as exc:
        raise _fail(exc) from None
    sys.stdout.buffer.write(tagged.html.encode("utf-8"))
    sys.stdout.flush()
    what = "tracked" if tagged.tracked else "clean links"
    pixel = ", open pixel" if tagged.pixel else ""
    typer.echo(f"{what}: {_count(tagged.links_rewritten, 'link')} rewritten{pixel}", err=True)


for _capability in (cli_rights, cli_transfers, cli_scan):
    _capability.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
