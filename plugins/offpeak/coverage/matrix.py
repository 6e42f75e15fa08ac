"""The coverage matrix: for every (site, region) and each of the last N trading dates, what
the warehouse holds and what Airflow did, as one state per cell.

Pure: it takes the config, the warehouse's load audit rows and Airflow's DAG runs (read by
:mod:`offpeak.coverage.sources`) and a clock, so the page, the JSON and the command line
show the same matrix from the same data.

Columns are the last ``days`` dates that are a trading day of at least one of the regions
shown, up to the latest date whose run is due somewhere. Each region keeps its own exchange
calendar: a date its exchange does not trade is ``closed`` (with the reason), never a gap.
A trading day before a DAG's first scheduled run was never due (the DAG did not exist or was
paused, and the scheduler does not go back past its catchup): ``never_due``, not a gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from offpeak import params
from offpeak.naming import scrape_dag_id
from offpeak.schedule.tradingtime import RegionClock

if TYPE_CHECKING:
    from offpeak.config import Project
    from offpeak.partition import Partition

# A cell's state, from best to worst for the operator; the order of the legend.
COMPLETE = "complete"  # loaded, the whole site crawled
PARTIAL = "partial"  # loaded, the crawl stopped at the window's end (load_audit.complete=false)
RUNNING = "running"  # a run of that date is queued or running
FAILED = "failed"  # the latest run of that date failed (an earlier load, if any, is kept)
MISSING = "missing"  # a trading day whose run was due, with nothing loaded and nothing running
SCHEDULED = "scheduled"  # a trading day whose run is not due yet (the window has not opened)
NEVER_DUE = "never_due"  # a trading day before the DAG's first scheduled run, nothing loaded
CLOSED = "closed"  # not a trading day of the region's exchange
STATES = (COMPLETE, PARTIAL, RUNNING, FAILED, MISSING, SCHEDULED, NEVER_DUE, CLOSED)
# The states a gate (the command line's exit status) fails on.
GAPS = (MISSING, FAILED)
# The states the page offers to fill with a backfill: the gaps, and history never loaded.
FILLABLE = (*GAPS, NEVER_DUE)

DEFAULT_DAYS = 20
MAX_DAYS = 400
_RUNNING_STATES = ("queued", "running")


@dataclass(frozen=True)
class Load:
    """The latest load_audit row of a partition: the partition as that load wrote it (its
    run included), and the load's counts."""

    partition: Partition
    complete: bool
    rows_in_file: int
    rows_rejected: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deleted: int
    loaded_at: datetime

    @property
    def run_id(self) -> str:
        return self.partition.run_id

    @property
    def rows(self) -> int:
        """The rows the partition holds after the load."""
        return self.rows_inserted + self.rows_updated + self.rows_unchanged


