"""`make bench`, section Burst: N scrape DAGs due at the same moment on a real scheduler, against
N no-op DAGs of the same shape in the same run (target: 1.5x the no-op floor).

Decisions (docs/burst.md has the measured numbers and what a deployment must set):

* The stack: the stack tier's ``AirflowStack`` (api-server, scheduler, dag-processor, triggerer
  as subprocesses; LocalExecutor, ``[core] parallelism`` 8, ``default_pool`` 128 slots) on its
  own embedded PostgreSQL, the demo sites behind nginx, ``OFFPEAK_IGNORE_WINDOWS=true`` (crawls
  start at once), deadline alerts on, as in `make run`. Not measured.
* The config: N sites in ONE region (``europe``), each a copy of the shipped ``equities`` site
  without its ``next_page`` (one page of 20 rows; the crawl ends complete after it), all on the
  shipped connection ``site_equities``; one pool per site (``max_concurrent_crawls`` 2), as
  ``offpeak.pools`` makes them. N from ``BENCH_BURST_DAGS`` (default :data:`DEFAULT_DAGS`, what
  fits ~5 min of bursts on 2 cores; the issue's 500 took 25.6 min for one pair here).
* The floor: N DAGs ``floor__<site>__europe`` in a DAG file of the bench's own, with the scrape
  DAGs' shape: the same timetable (the region's ``OffPeakTimetable``, so the scheduler makes
  their runs the same way), four tasks chained with the same ids, the first one in the same
  site pool, the last an ``EmptyOperator`` (ours, ``ExternalTaskMarker``, is one too: the
  scheduler marks it done without a process). The other three are ``PythonOperator`` s with a
  no-op callable, so each pays a real task start (an ``EmptyOperator`` would start none). No
  params, deadline, callbacks or outlets: those are part of what ours costs. The file builds
  only the DAG a task process asks for (``get_parsing_context``), as ours does.
* The DAGs folder: a copy of ``dags/scrape/`` (every scrape shard) plus the floor's file; the
  rollups, config check and maintenance DAGs are left out (they stay paused in `make run`;
  here they would only add parse work to both sides).
* A burst: every DAG of one side is paused until its burst; time zero is one REST call
  (``PATCH /api/v2/dags?dag_id_pattern=...``) that unpauses all N at once. Burst 1 of
  each side is the window opening itself: the scheduler makes each DAG's run for the latest
  due trading day (``max_dagruns_to_create_per_loop`` 10 at a time). Later bursts REST-trigger
  N runs of an earlier trading day while the side is paused, then unpause it (all N runs
  startable at once; no run creation in the measure). After its burst a side is paused again,
  so the other side's burst has the scheduler to itself.
* Order: pair 1 runs ours first (the floor gets any warm-up), later pairs alternate. A pair
  starts only if it should end before the script's deadline; pair 1 always runs.
* Figures: from time zero to the last ``scrape`` task instance's ``start_date`` ("all crawls
  started") and to the last ``load``'s ``end_date`` ("all loads finished"), for each side;
  the ratio is taken pair by pair.

* Where the CPU went: :class:`TaskCpu` samples /proc during each burst and splits each task
  instance's CPU into the supervising executor process, the task process and the crawl
  subprocess, beside each component's seconds (the JSON's ``where the CPU went``).
* ``BENCH_BURST_EXECUTOR=celery``: the same on the tests' CeleryExecutor stack (two workers of
  concurrency 4, Redis), its data root on the local disk (compose's default), not S3.

``BENCH_BURST_LOGS=<folder>`` keeps the components' logs there; ``BENCH_BURST_PARALLELISM`` and
``AIRFLOW__SCHEDULER__MAX_*`` (SCHEDULER_SETTINGS) try other settings (docs/burst.md).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import common
import yaml
from bench_schedule import Bench, CpuMeter, seconds, stack_services, utc
from common import Figure

SECTION = "Burst"
# Seconds for the whole script, stack start and stop included: 1 pair at N=60 (`make bench`).
TIME_LIMIT = int(os.environ.get("BENCH_BURST_SECONDS", 5 * 60))
DEFAULT_DAGS = 60  # ~2.5 min for a pair of bursts on 2 cores (docs/burst.md)
REGION = "europe"
BASE_SITE = "equities"
OURS, FLOOR = "ours", "floor"
PREFIX = {OURS: "scrape", FLOOR: "floor"}  # each side's DAG id prefix
TASKS = ("scrape", "transform", "load", "mark_rollup")  # both sides, in order
PROCESS_TASKS = TASKS[:3]  # the ones that start a task process (mark_rollup is empty)
STALL = 120  # seconds without a task instance starting or ending: the burst is stuck


class StackCpu:
    """CPU seconds used by the stack alone (its four components with every task process and
    crawl they start, PostgreSQL, and this process with the demo sites), not by other work on
    the machine: each process of the components' and the postmaster's sessions, its own time
    and its reaped children's (/proc/<pid>/stat). nginx is left out (a few ms per page)."""

    def __init__(self, stack, pg, more: dict[int, str] | None = None) -> None:
        # session id -> what runs in it; ``more``: the Celery stack's workers, Redis, S3 store
        self.names = {proc.pid: name for name, proc in stack.procs.procs} | (more or {})
        pid_file = Path(pg.data, "postmaster.pid")
        if pid_file.exists():
            self.names[int(pid_file.read_text().split()[0])] = "postgres"  # pg_ctl setsid()s it
        self.names.pop(os.getsid(0), None)  # never this process's own session (counted below)
        self.sessions = set(self.names)
        self.tick = os.sysconf("SC_CLK_TCK")

    def total(self) -> float:
        ticks = 0
        for _, fields, _ in proc_stats():
            if int(fields[3]) in self.sessions:  # session id
                ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        own = os.times()
        return ticks / self.tick + own.user + own.system


