"""Tracking reports: ``GET /api/stats`` for programs, and the figures and the chart behind
the admin page ``/admin/analytics`` (the page itself is in :mod:`troth.web.admin`).

Both read the daily counts of ``tracking_aggregates`` (:func:`troth.tracking.stats.stats`):
visits (``view``), e-mail opens, clicks and events, per day (UTC) and campaign, split into
hits counted with consent (``given``) and without (``none``: aggregate counts only). Both
need the permission ``consent.report``. A range covers at most 366 days; by default the
last 30 days up to today (UTC). Both also tell how many best-effort hits the serving process
lost to a full write buffer since it started (``dropped``): hits that are in no count.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from troth.tracking.stats import stats
from troth.web.auth_deps import Principal, engine_of, require
from troth.web.problems import problem

__all__ = [
    "DEFAULT_DAYS",
    "KINDS",
    "MAX_DAYS",
    "AnalyticsReport",
    "BarChart",
    "CampaignLine",
    "RangeError",
    "Split",
    "analytics_chart",
    "analytics_report",
    "dropped_hits",
    "parse_range",
    "stats_router",
    "summarize",
]

KINDS = ("view", "open", "click", "event")
KIND_LABELS = {"view": "Visits", "open": "Opens", "click": "Clicks", "event": "Events"}
CONSENT_STATES = ("given", "none")
MAX_DAYS = 366
DEFAULT_DAYS = 30
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NO_STORE = {"Cache-Control": "no-store"}


class RangeError(ValueError):
    """A bad ``from`` / ``to`` / ``kind`` parameter; the message starts with its name."""


def _date(name: str, value: str) -> dt.date:
    if _DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise RangeError(f"{name}: not a date; use YYYY-MM-DD")


def parse_range(
    start: str | None, end: str | None, *, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The days ``start`` to ``end`` (inclusive). ``end`` defaults to today (UTC), ``start``
    to :data:`DEFAULT_DAYS` days up to ``end``; empty strings count as not given."""
    today = today or dt.datetime.now(dt.UTC).date()
    last = _date("to", end) if end else today
    first = _date("from", start) if start else last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise RangeError("from: after to; the range runs from the earlier day to the later")
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError(f"from, to: a range covers at most {MAX_DAYS} days")
    return first, last


def _label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.capitalize())


def _ordered(kinds: Iterable[str]) -> list[str]:
    found = set(kinds)
    return [k for k in KINDS if k in found] + sorted(found - set(KINDS))


