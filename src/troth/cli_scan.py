"""`troth scan` and `troth discover`: check the live site and the databases against the policy.

Exit codes: 0 nothing disagrees with the policy; 1 violations; 2 bad input (URL, option,
policy file, database) or a site that cannot be scanned at all.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from troth.errors import TrothError

if TYPE_CHECKING:
    from troth.policy.model import Policy

__all__ = ["register"]


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    html = "html"


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def _policy(path: Path | None) -> Policy | None:
    if path is None:
        return None
    from troth.policy.loader import load_policy

    try:
        return load_policy(path).policy
    except TrothError as exc:
        raise _fail(str(exc)) from None


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text)
        return
    try:
        output.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{output}: cannot write: {exc.strerror}") from None


def scan(
    url: Annotated[str, typer.Argument(help="Start page of the site", show_default=False)],
    pages: Annotated[int, typer.Option("--pages", "-n", help="Pages to visit (each pass)")] = 10,
    policy: Annotated[
        Path | None, typer.Option("--policy", "-p", help="policy.yaml to compare with")
    ] = None,
    accept_selector: Annotated[
        str | None,
        typer.Option("--accept-selector", help="CSS selector of the 'accept all' control"),
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here")] = None,
    map_host: Annotated[
        list[str] | None,
        typer.Option(
            "--map-host",
            help="Resolve HOST to ADDRESS in the browser, e.g. '*.test=127.0.0.1' (repeatable)",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per page")] = 15.0,
) -> None:
    """Crawl a site before and after consent and compare it with the policy. Exit 1 on
    violations, 2 on bad input."""
    from troth.scan import (
        ScanOptions,
        ScanReport,
        parse_map_host,
        render_html,
        render_json,
        render_text,
        scan_site,
    )
    from troth.scan.crawler import TROTH_ACCEPT

    loaded = _policy(policy)
    try:
        options = ScanOptions(
            pages=pages,
            accept_selector=accept_selector or TROTH_ACCEPT,
            map_hosts=tuple(parse_map_host(rule) for rule in map_host or ()),
            page_timeout=timeout,
        )
        with typer.progressbar(
            length=2 * pages, label="scanning", file=sys.stderr, show_pos=True
        ) as bar:
            report: ScanReport = scan_site(
                url, options, loaded, progress=lambda _phase, _url: bar.update(1)
            )
            bar.update(2 * pages)
    except TrothError as exc:
        raise _fail(str(exc)) from None
    if fmt is ReportFormat.json:
        _write(render_json(report), output)
    elif fmt is ReportFormat.html:
        _write(render_html(report), output)
    else:
        _write(render_text(report), output)
    if output is not None:
        typer.echo(report.summary(), err=True)
    raise typer.Exit(1 if report.violations else 0)


def register(app: typer.Typer) -> None:
    """Add this capability's commands and command groups to ``app``."""
    app.command(name="scan")(scan)
