"""`make bench`, section Scheduling: how long a run waits for its crawl, and how long one run of
every demo DAG takes, under a real scheduler with the LocalExecutor (no target: know them).

One stack for the whole script (not measured): the stack tier's ``AirflowStack`` (api-server,
scheduler, dag-processor, triggerer as subprocesses, LocalExecutor with parallelism 8) on its
own embedded PostgreSQL and the demo sites, with `make run`'s settings: the shipped config
(site pools, 60 s rollup polls) and ``OFFPEAK_IGNORE_WINDOWS=true`` (crawls start at once).

A batch is one run of each of `make run`'s 16 DAGs (11 ``scrape__<site>__<region>`` and the 5
region rollups; ``rollup__global`` stays paused, as in `make run`), started together, and
waited for to the end. Batch 1 is `make run` itself: the DAGs are unpaused and the scheduler
makes each one's run for its region's latest due trading day. Batches 2.. are REST triggers of
the 16 DAGs with the logical date of an earlier trading day (the region's local midnight, as
the timetable gives it, so the rollups' sensors find their site runs): new partitions each
time, as in batch 1. `make bench` runs batch 1 only (TIME_LIMIT), to stay under 25 minutes.

``BENCH_SCHEDULE_LOGS=<folder>`` keeps the components' and tasks' logs there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import common
from common import Figure

SECTION = "Scheduling"
TIME_LIMIT = 150  # seconds for the whole script, stack start and stop included (1 batch)
SCRAPE_TASKS = ("scrape", "transform", "load")


def utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, tz=UTC)


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def spread(values) -> str:
    values = [v for v in values if v is not None]
    return common.spread(values) if values else "n/a"


class Bench:
    """The stack, the DAGs of `make run`, and what each batch's runs recorded."""

    def __init__(self, stack, project) -> None:
        from offpeak.naming import parse_dag_id
        from offpeak.schedule.tradingtime import RegionClock

        self.stack = stack
        self.dag_ids = _main_job_dags(project)
        self.scrapes = [d for d in self.dag_ids if parse_dag_id(d).site is not None]
        regions = project.regions
        self.clocks = {d: RegionClock.of(regions[parse_dag_id(d).scope]) for d in self.dag_ids}
        self.latest: dict[str, object] = {}  # the scheduled batch's trading day per DAG
        self.run_ids: set[tuple[str, str]] = set()  # every run the batches started

    def others(self) -> list[tuple]:
        """Runs of our DAGs that no batch started (e.g. a window opened during the bench and
        the scheduler made that session's run): they compete with the batches."""
        rows = self.stack.query(
            "SELECT dag_id, run_id, run_type, queued_at FROM dag_run WHERE dag_id = ANY(%s)",
            self.dag_ids,
        )
        return [r for r in rows if (r[0], r[1]) not in self.run_ids]

    # ---------------------------------------------------------------------- starting runs

    def scheduled_batch(self) -> dict[str, dict]:
        """`make run`: unpause every DAG; the scheduler makes each one's latest due run."""
        started = {}
        for dag_id in self.dag_ids:
            started[dag_id] = {"unpaused_at": utc(time.time())}
            self.stack.set_paused(dag_id, False)

        def made():
            rows = self.stack.query(
                "SELECT dag_id, run_id FROM dag_run WHERE run_type = 'scheduled' "
                "AND dag_id = ANY(%s)",
                self.dag_ids,
            )
            return dict(rows) if len(rows) >= len(self.dag_ids) else None

        runs = self.stack.wait(made, 60, "the scheduler to make a run of every DAG", every=0.5)
        for dag_id, run_id in runs.items():
            started[dag_id]["run_id"] = run_id
            ((logical,),) = self.stack.query(
                "SELECT logical_date FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id
            )
            self.latest[dag_id] = self.clocks[dag_id].day_of_interval_start(logical)
        return started

    def triggered_batch(self, back: int) -> dict[str, dict]:
        """A REST trigger of every DAG for its region's trading day ``back`` trading days before
        the scheduled batch's (logical date: the region's local midnight of that day)."""
        started = {}
        for dag_id in self.dag_ids:
            clock = self.clocks[dag_id]
            day = clock.days_back(self.latest[dag_id], back)
            status, body = self.stack.rest(
                "POST",
                f"/dags/{dag_id}/dagRuns",
                {"logical_date": clock.midnight(day).isoformat(), "conf": {}},
            )
            assert status == 200, f"trigger {dag_id} for {day}: {status} {body}"
            started[dag_id] = {"run_id": body["dag_run_id"], "trading_date": day.isoformat()}
        return started

    # ---------------------------------------------------------------------- results

    def wait_done(self, started: dict[str, dict], timeout: float) -> bool:
        """Until every run of the batch has finished (True), or ``timeout`` (False); exits
        naming the DAGs when a run failed."""
        run_ids = [s["run_id"] for s in started.values()]
        self.run_ids.update((d, s["run_id"]) for d, s in started.items())
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            self.stack.procs.check()  # exits if a component died
            rows = self.stack.query(
                "SELECT dag_id, state FROM dag_run WHERE run_id = ANY(%s) AND dag_id = ANY(%s)",
                run_ids,
                self.dag_ids,
            )
            finished = {d: s for d, s in rows if s in ("success", "failed")}
            if len(finished) == len(started):
                failed = sorted(d for d, s in finished.items() if s != "success")
                if failed:
                    raise SystemExit(f"runs failed: {failed}\n{self.stack.log_tail()}")
                return True
            time.sleep(1)
        return False

    def collect(self, started: dict[str, dict], kind: str) -> list[dict]:
        """One record per run: its times and its tasks' times, read from the metadata DB."""
        records = []
        for dag_id, start in started.items():
            ((run_type, queued, run_start, run_end, run_after, logical),) = self.stack.query(
                "SELECT run_type, queued_at, start_date, end_date, run_after, logical_date "
                "FROM dag_run WHERE dag_id = %s AND run_id = %s",
                dag_id,
                start["run_id"],
            )
            tasks = {}
            for task_id, tries, scheduled, queued_dttm, began, ended in self.stack.query(
                "SELECT task_id, try_number, scheduled_dttm, queued_dttm, start_date, end_date "
                "FROM task_instance WHERE dag_id = %s AND run_id = %s",
                dag_id,
                start["run_id"],
            ):
                tasks[task_id] = {
                    "tries": tries, "scheduled": scheduled, "queued": queued_dttm,
                    "start": began, "end": ended,
                    **self.parses(dag_id, start["run_id"], task_id, tries),
                }  # fmt: skip
            # Scheduled: due when its run_after passed, or, for a DAG paused until then (as in
            # `make run`), when it was unpaused. Triggered: when the trigger queued it.
            due = max(run_after, start["unpaused_at"]) if kind == "scheduled" else queued
            record = {
                "dag_id": dag_id, "run_id": start["run_id"], "kind": kind, "run_type": run_type,
                "logical_date": logical.isoformat() if logical else None,
                "due": due, "queued_at": queued, "start": run_start, "end": run_end,
                "tasks": tasks,
            }  # fmt: skip
            if dag_id in self.scrapes:
                pointer = self.stack.xcom(dag_id, start["run_id"], "scrape")
                record["trading_date"] = pointer["trading_date"]
                record["crawl_started_at"] = datetime.fromisoformat(pointer["crawl_started_at"])
            records.append(record)
        return records

    def parses(self, dag_id: str, run_id: str, task_id: str, tries: int) -> dict:
        """From the task's logs: how long each start of a task process (each try, and each
        resume after a deferral) took to parse its DAG, and when the last try's first one
        had parsed it."""
        folder = Path(
            self.stack.env["AIRFLOW_HOME"], "logs", f"dag_id={dag_id}", f"run_id={run_id}",
            f"task_id={task_id}",
        )  # fmt: skip
        done, took = [], []
        for path in sorted(folder.glob("attempt=*.log")):
            if not re.fullmatch(r"attempt=\d+\.log", path.name):  # not a trigger's log
                continue
            filling = None
            for line in path.read_text(errors="replace").splitlines():
                if "Filling up the DagBag" not in line and "Worker startup parse" not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                moment = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
                if entry["event"].startswith("Filling up the DagBag"):
                    filling = moment
                elif filling is not None:
                    if path.name == f"attempt={tries}.log":
                        done.append(moment)
                    took.append(seconds(moment, filling))
                    filling = None
        return {"parsed": done[0] if done else None, "parse_seconds": took}