def proc_stats(titles: bool = False):
    """``(pid, fields of /proc/<pid>/stat after the command, command line or "")`` of every
    process still there when read (state first: ppid is fields[1], session fields[3], utime,
    stime, cutime and cstime fields[11:15])."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
            title = ""
            if titles:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        yield int(entry.name), stat[stat.rfind(")") + 2 :].split(), title


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class TaskCpu(threading.Thread):
    """Where the stack's CPU went during a burst, by task instance and by part, sampled from
    /proc every :data:`PERIOD` s:

    * ``supervisor``: the executor's process that supervises the task (a LocalExecutor worker,
      or a Celery pool process), its own CPU while its title names the task instance (Airflow
      sets it to the instance's id);
    * ``task process``: what that process reaped (the forked task runner, and with it the crawl
      subprocess), read from its children's CPU (exact: the kernel adds a child's whole CPU to
      its parent when it is reaped), minus the crawl;
    * ``crawl``: the ``scrapy crawl`` subprocess, its own CPU as last sampled (a lower bound:
      up to one period of its end is not seen);
    * ``components``: everything else in the stack's sessions (scheduler, api-server,
      dag-processor, triggerer, PostgreSQL, Celery's main processes), by session leader.
    """

    PERIOD = 0.2

    def __init__(self, sessions: dict[int, str]) -> None:
        super().__init__(daemon=True)
        self.sessions = sessions  # session id -> component name
        self.tick = os.sysconf("SC_CLK_TCK")
        self.halt = threading.Event()
        self.last: dict[int, tuple[int, int, str | None]] = {}  # pid -> own, children, ti
        self.by_ti: dict[str, dict[str, float]] = {}
        self.crawl: dict[int, tuple[str, int]] = {}  # pid -> ti, own ticks
        self.components: dict[str, float] = {}

    def _add(self, ti: str, part: str, ticks: int) -> None:
        parts = self.by_ti.setdefault(ti, {})
        parts[part] = parts.get(part, 0.0) + ticks / self.tick

    def sample(self) -> None:
        procs = {}
        for pid, fields, title in proc_stats(titles=True):
            ppid, sid = int(fields[1]), int(fields[3])
            own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
            found = _UUID.search(title) if "airflow" in title else None
            procs[pid] = (ppid, sid, own, children, found and found.group(0), title)
        # A process that ended was reaped by its parent, whose children's CPU now holds all of
        # it: what was already counted of it while it ran is taken off there, not counted twice.
        taken: dict[int, int] = {}
        for pid in set(self.last) - set(procs):
            ppid, counted = self.last.pop(pid)[3:5]
            taken[ppid] = taken.get(ppid, 0) + counted
        for pid, (ppid, sid, own, children, ti, title) in procs.items():
            parent_ti = procs[ppid][4] if ppid in procs else None
            if "scrapy crawl" in title:
                if parent_ti:
                    self.crawl[pid] = (parent_ti, own)
                continue
            if sid not in self.sessions or parent_ti:
                continue  # not the stack's; or a task runner, counted when its parent reaps it
            before = self.last.get(pid)
            if before is None:  # from its first sample on; what came before, its parent reaps
                self.last[pid] = (own, children, ti, ppid, 0)
                continue
            d_own, d_children = own - before[0], children - before[1] - taken.get(pid, 0)
            name = self.sessions[sid]
            if ti:
                self._add(ti, "supervisor", d_own)
            else:
                self.components[name] = self.components.get(name, 0.0) + d_own / self.tick
            if before[2]:  # what it reaped belongs to the task it was running until now
                self._add(before[2], "reaped", d_children)
            else:
                self.components[name] = self.components.get(name, 0.0) + d_children / self.tick
            self.last[pid] = (own, children, ti, ppid, before[4] + d_own + d_children)

    def run(self) -> None:
        while not self.halt.wait(self.PERIOD):
            self.sample()

    def stop(self) -> dict[str, dict[str, float]]:
        """Per task instance id: supervisor, task process and crawl CPU seconds."""
        self.halt.set()
        self.join()
        self.sample()
        for ti, ticks in self.crawl.values():
            self._add(ti, "crawl", ticks)
        out = {}
        for ti, parts in self.by_ti.items():
            crawl = parts.get("crawl", 0.0)
            out[ti] = {
                "supervisor": parts.get("supervisor", 0.0),
                "task process": max(parts.get("reaped", 0.0) - crawl, 0.0),
                "crawl": crawl,
            }
        return out


FLOOR_FILE = '''\
"""Airflow DAG file of bench_burst.py only: the no-op floor, N DAGs of the scrape DAGs' shape."""

