"""`troth scan` and `troth discover`: check the live site and the databases against the policy.

Exit codes: 0 nothing disagrees with the policy; 1 violations; 2 bad input (URL, option,
policy file, database), a site that cannot be scanned at all, or one whose accept control
was never found (unless ``--no-accept`` says it has no consent banner).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

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
    jurisdiction: Annotated[
        str | None,
        typer.Option(
            "--jurisdiction",
            "-j",
            help="Judge consent under this jurisdiction of the policy (default: its default "
            "one): opt_in needs a click for every category but the necessary ones, opt_out "
            "and notice for none (but those --gpc refuses there)",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Do not follow links matching this regex (repeatable)"),
    ] = None,
    variants: Annotated[
        bool,
        typer.Option(
            "--variants",
            help="Also follow links that differ from a page found only in a region or "
            "language query parameter (region, lang, locale, country, ...); by default they "
            "are skipped, as one scan judges one jurisdiction",
        ),
    ] = False,
    gpc: Annotated[
        bool, typer.Option("--gpc", help="Send a Global Privacy Control signal")
    ] = False,
    no_accept: Annotated[
        bool,
        typer.Option(
            "--no-accept",
            help="The site has no consent banner: crawl once, without looking for an accept "
            "control (else a scan that finds none exits 2)",
        ),
    ] = False,
) -> None:
    """Crawl a site before and after consent and compare it with the policy. Exit 1 on
    violations, 2 on bad input or when the accept control was never found.

    One scan judges one jurisdiction: to check a region a site serves differently, start
    at that region's page and name it, e.g. `troth scan 'https://example.com/?region=us_ca'
    --jurisdiction us_ca`. Links to other regions or languages of a page already found are
    not followed unless --variants is given."""
    from troth.scan import (
        ScanOptions,
        ScanReport,
        choose_jurisdiction,
        parse_map_host,
        render_html,
        render_json,
        render_text,
        scan_site,
    )
    from troth.scan.crawler import TROTH_ACCEPT, validate_url

    loaded = _policy(policy)
    try:
        validate_url(url)
        if "@" in urlsplit(url).netloc:
            typer.echo(
                "warning: the URL's user name and password are used to load the pages but "
                "left out of every report",
                err=True,
            )
        if loaded is not None:
            choose_jurisdiction(loaded, jurisdiction)
        elif jurisdiction is not None:
            raise _fail("--jurisdiction: names a jurisdiction of the policy; give --policy too")
        options = ScanOptions(
            pages=pages,
            accept_selector=accept_selector or TROTH_ACCEPT,
            map_hosts=tuple(parse_map_host(rule) for rule in map_host or ()),
            page_timeout=timeout,
            screenshots=fmt is ReportFormat.html,  # only the HTML report shows them
            accept=not no_accept,
            exclude=tuple(exclude or ()),
            variants=variants,
            gpc=gpc,
        )
        with typer.progressbar(
            length=(1 if no_accept else 2) * pages, label="scanning", file=sys.stderr, show_pos=True
        ) as bar:
            report: ScanReport = scan_site(
                url,
                options,
                loaded,
                progress=lambda _phase, _url: bar.update(1),
                jurisdiction=jurisdiction,
            )
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
    if not no_accept and not report.observations.accepted:
        raise _fail(
            f"the accept control {options.accept_selector!r} was not found or did not answer "
            "on the start page, so nothing was scanned after consent; give the banner's "
            "--accept-selector, or --no-accept for a site without a consent banner"
        )
    raise typer.Exit(1 if report.violations else 0)


class DiscoverFormat(StrEnum):
    text = "text"
    json = "json"


def _datasets_path(datasets: Path | None, policy: Path | None) -> Path | None:
    if datasets is not None:
        return datasets
    from troth.config import Settings
    from troth.policy.datasets import datasets_beside

    configured = Settings().datasets
    return configured if configured is not None else datasets_beside(policy)


def discover(
    database_url: Annotated[
        str, typer.Argument(help="The database to look into", show_default=False)
    ],
    datasets: Annotated[
        Path | None,
        typer.Option(
            "--datasets", help="datasets.yaml (default: TROTH_DATASETS, or beside the policy)"
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", "-p", help="policy.yaml the annotations refer to")
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Which datastore of datasets.yaml this is")
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", help="Non-empty values sampled per column")
    ] = 200,
    fmt: Annotated[DiscoverFormat, typer.Option("--format", "-f")] = DiscoverFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here")] = None,
) -> None:
    """Find personal data in a database's columns and compare with the dataset annotations.
    Exit 1 when a column holds personal data the annotations do not name, 2 on bad input."""
    from troth.policy.datasets import load_datasets
    from troth.scan.discover import choose_store, discover_database

    path = _datasets_path(datasets, policy)
    loaded = _policy(policy)
    if path is not None and loaded is None:
        raise _fail(f"--datasets: {path} names the policy's data categories; give --policy too")
    try:
        chosen = None
        if path is not None and loaded is not None:
            chosen = choose_store(load_datasets(path, loaded), database_url, store)
        report = discover_database(database_url, policy=loaded, store=chosen, sample=sample)
    except TrothError as exc:
        raise _fail(str(exc)) from None
    if fmt is DiscoverFormat.json:
        import json

        _write(json.dumps(report.as_dict(), ensure_ascii=False, indent=2), output)
    else:
        _write(report.render_text(), output)
    if fmt is DiscoverFormat.json or output is not None:
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
    raise typer.Exit(1 if report.violations else 0)


def register(app: typer.Typer) -> None:
    """Add this capability's commands and command groups to ``app``."""
    app.command(name="scan")(scan)
    app.command(name="discover")(discover)