def _main_job_dags(project) -> list[str]:
    """`make run`'s DAGs: every site DAG and region rollup (dev.devenv.MAIN_JOB_DAGS)."""
    from dev.devenv import MAIN_JOB_DAGS
    from offpeak.factory import dag_ids

    return [d for d in dag_ids(project) if re.match(MAIN_JOB_DAGS, d)]


# -------------------------------------------------------------------------- figures


def scrape_phases(r: dict) -> dict[str, float | None]:
    """Where a scrape run's time goes: the wait for its crawl step by step, then per task the
    scheduler's part (upstream done -> scheduled -> queued to the executor), the executor's and
    the task process's start (queued -> running) and the task itself (running -> done)."""
    t = r["tasks"]
    scrape = t["scrape"]
    phases = {
        "due -> run created": seconds(r["queued_at"], r["due"]),
        "run created -> run started": seconds(r["start"], r["queued_at"]),
        "run started -> scrape scheduled": seconds(scrape["scheduled"], r["start"]),
    }
    previous = None
    for task in SCRAPE_TASKS:
        times = t[task]
        if previous is not None:
            phases[f"{previous} done -> {task} scheduled"] = seconds(
                times["scheduled"], t[previous]["end"]
            )
        phases[f"{task}: scheduled -> queued to executor"] = seconds(
            times["queued"], times["scheduled"]
        )
        phases[f"{task}: queued -> running"] = seconds(times["start"], times["queued"])
        phases[f"{task}: running -> DAG parsed in the task process"] = seconds(
            times["parsed"], times["start"]
        )
        if task == "scrape":
            phases["scrape: running -> crawl subprocess launched (1 s resolution)"] = seconds(
                r["crawl_started_at"], scrape["start"]
            )
        phases[f"{task}: running -> done"] = seconds(times["end"], times["start"])
        previous = task
    phases["load done -> run done"] = seconds(r["end"], t["load"]["end"])
    return phases