def summarize(
    rows: list[dict[str, Any]], campaign: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """The JSON answer of ``/api/stats`` without the range: the rows of ``campaign`` and
    ``kind`` (all when not given), their totals per kind and consent state, and every
    campaign of the range (whatever the filters, so that a client can offer them)."""
    selected = [
        r
        for r in rows
        if (not campaign or r["campaign"] == campaign) and (not kind or r["kind"] == kind)
    ]
    kinds = [kind] if kind else _ordered([*KINDS, *(r["kind"] for r in selected)])
    totals = {k: dict.fromkeys(CONSENT_STATES, 0) for k in kinds}
    for r in selected:
        counts = totals[r["kind"]]
        counts[r["consent"]] = counts.get(r["consent"], 0) + r["count"]
    return {
        "rows": selected,
        "totals": totals,
        "campaigns": sorted({r["campaign"] for r in rows}),
    }


def stats_router() -> APIRouter:
    router = APIRouter(tags=["stats"])

    @router.get("/api/stats", summary="Visits, opens and clicks per day, campaign and consent")
    async def get_stats(
        request: Request,
        _who: Annotated[Principal, Depends(require("consent.report"))],
        start: Annotated[
            str | None, Query(alias="from", description="first day, YYYY-MM-DD (UTC)")
        ] = None,
        end: Annotated[
            str | None, Query(alias="to", description="last day, YYYY-MM-DD; default today")
        ] = None,
        campaign: Annotated[str | None, Query(max_length=64)] = None,
        kind: Annotated[str | None, Query(description="view, open, click or event")] = None,
    ) -> Response:
        try:
            first, last = parse_range(start, end)
            if kind and kind not in KINDS:
                raise RangeError(f"kind: use one of {', '.join(KINDS)}")
        except RangeError as exc:
            return problem(422, "Invalid request", str(exc))
        rows = await run_in_threadpool(stats, engine_of(request), first, last)
        body = {
            "from": first.isoformat(),
            "to": last.isoformat(),
            **summarize(rows, campaign, kind),
            "dropped": dropped_hits(request),
        }
        return JSONResponse(body, headers=_NO_STORE)

    return router


# --- the admin page's figures ----------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Hits counted with consent (``given``) and without (``none``)."""

    given: int = 0
    none: int = 0

    @property
    def total(self) -> int:
        return self.given + self.none

    def __add__(self, other: Split) -> Split:
        return Split(self.given + other.given, self.none + other.none)


@dataclass(frozen=True)
class CampaignLine:
    campaign: str
    counts: Mapping[str, Split]
    ctr: float | None = None  # overrides clicks / opens (see AnalyticsReport.overall)

    def of(self, kind: str) -> Split:
        return self.counts.get(kind, Split())

    @property
    def click_through(self) -> float | None:
        """Clicks per open, or None without opens."""
        if self.ctr is not None:
            return self.ctr
        opens = self.of("open").total
        return self.of("click").total / opens if opens else None


@dataclass
class AnalyticsReport:
    first: dt.date
    last: dt.date
    campaign: str  # the campaign shown, "" for all
    campaigns: list[str]  # every campaign with hits in the range
    counts: dict[tuple[dt.date, str], Split] = field(default_factory=dict)  # (day, kind)
    lines: list[CampaignLine] = field(default_factory=list)  # busiest campaign first
    # best-effort hits this server process lost to a full write buffer since it started
    # (Recorder.dropped); None when not known
    dropped: int | None = None

    @property
    def empty(self) -> bool:
        return not self.counts

    @staticmethod
    def label(kind: str) -> str:
        return _label(kind)

    @staticmethod
    def colour(kind: str) -> int:
        """The series colour of ``kind``: CSS class ``series-N``, pattern ``hatch-N``."""
        return _colour(kind)

    @property
    def kinds(self) -> list[str]:
        """Visits, opens and clicks always; events and others when there are some."""
        return _ordered(["view", "open", "click", *(k for _, k in self.counts)])

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def day(self, day: dt.date, kind: str) -> Split:
        return self.counts.get((day, kind), Split())

    def total(self, kind: str) -> Split:
        return sum((s for (_, k), s in self.counts.items() if k == kind), Split())

    @property
    def overall(self) -> CampaignLine:
        """All campaigns together; their click-through counts the campaigns with opens only
        (clicks on links outside e-mails would inflate it)."""
        with_opens = [line for line in self.lines if line.of("open").total]
        opens = sum(line.of("open").total for line in with_opens)
        clicks = sum(line.of("click").total for line in with_opens)
        return CampaignLine(
            "", {k: self.total(k) for k in self.kinds}, clicks / opens if opens else None
        )

    def table(self) -> list[tuple[dt.date, list[Split]]]:
        """Per day with any hit, newest first: a split per kind of :attr:`kinds`."""
        kinds = self.kinds
        days = sorted({d for d, _ in self.counts}, reverse=True)
        return [(d, [self.day(d, k) for k in kinds]) for d in days]


def analytics_report(
    engine: Engine, first: dt.date, last: dt.date, campaign: str = "", dropped: int | None = None
) -> AnalyticsReport:
    """The figures of ``/admin/analytics`` for the days ``first`` to ``last``; ``dropped``:
    :func:`dropped_hits` of the serving process."""
    rows = stats(engine, first, last)
    campaigns = sorted({r["campaign"] for r in rows})
    counts: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0])
    per_campaign: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in summarize(rows, campaign or None)["rows"]:
        slot = 0 if r["consent"] == "given" else 1
        counts[(dt.date.fromisoformat(r["day"]), r["kind"])][slot] += r["count"]
        per_campaign[r["campaign"]][r["kind"]][slot] += r["count"]
    lines = [
        CampaignLine(c, {k: Split(g, n) for k, (g, n) in kinds.items()})
        for c, kinds in per_campaign.items()
    ]
    lines.sort(key=lambda line: (-sum(s.total for s in line.counts.values()), line.campaign))
    return AnalyticsReport(
        first,
        last,
        campaign,
        campaigns,
        {key: Split(g, n) for key, (g, n) in counts.items()},
        lines,
        dropped,
    )


def dropped_hits(request: Request) -> int:
    """Best-effort hits (pixels, link clicks) this server process could not keep because its
    write buffer was full, since it started (:attr:`troth.tracking.recorder.Recorder.dropped`;
    each worker process counts its own)."""
    tracker = getattr(request.app.state, "tracker", None)
    return int(tracker.recorder.dropped) if tracker is not None else 0


# --- the chart: stacked bars per day, drawn here (the admin CSP allows no script) ---------


@dataclass(frozen=True)
class _Segment:
    y: float
    height: float
    css: str  # "series-N" (with consent) or "hatched" (without)
    fill: str  # "" or, for hatched segments, url(#hatch-N)
    title: str


@dataclass(frozen=True)
class _Bar:
    x: float
    width: float
    title: str
    segments: list[_Segment]