from __future__ import annotations

from datetime import time

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, get_parsing_context

from offpeak.schedule.timetable import OffPeakTimetable

POOLS = {pools!r}  # DAG id -> the site pool its first task runs in
TIMETABLE = {timetable!r}


def noop():
    return None


_wanted = get_parsing_context().dag_id
for _dag_id, _pool in POOLS.items():
    if _wanted not in (None, _dag_id):
        continue
    with DAG(
        dag_id=_dag_id,
        schedule=OffPeakTimetable(
            **TIMETABLE,
            window_start=time.fromisoformat({window_start!r}),
            window_end=time.fromisoformat({window_end!r}),
        ),
        start_date=pendulum.datetime(2026, 1, 1, tz={timezone!r}),
        catchup=False,
        max_active_runs={max_active_runs},
        default_args={{"owner": "bench", "retries": 0}},
        tags=["bench"],
    ) as _dag:
        (
            PythonOperator(task_id="scrape", python_callable=noop, pool=_pool)
            >> PythonOperator(task_id="transform", python_callable=noop)
            >> PythonOperator(task_id="load", python_callable=noop)
            >> EmptyOperator(task_id="mark_rollup")
        )
    globals()[_dag_id] = _dag
'''


# [scheduler] settings that bound a burst, with Airflow 3.3's defaults; each can be set for the
# stack from the environment (AIRFLOW__SCHEDULER__<NAME>), as for any Airflow deployment.
SCHEDULER_SETTINGS = {
    "max_dagruns_to_create_per_loop": 10,
    "max_dagruns_per_loop_to_schedule": 20,
    "max_tis_per_query": 16,
}


def settings(env: dict[str, str]) -> dict[str, int]:
    """The settings that bound a burst, as the stack has them."""
    out = {"parallelism": int(env["AIRFLOW__CORE__PARALLELISM"])}
    for name, default in SCHEDULER_SETTINGS.items():
        out[name] = int(env.get(f"AIRFLOW__SCHEDULER__{name.upper()}") or default)
    return out


EXECUTORS = {
    "local": "LocalExecutor",
    "celery": "CeleryExecutor, two workers of concurrency 4, Redis",
}


def executor() -> str:
    """``BENCH_BURST_EXECUTOR``: ``local`` (default) or ``celery``."""
    name = os.environ.get("BENCH_BURST_EXECUTOR", "").strip().lower() or "local"
    if name not in ("local", "celery"):
        raise SystemExit(f"BENCH_BURST_EXECUTOR={name!r}: use local or celery")
    return name


def dag_count() -> int:
    raw = os.environ.get("BENCH_BURST_DAGS", "").strip()
    return int(raw) if raw else DEFAULT_DAGS


def make_config(config_dir: Path, count: int) -> list[str]:
    """Replace the stack's config copy's sites by ``count`` one-page equities sites in REGION;
    their names, sorted."""
    base = yaml.safe_load((config_dir / "sites" / f"{BASE_SITE}.yaml").read_text("utf-8"))
    for path in (config_dir / "sites").glob("*.yaml"):
        path.unlink()
    base["html_table"].pop("next_page", None)  # one page: the crawl ends complete after it
    base["regions"] = [REGION]
    names = [f"burst_{i:04d}" for i in range(count)]
    for name in names:
        data = {**base, "description": f"{base['description']} (burst copy {name}, one page)"}
        (config_dir / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return names


def make_dags_folder(folder: Path, project, sites: list[str]) -> dict[str, list[str]]:
    """The stack's DAGs folder: the scrape shards and the floor's file; each side's DAG ids."""
    from offpeak.naming import pool_name, scrape_dag_id
    from offpeak.schedule.tradingtime import RegionClock

    shutil.copytree(common.REPO / "dags" / "scrape", folder / "scrape",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(common.REPO / "dags" / ".airflowignore", folder / ".airflowignore")
    clock = RegionClock.of(project.regions[REGION])
    pools = {f"{PREFIX[FLOOR]}__{s}__{REGION}": pool_name(s) for s in sites}
    site = project.sites[sites[0]]
    (folder / "floor.py").write_text(
        FLOOR_FILE.format(
            pools=pools,
            timetable={
                "region": clock.name,
                "timezone": clock.timezone,
                "exchange": clock.exchange,
            },
            window_start=clock.window_start.isoformat(),
            window_end=clock.window_end.isoformat(),
            timezone=clock.timezone,
            max_active_runs=site.dag.max_active_runs,
        )
    )
    return {OURS: sorted(scrape_dag_id(s, REGION) for s in sites), FLOOR: sorted(pools)}


class Burst:
    """The stack, both sides' DAGs, and the bursts."""

    def __init__(self, stack, dag_ids: dict[str, list[str]], clock, cpu: StackCpu) -> None:
        self.stack = stack
        self.stack_cpu = cpu
        self.dag_ids = dag_ids
        self.clock = clock
        self.n = len(dag_ids[OURS])
        self.token = stack.token()
        self.seen: set[tuple[str, str]] = set()  # every run a burst measured
        self.latest = None  # burst 1's trading day (the latest due one)

    def rest(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        return self.stack.http(method, f"/api/v2{path}", body, self.token)

    def set_paused(self, side: str, paused: bool) -> None:
        """One call for all N DAGs of ``side``."""
        status, body = self.rest(
            "PATCH", f"/dags?dag_id_pattern={PREFIX[side]}__burst&limit=1", {"is_paused": paused}
        )  # dag_id_pattern: ILIKE %...% (dag_id_prefix_pattern matched nothing in 3.3.2's
        # PATCH here). The update takes every match; the limit is the answer's list only.
        assert status == 200, f"pause={paused} {side}: {status} {body}"
        ((count,),) = self.stack.query(
            "SELECT count(*) FROM dag WHERE dag_id = ANY(%s) AND is_paused = %s",
            self.dag_ids[side],
            paused,
        )
        assert count == self.n == body["total_entries"], f"pause={paused} {side}: {count} {body}"

    def runs(self, side: str) -> list[tuple]:
        return self.stack.query(
            "SELECT dag_id, run_id, run_type, state, logical_date FROM dag_run "
            "WHERE dag_id = ANY(%s)",
            self.dag_ids[side],
        )

    def stalled(self, side: str, t0: datetime) -> list[tuple]:
        """The side's task instance states since ``t0``: the same list twice means no task
        started or ended in between."""
        return self.stack.query(
            "SELECT state, count(*), max(start_date), max(end_date) FROM task_instance "
            "WHERE dag_id = ANY(%s) AND (start_date IS NULL OR start_date >= %s) "
            "GROUP BY state ORDER BY state",
            self.dag_ids[side],
            t0,
        )

    def trigger(self, side: str, back: int) -> set[tuple[str, str]]:
        """N queued runs of ``side`` (paused), ``back`` trading days before burst 1's."""
        day = self.clock.days_back(self.latest, back)
        logical = self.clock.midnight(day).isoformat()
        made = set()
        for dag_id in self.dag_ids[side]:
            status, body = self.rest(
                "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": logical, "conf": {}}
            )
            assert status == 200, f"trigger {dag_id} for {day}: {status} {body}"
            made.add((dag_id, body["dag_run_id"]))
        return made

    def burst(self, side: str, k: int, timeout: float) -> dict | None:
        """Burst ``k`` (0: the scheduler makes the runs; later: triggered first) of ``side``:
        unpause, wait for every run to end, pause; its record, or None past ``timeout``."""
        mode = "scheduled" if k == 0 else "triggered"
        expected = self.trigger(side, k) if k else None
        load_before = round(os.getloadavg()[0], 2)
        cpu = CpuMeter()
        cpu.start()
        stack_cpu = self.stack_cpu.total()
        profile = TaskCpu(self.stack_cpu.names)
        profile.start()
        t0 = utc(time.time())
        self.set_paused(side, False)
        give_up = time.monotonic() + timeout
        progress, moved = None, time.monotonic()
        while True:
            self.stack.procs.check()  # exits if a component died
            now = self.stalled(side, t0)
            if now != progress:
                progress, moved = now, time.monotonic()
            elif time.monotonic() - moved > STALL:
                raise SystemExit(
                    f"{side}: no task instance started or ended for {STALL} s (task states "
                    f"{now}); a task process that cannot build its DAG is rescheduled, not "
                    f"failed (e.g. DAG code edited during the bench)\n{self.stack.log_tail()}"
                )
            rows = [r for r in self.runs(side) if (r[0], r[1]) not in self.seen]
            if expected is None:  # burst 1: the scheduled runs made since time zero
                mine = [r for r in rows if r[2] == "scheduled"]
            else:
                mine = [r for r in rows if (r[0], r[1]) in expected]
            done = [r for r in mine if r[3] in ("success", "failed")]
            if len(done) == self.n:
                break
            if time.monotonic() > give_up:
                profile.stop()
                self.set_paused(side, True)
                return None
            time.sleep(1)
        busy = cpu.busy()
        stack_cpu = self.stack_cpu.total() - stack_cpu
        by_ti = profile.stop()
        self.set_paused(side, True)
        failed = sorted(r[0] for r in done if r[3] != "success")
        if failed:
            raise SystemExit(f"{side} runs failed: {failed[:10]}\n{self.stack.log_tail()}")
        pairs = {(r[0], r[1]) for r in done}
        self.seen |= pairs
        if self.latest is None:
            self.latest = self.clock.day_of_interval_start(done[0][4])
        others = [r for r in rows if (r[0], r[1]) not in pairs]
        record = self.record(side, mode, t0, pairs, busy, load_before, others)
        record["stack_cpu"] = stack_cpu
        record["cpu_profile"] = self.profile(side, by_ti, profile.components)
        return record

    def profile(
        self, side: str, by_ti: dict[str, dict[str, float]], components: dict[str, float]
    ) -> dict:
        """TaskCpu's figures: per task id, the median CPU seconds of each part over the
        burst's task instances (``side``'s only: a Celery pool process keeps the title of its
        last task while idle); the task processes' and the components' seconds."""
        names = dict(
            self.stack.query(
                "SELECT id::text, task_id FROM task_instance WHERE id::text = ANY(%s)"
                " AND dag_id = ANY(%s)",
                sorted(by_ti),
                self.dag_ids[side],
            )
        )
        per_task: dict[str, dict[str, list[float]]] = {}
        for ti, parts in by_ti.items():
            if ti in names:
                task = per_task.setdefault(names[ti], {})
                for part, value in parts.items():
                    task.setdefault(part, []).append(value)
        return {
            "per task process, median CPU s": {
                task: {part: _median(v) for part, v in parts.items()} | {"n": len(parts["crawl"])}
                for task, parts in sorted(per_task.items())
            },
            "task processes, CPU s in all": round(
                sum(sum(p.values()) for ti, p in by_ti.items() if ti in names), 1
            ),
            "components, CPU s": {k: round(v, 1) for k, v in sorted(components.items())},
        }

    def record(self, side, mode, t0, pairs, busy, load_before, others) -> dict:
        """What the burst's runs and task instances recorded (metadata DB)."""
        rows = self.stack.query(
            "SELECT r.dag_id, r.run_id, r.queued_at, r.start_date, r.end_date, t.task_id, "
            "t.scheduled_dttm, t.queued_dttm, t.start_date, t.end_date, t.try_number "
            "FROM dag_run r JOIN task_instance t ON t.dag_id = r.dag_id AND t.run_id = r.run_id "
            "WHERE r.dag_id = ANY(%s) AND r.run_id = ANY(%s)",
            self.dag_ids[side],
            sorted({run for _, run in pairs}),
        )
        runs: dict[tuple[str, str], dict] = {}
        for dag_id, run_id, queued, start, end, task, sched, tq, ts, te, tries in rows:
            if (dag_id, run_id) not in pairs:
                continue
            run = runs.setdefault((dag_id, run_id), {"queued": queued, "start": start,
                                                     "end": end, "tasks": {}})  # fmt: skip
            run["tasks"][task] = {"scheduled": sched, "queued": tq, "start": ts, "end": te,
                                  "tries": tries}  # fmt: skip
            if task in PROCESS_TASKS:  # how long the task process took to parse its DAG
                run["tasks"][task]["parse"] = Bench.parses(self, dag_id, run_id, task, tries)[
                    "parse_seconds"
                ]
        return {"side": side, "mode": mode, "t0": t0, "runs": list(runs.values()),
                "cpu_busy": busy, "load_before": load_before,
                "other_runs": len(others)}  # fmt: skip


# -------------------------------------------------------------------------- figures


def _last(rec: dict, task: str, field: str) -> float:
    return max(seconds(r["tasks"][task][field], rec["t0"]) for r in rec["runs"])


def crawls_started(rec: dict) -> float:
    return _last(rec, "scrape", "start")


def loads_finished(rec: dict) -> float:
    return _last(rec, "load", "end")


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summary(rec: dict, parallelism: int) -> dict:
    """One burst, in numbers: when runs, crawls and loads started and ended, where a task's
    time went, and how full the executor's slots were."""
    runs, t0 = rec["runs"], rec["t0"]
    tasks = [r["tasks"][t] for r in runs for t in PROCESS_TASKS]
    busy = sum(seconds(t["end"], t["start"]) for t in tasks)
    window = loads_finished(rec)
    first = min(seconds(r["tasks"]["scrape"]["start"], t0) for r in runs)
    out = {
        "mode": rec["mode"],
        "runs": len(runs),
        "runs created by (s)": round(max(seconds(r["queued"], t0) for r in runs), 1)
        if rec["mode"] == "scheduled"
        else "before time zero (triggered)",
        "runs started by (s)": round(max(seconds(r["start"], t0) for r in runs), 1),
        "first crawl started (s)": round(first, 1),
        "all crawls started (s)": round(crawls_started(rec), 1),
        "all loads finished (s)": round(window, 1),
        "all runs done (s)": round(max(seconds(r["end"], t0) for r in runs), 1),
        "task processes": len(tasks),
        "task starts per s (time zero to last load)": round(len(tasks) / window, 2),
        "executor slots busy (task running time / (parallelism x time to last load))": (
            f"{busy / (parallelism * window):.0%}"
        ),
        "retried tasks": sum(1 for t in tasks if t["tries"] > 1),
        "stack CPU s (components, tasks, crawls, PostgreSQL; time zero to all runs done)": (
            round(rec["stack_cpu"], 1)
        ),
        "stack CPU s per task process": round(rec["stack_cpu"] / len(tasks), 2),
        "CPU busy (whole machine)": f"{rec['cpu_busy']:.0%}",
        "load average before": rec["load_before"],
    }
    per_task = {}
    for task in PROCESS_TASKS:
        ts = [r["tasks"][task] for r in runs]
        per_task[task] = {
            "scheduled -> queued": _median(seconds(t["queued"], t["scheduled"]) for t in ts),
            "queued -> running": _median(seconds(t["start"], t["queued"]) for t in ts),
            "running -> done": _median(seconds(t["end"], t["start"]) for t in ts),
            "DAG parse in the task process": _median(p for t in ts for p in t["parse"]),
        }
    out["per task, median s"] = per_task
    out["where the CPU went (TaskCpu)"] = rec["cpu_profile"]
    if rec["other_runs"]:
        out["Caution: other runs of these DAGs meanwhile"] = rec["other_runs"]
    return out


def figures(pairs: list[dict], n: int, knobs: dict[str, int], repeat: int) -> list[Figure]:
    """The figures from ``pairs`` (each: {OURS: record, FLOOR: record or None})."""
    done = [p for p in pairs if p[FLOOR] is not None]
    fewer = "" if len(pairs) >= repeat else (
        f" {len(pairs)} pair(s) of bursts, not {repeat}: a pair takes minutes here and the "
        "script must end within ~9 min."
    )  # fmt: skip
    note = (
        f"{n} scrape__<site>__{REGION} DAGs (one-page demo crawls, each site its own pool) "
        "made due at once by one REST call that unpauses them all (burst 1: the scheduler "
        "makes each DAG's run for the latest due trading day; later bursts: runs triggered "
        "first, then unpaused), against the same number of no-op DAGs of the same shape "
        "(same timetable, same 4 task ids chained, first task in the site pool, the last "
        "an EmptyOperator as ours; three PythonOperators with a no-op callable, each a real "
        "task start), burst by burst in the same run (pair 1: ours first). Real stack "
        f"({EXECUTORS[executor()]}, default_pool 128, "
        f"{', '.join(f'{k} {v}' for k, v in knobs.items())}), "
        f"OFFPEAK_IGNORE_WINDOWS=true, on {os.cpu_count()} cores shared with other work. "
        f"N={n}, not the issue's 500: both sides' times grow about linearly with N, and 500 "
        "took 25.6 min for one pair here; BENCH_BURST_DAGS=500 runs it "
        "(docs/burst.md)." + fewer
    )
    extra = {
        "bursts": [
            {side: summary(p[side], knobs["parallelism"]) for side in (OURS, FLOOR) if p[side]}
            for p in pairs
        ]
    }
    on = "" if executor() == "local" else f" ({EXECUTORS[executor()].split(',')[0]})"
    common_args = {"section": SECTION, "anchor": f"{n} no-op DAGs, same shape", "target": 1.5}
    return [
        Figure(
            name=f"{n} DAGs due at once{on}: all crawls started",
            runs=[crawls_started(p[OURS]) for p in done],
            anchor_runs=[crawls_started(p[FLOOR]) for p in done],
            note="Seconds from time zero (the unpause) to the last `scrape` task instance's "
            "start_date (its task process running). " + note,
            extra=extra,
            **common_args,
        ),
        Figure(
            name=f"{n} DAGs due at once{on}: all loads finished",
            runs=[loads_finished(p[OURS]) for p in done],
            anchor_runs=[loads_finished(p[FLOOR]) for p in done],
            note="Seconds from time zero (the unpause) to the last `load` task instance's "
            "end_date. " + note,
            extra={"see": "the first figure's extra"},
            **common_args,
        ),
        Figure(
            section=SECTION,
            name=f"{n} DAGs due at once{on}: CPU seconds of the stack",
            runs=[p[OURS]["stack_cpu"] for p in done],
            anchor=common_args["anchor"],
            anchor_runs=[p[FLOOR]["stack_cpu"] for p in done],
            note="CPU seconds the stack used from time zero to its last run's end: the four "
            "components with every task process and crawl they started, PostgreSQL, and the "
            "bench process with the demo sites (/proc, sessions of the components and the "
            "postmaster); other work on the shared machine is not counted, so this ratio "
            "moves less than the wall-clock ones. No target: it says how many cores a burst "
            "needs (docs/burst.md). " + note,
            extra={"see": "the first figure's extra"},
        ),
    ]


# -------------------------------------------------------------------------- main


def run(args, deadline: float) -> list[Figure]:
    """The stack, then pairs of bursts while the next pair fits before ``deadline``."""
    with stack_services("BENCH_BURST_LOGS") as (session, holder):
        pg = session["pg"]

        from offpeak.config import load_project
        from offpeak.schedule.tradingtime import RegionClock
        from support.stack import AirflowStack

        n = dag_count()
        celery = executor() == "celery"
        if celery:
            from support.celery import CeleryStack, Redis, S3Store

            home = session["state"] / "celery"
            home.mkdir()
            redis, s3 = Redis(home).start(), S3Store(home).start()
            holder["more"] = [redis, s3]
            stack = holder["stack"] = CeleryStack(pg, home, redis, s3)
            # The data root on a disk the workers share, as docker-compose's default (a
            # volume), not the test S3 store: its CPU would be counted as the stack's.
            stack.env["OFFPEAK_DATA_ROOT"] = os.environ["OFFPEAK_DATA_ROOT"]
        else:
            stack = holder["stack"] = AirflowStack(pg, session["state"] / "stack")
        stack.env["OFFPEAK_IGNORE_WINDOWS"] = "true"  # as `make run`: crawls start at once
        sites = make_config(stack.config_dir, n)
        project = load_project(stack.config_dir)
        assert not project.errors, project.error_report
        folder = session["state"] / "dags"
        dag_ids = make_dags_folder(folder, project, sites)
        stack.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
        if os.environ.get("BENCH_BURST_PARALLELISM"):
            stack.env["AIRFLOW__CORE__PARALLELISM"] = os.environ["BENCH_BURST_PARALLELISM"]
        began = time.monotonic()
        stack.start()
        stack.wait_parsed(dag_ids[OURS] + dag_ids[FLOOR], timeout=300)
        more = {}
        if celery:  # two workers of half the slots each, as test_celery.py's deployment
            stack.start_workers(w1=["default"], w2=["default"])
            more = {p.pid: f"celery {w}" for w, p in stack.workers.items()}
            more |= {redis.proc.pid: "redis"}
        print(f"stack up, {2 * n} DAGs parsed: {time.monotonic() - began:.0f} s", flush=True)

        cpu = StackCpu(stack, pg, more)
        bench = Burst(stack, dag_ids, RegionClock.of(project.regions[REGION]), cpu)
        pairs = []
        for k in range(args.repeat):
            began = time.monotonic()
            order = (OURS, FLOOR) if k % 2 == 0 else (FLOOR, OURS)
            pair = {OURS: None, FLOOR: None}
            for side in order:
                # Pair 1 may overrun the deadline on a busy machine (no figure without it),
                # and a large N takes longer than the deadline (~4 s a DAG for ours here).
                timeout = max(max(600, 8 * n) if k == 0 else 0, deadline - time.monotonic())
                pair[side] = bench.burst(side, k, timeout)
                if pair[side] is None:
                    break
                print(f"pair {k + 1}, {side}: all crawls started "
                      f"{crawls_started(pair[side]):.1f} s, all loads finished "
                      f"{loads_finished(pair[side]):.1f} s", flush=True)  # fmt: skip
            if pair[OURS] is None or pair[FLOOR] is None:
                if k == 0:
                    raise SystemExit(f"pair 1 did not finish in time\n{stack.log_tail()}")
                print(f"pair {k + 1} dropped: not finished by the deadline", flush=True)
                break
            pairs.append(pair)
            took = time.monotonic() - began
            if k + 1 < args.repeat and time.monotonic() + took * 1.2 > deadline:
                print(f"stopping after {k + 1} pair(s): another would pass the limit", flush=True)
                break
        return figures(pairs, n, settings(stack.env), args.repeat)


def _json_safe(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def main() -> None:
    started = time.monotonic()
    args = common.main_args()
    figs = run(args, deadline=started + TIME_LIMIT - 25)  # stopping the stack takes ~20 s
    common.write(figs, args.json)
    for f in figs:
        ratio = common.spread(f.ratios, "{:.2f}")
        print(f"{f.name}: {common.spread(f.runs)} s; floor {common.spread(f.anchor_runs)} s; "
              f"ratio {ratio}x" + (f" (target <= {f.target}x)" if f.target else ""))  # fmt: skip
    import json

    print(json.dumps(figs[0].extra, indent=1, default=_json_safe))
    print(f"section took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