class CpuMeter:
    """How busy the machine's CPUs were between :meth:`start` and :meth:`busy` (all
    processes, ours and anyone else's: /proc/stat)."""

    @staticmethod
    def _sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def start(self) -> None:
        self.begin = self._sample()

    def busy(self) -> float:
        busy, total = self._sample()
        return (busy - self.begin[0]) / max(total - self.begin[1], 1)


def _scrape(r: dict) -> bool:
    return "crawl_started_at" in r


def _per_dag(values: dict[str, list[float]]) -> dict[str, str]:
    return {d: spread(v) for d, v in sorted(values.items())}


def figures(batches: list[dict], repeat: int, poke: int) -> list[Figure]:
    """The three figures, from ``batches`` (each: kind, records, cpu_busy, load_before)."""
    from offpeak.naming import parse_dag_id

    records = [r for b in batches for r in b["records"]]
    scrapes = [r for r in records if _scrape(r)]
    latency = {id(r): seconds(r["tasks"]["scrape"]["start"], r["due"]) for r in scrapes}
    phases = [scrape_phases(r) for r in scrapes]
    parse_times = [p for r in records for t in r["tasks"].values() for p in t["parse_seconds"]]
    retried = [
        f"{r['dag_id']}.{task_id} (try {t['tries']})"
        for r in records
        for task_id, t in r["tasks"].items()
        if t["tries"] > 1
    ]
    # The site pools (2 crawls of a site at once): a crawl queued to the executor only after
    # another crawl of its site in the same batch had ended waited for a slot.
    waited = {id(r) for b in batches for r in _pool_waits(b["records"])}
    wall: dict[str, list[float]] = {}
    for r in records:
        wall.setdefault(r["dag_id"], []).append(seconds(r["end"], r["start"]))
    latency_by_dag: dict[str, list[float]] = {}
    for r in scrapes:
        latency_by_dag.setdefault(r["dag_id"], []).append(latency[id(r)])
    # A rollup's run ends after the first sensor poll that finds its region's last load done.
    after_loads = []
    for b in batches:
        for r in b["records"]:
            if not _scrape(r):
                region = parse_dag_id(r["dag_id"]).scope
                loads = [
                    s["tasks"]["load"]["end"]
                    for s in b["records"]
                    if _scrape(s) and parse_dag_id(s["dag_id"]).scope == region
                ]
                after_loads.append(seconds(r["end"], max(loads)))
    batch_walls = [
        seconds(max(r["end"] for r in b["records"]), min(r["due"] for r in b["records"]))
        for b in batches
    ]
    kinds = [b["kind"] for b in batches]
    fewer = (
        ""
        if len(batches) >= repeat
        else f" {len(batches)} batch(es), not {repeat}: one batch takes minutes here and the "
        "script must end within its time limit (TIME_LIMIT)."
    )
    context = (
        "Real stack (scheduler, dag-processor, triggerer, api-server as processes; "
        "LocalExecutor, parallelism 8) with `make run`'s config (site pools of 2 crawls, "
        f"rollup sensors polled every {poke} s, OFFPEAK_IGNORE_WINDOWS=true), on "
        f"{os.cpu_count()} cores shared with other work (CPU busy during each batch in the "
        f"batch figure's extra). Batches: {', '.join(kinds)}. Batch 1 is `make run`: the 16 "
        "DAGs are unpaused and the scheduler makes each one's run for its region's latest "
        "due trading day; later batches are REST triggers of an earlier trading day each "
        f"(new partitions every time, like batch 1).{fewer}"
    )
    if retried:  # a retry waits retry_delay (60 s): those runs are not the usual case
        context += f" Caution: {len(retried)} task(s) needed a retry: {', '.join(retried)}."
    return [
        Figure(
            section=SECTION,
            name="run due -> crawl starts (scrape DAGs, per run)",
            runs=[latency[id(r)] for r in scrapes],
            note=(
                "Per run of the 11 scrape__<site>__<region> DAGs: start_date of the run's "
                "`scrape` task instance (the task process is running) minus the moment the "
                "run became due. Due = queued_at for a triggered run; for `make run`'s "
                "scheduled runs, whose run_after (their window's opening) is hours in the "
                "past, the moment the DAG was unpaused (max(run_after, unpause)). Median "
                "(min-max) over all runs of all batches; the 16 runs of a batch start "
                f"together. {len(waited)} of {len(scrapes)} runs waited for their site pool "
                "(queued only after another crawl of the site ended). " + context
            ),
            extra={
                "by kind": {
                    k: spread(latency[id(r)] for r in scrapes if r["kind"] == k)
                    for k in dict.fromkeys(kinds)
                },
                "without a pool wait": spread(
                    latency[id(r)] for r in scrapes if id(r) not in waited
                ),
                "with a pool wait": spread(latency[id(r)] for r in scrapes if id(r) in waited),
                "due -> crawl subprocess launched (the XCom's crawl_started_at, 1 s)": spread(
                    seconds(r["crawl_started_at"], r["due"]) for r in scrapes
                ),
                "DAG parse at each task process start (all 16 DAGs' tasks, resumes too)": (
                    f"{spread(parse_times)} s, {len(parse_times)} parses"
                ),
                "phases of a scrape DAG run, median (min-max) s": {
                    k: spread(p[k] for p in phases) for k in phases[0]
                },
                "per DAG": _per_dag(latency_by_dag),
            },
        ),
        Figure(
            section=SECTION,
            name="wall time of one run, per DAG (16 DAGs)",
            runs=[seconds(r["end"], r["start"]) for r in records],
            note=(
                "Per run of each of `make run`'s 16 DAGs (11 scrape DAGs, 5 region rollups) "
                "started together: dag_run end_date - start_date. Median (min-max) over "
                "every run of every batch; extra: each DAG's figure, and the median and max "
                "over DAGs. A region rollup waits for its region's loads with deferrable "
                f"sensors the triggerer polls every {poke} s: it ends at the first poll "
                "after the last load (plus its own tasks), so its wall time is the sites' "
                "plus up to one poll. " + context
            ),
            extra={
                "per DAG": _per_dag(wall),
                "median over DAGs (each DAG's median)": round(
                    statistics.median(statistics.median(v) for v in wall.values()), 2
                ),
                "max over DAGs (each DAG's median)": round(
                    max(statistics.median(v) for v in wall.values()), 2
                ),
                "scrape DAGs": spread(seconds(r["end"], r["start"]) for r in scrapes),
                "region rollups": spread(
                    seconds(r["end"], r["start"]) for r in records if not _scrape(r)
                ),
                "rollup: region's last load done -> rollup run done": spread(after_loads),
            },
        ),
        Figure(
            section=SECTION,
            name="wall time of a batch: one run of all 16 DAGs together",
            runs=batch_walls,
            note=(
                "From the first of the batch's 16 runs becoming due (see the first figure) "
                "to the last one's end_date. " + context
            ),
            extra={
                "batches": [
                    {
                        "kind": b["kind"],
                        "seconds": round(w, 1),
                        "last scrape DAG done after s": round(
                            seconds(
                                max(r["end"] for r in b["records"] if _scrape(r)),
                                min(r["due"] for r in b["records"]),
                            ),
                            1,
                        ),
                        "CPU busy (whole machine)": f"{b['cpu_busy']:.0%}",
                        "load average before": b["load_before"],
                        "trading dates": sorted(
                            {r["trading_date"] for r in b["records"] if "trading_date" in r}
                        ),
                    }
                    for b, w in zip(batches, batch_walls, strict=True)
                ]
            },
        ),
    ]