@dataclass(frozen=True)
class _Tick:
    x: float
    y: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True)
class _Key:
    kind: str
    name: str
    n: int  # the colour: series-N, hatch-N


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    yticks: list[_Tick]
    xticks: list[_Tick]
    bars: list[_Bar]
    keys: list[_Key]
    desc: str
    dense: bool  # bars too thin for gaps between their segments


def _colour(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS) + sum(map(ord, kind)) % 4


def _nice(top: int) -> tuple[int, int]:
    """The lowest axis maximum of at least ``top`` made of 3 to 6 whole steps of 1, 2, 2.5
    or 5 times a power of ten, and its step."""
    if top <= 4:
        return 4, 1
    candidates = []
    magnitude = int(math.log10(top))
    for power in range(magnitude - 1, magnitude + 1):
        for unit in (1, 2, 2.5, 5):
            step = unit * 10**power
            if step != int(step):
                continue
            steps = max(3, math.ceil(top / step))
            if steps <= 6:
                candidates.append((int(step * steps), abs(steps - 4.5), int(step)))
    axis_max, _, step = min(candidates)
    return axis_max, step


def _count(n: float, scale: float) -> str:
    """``n`` on an axis up to ``scale``: 1,500 or 1.5k or 1.5M."""
    if scale >= 1_000_000:
        return f"{n / 1_000_000:.3g}M" if n else "0"
    if scale >= 10_000:
        return f"{n / 1000:.3g}k" if n else "0"
    return f"{int(n):,}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "—"


def analytics_chart(report: AnalyticsReport, width: int = 760, height: int = 300) -> BarChart:
    left, right, top, bottom = 64, width - 12, 14, height - 48
    dates = report.dates()
    kinds = [k for k in report.kinds if report.total(k).total]
    slot = (right - left) / len(dates)
    bar_width = round(max(slot * (0.72 if slot >= 6 else 0.9), 0.8), 2)
    peak = max((sum(report.day(d, k).total for k in kinds) for d in dates), default=0)
    axis_max, step = _nice(peak)

    def y(value: float) -> float:
        return round(bottom - (bottom - top) * value / axis_max, 2)

    bars = []
    for i, day in enumerate(dates):
        splits = [(k, report.day(day, k)) for k in kinds]
        total = sum(s.total for _, s in splits)
        if not total:
            continue
        segments = []
        base = 0
        for kind, split in splits:
            n, name = _colour(kind), _label(kind)
            for part, with_consent in ((split.given, True), (split.none, False)):
                if not part:
                    continue
                state = "with consent" if with_consent else "without consent"
                segments.append(
                    _Segment(
                        y(base + part),
                        round(y(base) - y(base + part), 2),
                        f"series-{n}" if with_consent else "hatched",
                        "" if with_consent else f"url(#hatch-{n})",
                        f"{name}, {day.isoformat()}, {state}: {part:,}",
                    )
                )
                base += part
        parts = ", ".join(f"{s.total:,} {_label(k).lower()}" for k, s in splits if s.total)
        bars.append(
            _Bar(
                round(left + slot * i + (slot - bar_width) / 2, 2),
                bar_width,
                f"{day.isoformat()}: {parts}",
                segments,
            )
        )
    yticks = [_Tick(left, y(v), _count(v, axis_max), "end") for v in range(0, axis_max + 1, step)]
    if len(dates) > 100:  # the first of every month, or of every other one
        months = [i for i, d in enumerate(dates) if d.day == 1]
        marks = months[:: math.ceil(len(months) / 7)]
    else:
        marks = list(range(0, len(dates), math.ceil(len(dates) / 8)))
    xticks = [
        _Tick(
            round(left + slot * (i + 0.5), 2),
            bottom,
            f"{dates[i]:%b %Y}" if len(dates) > 100 else f"{dates[i].day} {dates[i]:%b}",
        )
        for i in marks
    ]
    keys = [_Key(k, _label(k), _colour(k)) for k in kinds]
    totals = "; ".join(
        f"{_label(k).lower()} {report.total(k).total:,} "
        f"({_share(report.total(k).given, report.total(k).total)} with consent)"
        for k in kinds
    )
    desc = (
        f"Stacked bars, one per day from {report.first.isoformat()} to "
        f"{report.last.isoformat()}"
        + (f", campaign {report.campaign}" if report.campaign else "")
        + ". Each bar stacks "
        + ", ".join(_label(k).lower() for k in kinds)
        + ", each split into hits counted with consent (solid) and without (hatched). "
        + (f"Totals: {totals}. " if totals else "")
        + "The same figures are in the table below."
    )
    return BarChart(
        width, height, left, right, top, bottom, yticks, xticks, bars, keys, desc, bar_width < 4
    )