@dataclass(frozen=True)
class Run:
    """A DAG run, as far as the matrix needs it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    logical_date: datetime | None
    data_interval_start: datetime | None
    run_after: datetime | None
    conf: Mapping[str, Any] | None
    id: int = 0  # the metadata DB's row id: the later run of a date is the larger one


@dataclass
class Cell:
    date: str
    state: str
    detail: str = ""
    run_id: str | None = None
    run_state: str | None = None
    rows: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    rows_rejected: int | None = None
    loaded_at: str | None = None
    load_run_id: str | None = None


@dataclass
class Row:
    site: str
    region: str
    dag_id: str
    paused: bool | None
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Matrix:
    generated_at: str
    days: int
    dates: list[str]
    rows: list[Row]
    states: tuple[str, ...] = STATES

    def counts(self) -> dict[str, int]:
        """How many cells are in each state."""
        out = dict.fromkeys(STATES, 0)
        for row in self.rows:
            for cell in row.cells:
                out[cell.state] += 1
        return out

    def gaps(self) -> list[tuple[Row, Cell]]:
        """The missing and failed cells."""
        return [(r, c) for r in self.rows for c in r.cells if c.state in GAPS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "days": self.days,
            "dates": self.dates,
            "states": list(self.states),
            "counts": self.counts(),
            "rows": [asdict(r) for r in self.rows],
        }


# ------------------------------------------------------------------------------ building


def run_trading_date(clock: RegionClock, run: Run) -> date | None:
    """The trading date ``run`` loads, as its tasks compute it (offpeak.params): conf's
    ``trading_date``, else the local date of its data interval, else the latest date due when
    it was queued. None when the run names a date that is not a trading day (it fails)."""
    try:
        return params.trading_date(clock, run, now=run.run_after)
    except ValueError:
        return None


def dates_shown(clocks: Iterable[RegionClock], now: datetime, days: int) -> list[date]:
    """The last ``days`` dates that are a trading day of at least one clock, oldest first,
    ending with the latest date whose run is due in some region."""
    clocks = list(clocks)
    if not clocks:
        return []
    last = max(c.latest_due_day(now) for c in clocks)
    out: list[date] = []
    day = last
    while len(out) < days and (last - day).days <= days * 7 + 30:
        if any(c.is_day(day) for c in clocks):
            out.append(day)
        day -= timedelta(days=1)
    return sorted(out)


@dataclass(frozen=True)
class Frame:
    """What a matrix covers before any fact is read: its (site, region) pairs, their clocks
    and the dates shown. The sources read only what falls in it (``dag_ids``, ``dates``)."""

    pairs: list[tuple[Any, Any]]  # (Site, Region)
    clocks: dict[str, RegionClock]
    dates: list[date]
    now: datetime
    days: int

    @property
    def dag_ids(self) -> list[str]:
        return [scrape_dag_id(s.name, r.name) for s, r in self.pairs]

    def fill(
        self,
        loads: Iterable[Load],
        runs: Iterable[Run],
        *,
        paused: Mapping[str, bool] | None = None,
        first_scheduled: Mapping[str, datetime] | None = None,
        states: Iterable[str] = (),
    ) -> Matrix:
        """The matrix of these pairs and dates from the facts. ``loads``: the latest load_audit
        row of each partition; ``runs``: the DAG runs of the scrape DAGs (any may be left out
        that cannot fall on a date shown); ``first_scheduled``: the data interval start of
        each DAG's earliest scheduled run (a DAG left out has had none); ``states``: only rows
        with a cell in one of them."""
        loaded = {}
        for load in loads:
            part = load.partition
            loaded[(part.site, part.region, part.trading_date)] = load
        wanted_states = set(states)
        region_of = {scrape_dag_id(s.name, r.name): r.name for s, r in self.pairs}
        latest = _latest_runs(runs, self.clocks, region_of)
        rows = []
        for site, region in self.pairs:
            dag_id = scrape_dag_id(site.name, region.name)
            clock = self.clocks[region.name]
            row = Row(site.name, region.name, dag_id, (paused or {}).get(dag_id))
            start = (first_scheduled or {}).get(dag_id)
            first = None if start is None else clock.day_of_interval_start(start)
            for day in self.dates:
                load = loaded.get((site.name, region.name, day))
                run = latest.get((dag_id, day))
                row.cells.append(_cell(clock, day, self.now, load, run, first))
            if not wanted_states or any(c.state in wanted_states for c in row.cells):
                rows.append(row)
        return Matrix(
            generated_at=self.now.astimezone(UTC).isoformat(timespec="seconds"),
            days=self.days,
            dates=[d.isoformat() for d in self.dates],
            rows=rows,
        )


def frame(
    project: Project,
    *,
    now: datetime | None = None,
    days: int = DEFAULT_DAYS,
    sites: Iterable[str] = (),
    regions: Iterable[str] = (),
    dag_ids: Iterable[str] | None = None,
) -> Frame:
    """The pairs of ``project`` that pass the filters (``sites``, ``regions``: names, empty for
    all; ``dag_ids``: only these DAGs, the ones the user may read) and the last ``days``
    trading dates of their regions."""
    now = now or datetime.now(tz=UTC)
    days = max(1, min(int(days), MAX_DAYS))
    wanted_sites, wanted_regions = set(sites), set(regions)
    allowed = None if dag_ids is None else set(dag_ids)
    pairs = [
        (s, r)
        for s, r in project.pairs()
        if (not wanted_sites or s.name in wanted_sites)
        and (not wanted_regions or r.name in wanted_regions)
        and (allowed is None or scrape_dag_id(s.name, r.name) in allowed)
    ]
    clocks = {r.name: RegionClock.of(r) for _, r in pairs}
    return Frame(pairs, clocks, dates_shown(clocks.values(), now, days), now, days)


def build(
    project: Project,
    loads: Iterable[Load],
    runs: Iterable[Run],
    *,
    now: datetime | None = None,
    days: int = DEFAULT_DAYS,
    paused: Mapping[str, bool] | None = None,
    first_scheduled: Mapping[str, datetime] | None = None,
    sites: Iterable[str] = (),
    regions: Iterable[str] = (),
    states: Iterable[str] = (),
    dag_ids: Iterable[str] | None = None,
) -> Matrix:
    """The matrix of ``project``'s (site, region) pairs over the last ``days`` trading dates,
    from facts in hand (:func:`frame`, then :meth:`Frame.fill`)."""
    shown = frame(project, now=now, days=days, sites=sites, regions=regions, dag_ids=dag_ids)
    return shown.fill(loads, runs, paused=paused, first_scheduled=first_scheduled, states=states)


def _latest_runs(
    runs: Iterable[Run], clocks: Mapping[str, RegionClock], region_of: Mapping[str, str]
) -> dict[tuple[str, date], Run]:
    """The latest run (by row id) of each (dag_id, trading date)."""
    latest: dict[tuple[str, date], Run] = {}
    for run in runs:
        region = region_of.get(run.dag_id)
        if region is None:
            continue
        day = run_trading_date(clocks[region], run)
        if day is None:
            continue
        key = (run.dag_id, day)
        if key not in latest or run.id > latest[key].id:
            latest[key] = run
    return latest


def _cell(
    clock: RegionClock,
    day: date,
    now: datetime,
    load: Load | None,
    run: Run | None,
    first_due: date | None,
) -> Cell:
    """One cell's state and detail. ``first_due``: the trading date of the DAG's earliest
    scheduled run, None when it has had none."""
    cell = Cell(date=day.isoformat(), state=MISSING)
    if load is not None:
        cell.rows = load.rows
        cell.rows_inserted = load.rows_inserted
        cell.rows_updated = load.rows_updated
        cell.rows_deleted = load.rows_deleted
        cell.rows_rejected = load.rows_rejected
        cell.loaded_at = load.loaded_at.astimezone(UTC).isoformat(timespec="seconds")
        cell.load_run_id = load.run_id
    if run is not None:
        cell.run_id, cell.run_state = run.run_id, run.state
    if not clock.is_day(day):
        cell.state = CLOSED
        cell.detail = f"{clock.exchange} does not trade: {clock.why_closed(day)}"
    elif run is not None and run.state in _RUNNING_STATES:
        cell.state = RUNNING
        cell.detail = f"run {run.run_id} is {run.state}"
    elif run is not None and run.state == "failed" and (load is None or load.run_id != run.run_id):
        cell.state = FAILED
        cell.detail = f"run {run.run_id} failed" + (
            f"; the rows of the load of {cell.loaded_at} are kept" if load is not None else ""
        )
    elif load is not None:
        cell.state = COMPLETE if load.complete else PARTIAL
        cell.detail = (
            f"{load.rows} rows loaded"
            if load.complete
            else f"{load.rows} rows: the crawl stopped at the end of the off-peak window; "
            "rows it did not reach are kept from earlier loads"
        )
    elif clock.run_after(day) > now:
        cell.state = SCHEDULED
        opens = clock.run_after(day).astimezone(clock.tz)
        cell.detail = f"due when the off-peak window opens, {opens:%Y-%m-%d %H:%M} {clock.timezone}"
    elif run is not None:
        cell.detail = f"run {run.run_id} ended {run.state} without loading"
    elif first_due is None:
        cell.state = NEVER_DUE
        cell.detail = (
            "never due: the DAG has had no scheduled run yet (new, or paused since it was "
            "added); select the date to backfill it"
        )
    elif day < first_due:
        cell.state = NEVER_DUE
        cell.detail = (
            f"never due: before the DAG's first scheduled run, for {first_due.isoformat()} (the "
            "scheduler does not go back past catchup); select the date to backfill it"
        )
    else:
        cell.detail = "no run for this trading day"
    return cell