def _pool_waits(batch: list[dict]) -> list[dict]:
    """The scrape runs of ``batch`` whose crawl was queued only after another crawl of the same
    site had ended: they waited for a slot of the site's pool."""
    from offpeak.naming import parse_dag_id

    by_site: dict[str, list[dict]] = {}
    for r in batch:
        if "crawl_started_at" in r:
            by_site.setdefault(parse_dag_id(r["dag_id"]).site, []).append(r)
    return [
        r
        for runs in by_site.values()
        for r in runs
        if any(
            o is not r and o["tasks"]["scrape"]["end"] <= r["tasks"]["scrape"]["queued"]
            for o in runs
        )
    ]


# -------------------------------------------------------------------------- main


@contextmanager
def stack_services(logs_env: str):
    """PostgreSQL and the demo sites (behind nginx) started for a bench's ``AirflowStack``; yields
    ``(session, holder)``: put the stack in ``holder["stack"]`` (and services it needs, each with
    a ``stop()``, in ``holder["more"]``) and it is stopped on the way out
    (its logs copied to the folder ``$<logs_env>`` when set), then the services and the state
    folder go. SIGTERM stops it the same way."""
    from support import services

    services.configure()  # folders, ports and Airflow's environment; starts nothing
    session = services._session
    holder: dict = {"stack": None}

    def _stop(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    try:
        session["pg"].start()
        session["pg_started"] = True  # services.unconfigure() stops it
        services.start_demo_sites()  # and nginx in front; services.unconfigure() stops both
        yield session, holder
    finally:
        try:
            stack = holder["stack"]
            if stack is not None:
                stack.stop()
            for service in holder.get("more", []):  # e.g. a Celery stack's Redis
                service.stop()
                keep = os.environ.get(logs_env)  # a folder: keep the logs there
                if keep:
                    import shutil

                    shutil.copytree(stack.procs.logs, Path(keep, "components"), dirs_exist_ok=True)
                    tasks = Path(stack.env["AIRFLOW_HOME"], "logs")
                    shutil.copytree(tasks, Path(keep, "tasks"), dirs_exist_ok=True)
        finally:
            services.unconfigure()  # the demo sites, PostgreSQL and the state folder


def run(args, deadline: float) -> list[Figure]:
    """The stack, then batches while the next one fits before ``deadline`` (monotonic)."""
    from offpeak.config import load_project
    from offpeak.factory import dag_ids
    from support.stack import AirflowStack

    with stack_services("BENCH_SCHEDULE_LOGS") as (session, holder):
        stack = holder["stack"] = AirflowStack(session["pg"], session["state"] / "stack")
        stack.env["OFFPEAK_IGNORE_WINDOWS"] = "true"  # as `make run`: crawls start at once
        project = load_project(stack.config_dir)
        bench = Bench(stack, project)
        began = time.monotonic()
        stack.start()
        stack.wait_parsed(dag_ids(project))
        print(f"stack up, DAGs parsed: {time.monotonic() - began:.0f} s", flush=True)

        batches = []
        cpu = CpuMeter()
        for k in range(args.repeat):
            began = time.monotonic()
            load_before = round(os.getloadavg()[0], 2)
            cpu.start()
            if k == 0:
                started, kind = bench.scheduled_batch(), "scheduled"
            else:
                started, kind = bench.triggered_batch(back=k), "triggered"
            # The first batch may overrun the deadline on a busy machine (no figure without
            # it); a later one starts only when it should end in time, and is dropped if not.
            if not bench.wait_done(started, max(300 if k == 0 else 0, deadline - time.monotonic())):
                if k == 0:
                    raise SystemExit(f"the batch did not finish in time\n{stack.log_tail()}")
                print(f"batch {k + 1} dropped: not finished by the deadline", flush=True)
                break
            batches.append(
                {
                    "kind": kind,
                    "records": bench.collect(started, kind),
                    "cpu_busy": cpu.busy(),
                    "load_before": load_before,
                }
            )
            took = time.monotonic() - began
            print(f"batch {k + 1} ({kind}): {took:.0f} s", flush=True)
            if k + 1 < args.repeat and time.monotonic() + took * 1.2 > deadline:
                print(f"stopping after {k + 1} batch(es): another would end late", flush=True)
                break
        figs = figures(batches, args.repeat, project.rollups.poke_interval_seconds)
        others = bench.others()
        if others:  # say so in every figure: the batches were not alone
            for f in figs:
                f.note += f" Caution: {len(others)} other run(s) of these DAGs ran meanwhile."
                f.extra["other runs"] = [[str(v) for v in r] for r in others]
        return figs


def main() -> None:
    started = time.monotonic()
    args = common.main_args()
    # Batches start only while they can end by then; stopping the stack takes up to ~20 s.
    figs = run(args, deadline=started + TIME_LIMIT - 25)
    common.write(figs, args.json)
    for f in figs:
        print(f"{f.name}: {common.spread(f.runs)} s")
        for key, value in f.extra.items():
            print(f"  {key}: {value}")
    caution = figs[0].note.partition(" Caution: ")[2]
    if caution:
        print(f"Caution: {caution}")


if __name__ == "__main__":
    sys.exit(main())
