"""`make bench`, section Parsing: what the dag-processor pays for our DAG files, and what a worker
pays at each task start to rebuild the one DAG it runs.

1. **300 (site, region) DAGs + rollups**: a generated config (the shipped sites copied and
   varied, 60 sites x 5 regions) parsed from a folder holding copies of our three DAG files,
   against the anchor: one generated static Python file that writes the same DAGs out literally
   (same operators, arguments and doc_md strings; no config read). Both are parsed the same way,
   ``DagBag(dag_folder=...)``, each run in a fresh process; the clock covers the DagBag fill
   only, after ``import airflow`` and the DagBag module. The two must serialise identically
   (``DagSerialization.to_dict`` per DAG id, file locations left out): the script fails if not.
2. **One DAG under the parsing context**: a fresh process that has imported what a task runner
   has when it parses (``airflow.sdk.execution_time.task_runner`` and the DagBag module) builds
   ``BundleDagBag`` of its shard file (dags/scrape/shard_<n>.py) inside
   ``_airflow_parsing_context_manager(dag_id=...)``, as ``task_runner.parse`` does; budget
   100 ms, at 300 pairs and again at 10,000 (5 runs, before that size's dag-processor pass).
   Beside it (in ``extra``): the same DAG from a
   static file of its own, parsed the same way (what Airflow and the operators cost), and ours
   again with Airflow's asset-URI handler discovery done beforehand, with that discovery's time.
3. **The dag-processor's own path at 300, 1,000, 3,000 and 10,000 pairs**: every file of a copy
   of dags/ parsed by tests/support/dagprocessor.py (Airflow's ``_parse_file``: DagBag,
   serialisation of every DAG, the msgpack frame sent to the manager), each file in a process
   forked from one that imported Airflow, as the manager forks them. The slowest file against a
   quarter of ``dag_file_processor_timeout`` (50 s); all files' CPU over the DAGs built against
   10 ms a DAG. At 3,000 pairs, a real ``airflow dag-processor --num-runs 1`` into a fresh SQLite
   metadata DB must list every DAG id with no import error (the script fails if not).

Every measured process starts as Airflow's own do: bytecode already compiled (an untimed
warm-up run writes it, under ``PYTHONPYCACHEPREFIX=.local/bench-pycache``, kept between runs),
and ``gc.freeze()`` after the imports, as the dag-processor does before forking a parse and the
executors before forking workers (without it, a full collection of Airflow's ~1M objects lands
in the measured part at random). Wall and CPU seconds are both recorded; the figures are wall
seconds.

Run: ``.venv/bin/python tests/bench/bench_parse.py --json /tmp/parse.json [--repeat 3]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import REPO, Figure

from offpeak.naming import scrape_dag_file

SECTION = "Parsing"
SITES = 60  # x 5 shipped regions = 300 (site, region) DAGs
SIZES = (300, 1_000, 3_000, 10_000)  # (site, region) pairs through the dag-processor's path
REAL_SIZE = 3_000  # a real `airflow dag-processor` pass at this size
TIMEOUT = 50.0  # [dag_processor] dag_file_processor_timeout, Airflow 3.3's default
BUDGET = 0.1  # seconds: one DAG under the parsing context
# What legitimately differs between a DAG built by the factory and the same DAG written out.
FILE_FIELDS = ("fileloc", "relative_fileloc", "_processor_dags_folder")
# The files the static anchor writes out; the dag-processor figures parse the whole dags/.
DAG_FILES = ("scrape", "rollups", "config_check.py")
CHILD_TIMEOUT = 300
IGNORED = shutil.ignore_patterns("__pycache__")
# Bytecode of everything the children import (this environment sets PYTHONDONTWRITEBYTECODE):
# kept between runs, so only the first run compiles Airflow's modules.
PYCACHE = REPO / ".local" / "bench-pycache"


# --------------------------------------------------------------------------- the setup


def make_config(target: Path, sites: int = SITES) -> list[str]:
    """tests/support/bigconfig.py's generated config (``sites`` x the 5 shipped regions)."""
    from support.bigconfig import make_config as generate

    return generate(target, sites)


def child_env(tmp: Path, config: Path) -> dict[str, str]:
    """Airflow and the project in a private home, nothing read from the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OFFPEAK_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        AIRFLOW_HOME=str(tmp / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__DAGS_FOLDER=str(tmp / "ours"),
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="600",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        OFFPEAK_CONFIG_DIR=str(config),
        PYTHONPATH=os.pathsep.join(
            [str(REPO / "plugins"), str(REPO / "tests" / "bench"), str(REPO / "tests")]
        ),
        PYTHONPYCACHEPREFIX=str(PYCACHE),
    )
    return env


def run_child(env: dict[str, str], *args: str) -> dict:
    """This script's ``--child`` mode in a fresh interpreter; its JSON answer."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    answer = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not answer:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(answer[-1][2:])


# --------------------------------------------------------------------------- the anchor


class Src(str):
    """Python source, written as is (any other value is written as its repr)."""


def lit(value) -> str:
    return value if isinstance(value, Src) else repr(value)


def call(fn: str, /, *args, **kwargs) -> Src:
    parts = [lit(a) for a in args] + [f"{k}={lit(v)}" for k, v in kwargs.items()]
    return Src(f"{fn}({', '.join(parts)})")


def listing(items) -> Src:
    return Src(f"[{', '.join(lit(i) for i in items)}]")


def mapping(items: dict) -> Src:
    return Src("{" + ", ".join(f"{k!r}: {lit(v)}" for k, v in items.items()) + "}")


def clock(t) -> Src:
    return Src(f"time({t.hour}, {t.minute}, {t.second})")


def seconds(delta) -> Src:
    return Src(f"timedelta(seconds={delta.total_seconds()!r})")


def params(dag) -> Src:
    out = {}
    for key in dag.params:
        param = dag.params.get_param(key)
        out[key] = call("Param", param.value, description=param.description, **param.schema)
    return mapping(out)


def assets(items) -> Src:
    return listing(call("Asset", name=a.name, uri=a.uri, group=a.group) for a in items)


def offpeak_timetable(tt) -> Src:
    return call(
        "OffPeakTimetable", region=tt.region, timezone=tt.timezone, exchange=tt.exchange,
        window_start=clock(tt.window_start), window_end=clock(tt.window_end),
        catchup_days=tt.catchup_days,
        **({"closures": tt.closures} if tt.closures else {}),
        **({"extra_sessions": tt.extra_sessions} if tt.extra_sessions else {}),
    )  # fmt: skip


def sensor(task) -> Src:
    return call(
        "TradingDateSensor", task_id=task.task_id.split(".", 1)[1],
        allowed_states=task.allowed_states, failed_states=task.failed_states, deferrable=True,
        poke_interval=task.poke_interval, soft_fail=task.soft_fail, scope=task.scope,
        upstream_region=task.upstream_region, external_dag_id=task.external_dag_id,
        external_task_id=task.external_task_ids[0], timeout=task.timeout,
    )  # fmt: skip


VERDICT = Src(
    "PythonOperator(task_id='check_inputs', python_callable=check_inputs)"
    ".as_teardown(on_failure_fail_dagrun=True)"
)


def scrape_source(dag, site, region, alerts) -> str:
    tasks = dag.task_dict
    (deadline,) = dag.deadline or [None]
    if deadline is not None:
        deadline = call(
            "DeadlineAlert", reference=Src("DeadlineReference.DAGRUN_QUEUED_AT"),
            interval=seconds(deadline.interval),
            callback=call("SyncCallback", Src("deadline_missed"), kwargs=deadline.callback.kwargs),
            name=deadline.name,
        )  # fmt: skip
    dag_args = call(
        "DAG", dag_id=dag.dag_id, description=dag.description,
        schedule=offpeak_timetable(dag.timetable),
        start_date=call("pendulum.datetime", 2026, 1, 1, tz=region.timezone),
        catchup=dag.catchup, max_active_runs=dag.max_active_runs,
        max_consecutive_failed_dag_runs=dag.max_consecutive_failed_dag_runs,
        deadline=deadline, params=params(dag),
        default_args=mapping({
            "on_failure_callback": listing([call(
                "FailureNotifier", http_conn_id=alerts.http_conn_id, site=site.name,
                region=region.name,
            )]),
            "owner": site.dag.owner, "retries": site.dag.retries,
            "retry_delay": seconds(dag.default_args["retry_delay"]),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": seconds(dag.default_args["max_retry_delay"]),
        }),
        tags=[f"site:{site.name}", f"region:{region.name}", f"kind:{site.kind}"],
        doc_md=dag.doc_md,
        user_defined_macros=mapping({"offpeak_rollup_logical_date": call(
            "partial", Src("rollup_logical_date"), region.name, region.name
        )}),
    )  # fmt: skip
    queue = {"queue": site.queue} if site.queue else {}
    kwargs = {"site": site.name, "region": region.name}
    scrape = call(
        "ScrapeOperator", task_id="scrape", site=site.name, region=region.name,
        pool=tasks["scrape"].pool, **queue,
    )  # fmt: skip
    transform = call(
        "PythonOperator", task_id="transform", python_callable=Src("tasks.transform"),
        op_kwargs=kwargs,
    )  # fmt: skip
    load = call(
        "PythonOperator", task_id="load", python_callable=Src("tasks.load"), op_kwargs=kwargs,
        outlets=assets(tasks["load"].outlets),
    )  # fmt: skip
    return "\n".join([
        f"with {dag_args} as dag:",
        f"    scrape = {scrape}",
        f"    transform = {transform}",
        f"    load = {load}",
        f"    mark = {marker(tasks['mark_rollup'])}",
        "    scrape >> transform >> load >> mark",
        "",
    ])  # fmt: skip


def marker(task) -> Src:
    return call(
        "ExternalTaskMarker", task_id=task.task_id, external_dag_id=task.external_dag_id,
        external_task_id=task.external_task_id, logical_date=task.logical_date,
    )  # fmt: skip


def summarizer(task, function: str) -> Src:
    kwargs = {"op_kwargs": task.op_kwargs} if task.op_kwargs else {}
    return call(
        "PythonOperator", task_id=task.task_id, python_callable=Src(function), **kwargs,
        retries=task.retries, inlets=assets(task.inlets), outlets=assets(task.outlets),
    )  # fmt: skip


def rollup_args(dag, project, schedule, start_tz, tags, macros) -> Src:
    return call(
        "DAG", dag_id=dag.dag_id, description=dag.description, schedule=schedule,
        start_date=call("pendulum.datetime", 2026, 1, 1, tz=start_tz), catchup=False,
        max_active_runs=4, fail_fast=True,
        default_args=mapping({
            "owner": "data-engineering", "retries": dag.default_args["retries"],
            "retry_delay": seconds(dag.default_args["retry_delay"]),
            "on_failure_callback": listing(
                [call("FailureNotifier", http_conn_id=project.alerts.http_conn_id)]
            ),
        }),
        params=params(dag), tags=tags, doc_md=dag.doc_md, **macros,
    )  # fmt: skip


def region_rollup_source(dag, project, region) -> str:
    tasks = dag.task_dict
    args = rollup_args(
        dag, project, offpeak_timetable(dag.timetable), region.timezone,
        ["rollup", f"region:{region.name}"],
        {"user_defined_macros": mapping({"offpeak_rollup_logical_date": call(
            "partial", Src("rollup_logical_date"), region.name, "global"
        )})},
    )  # fmt: skip
    waits = [t for t in dag.tasks if t.task_id.startswith("wait_for_sites.")]
    return "\n".join([
        f"with {args} as dag:",
        "    with TaskGroup('wait_for_sites') as waits:",
        *(f"        {sensor(t)}" for t in waits),
        f"    summarize = {summarizer(tasks['summarize'], 'summarize_region')}",
        f"    mark = {marker(tasks['mark_global'])}",
        f"    waits >> summarize >> mark >> {VERDICT}",
        "",
    ])  # fmt: skip


def global_rollup_source(dag, project) -> str:
    tt = dag.timetable
    schedule = call("GlobalTradingDayTimetable", regions=tt.regions, delay_minutes=tt.delay_minutes)
    args = rollup_args(dag, project, schedule, "UTC", ["rollup", "region:global"], {})
    waits = [t for t in dag.tasks if t.task_id.startswith("wait_for_regions.")]
    return "\n".join([
        f"with {args} as dag:",
        "    with TaskGroup('wait_for_regions') as waits:",
        *(f"        {sensor(t)}" for t in waits),
        f"    summarize = {summarizer(dag.task_dict['summarize'], 'summarize_global')}",
        f"    waits >> summarize >> {VERDICT}",
        "",
    ])  # fmt: skip


SCRAPE_IMPORTS = """\
from datetime import time, timedelta
from functools import partial

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskMarker
from airflow.sdk import DAG, Asset, DeadlineAlert, DeadlineReference, Param, SyncCallback

from offpeak import tasks
from offpeak.alerts.notifier import FailureNotifier, deadline_missed
from offpeak.crawl.operator import ScrapeOperator
from offpeak.rollups.dates import rollup_logical_date
from offpeak.schedule.timetable import OffPeakTimetable
"""
ROLLUP_IMPORTS = """\
from airflow.sdk import TaskGroup

from offpeak.rollups.sensor import TradingDateSensor, check_inputs
from offpeak.rollups.summaries import summarize_global, summarize_region
from offpeak.schedule.timetable import GlobalTradingDayTimetable
"""


def header(what: str) -> str:
    return f'"""Generated by tests/bench/bench_parse.py: {what}, written out literally."""\n\n'


def write_static_files(bag, path: Path, one_path: Path, one_dag_id: str) -> int:
    """The anchors: every DAG of ``bag`` (our DAG files' parse) as literal Python, in one
    file; and ``one_dag_id`` alone, in another."""
    from offpeak.config import load_project

    project = load_project()
    assert not project.errors, project.errors
    blocks = [header("the factory's DAGs") + SCRAPE_IMPORTS + ROLLUP_IMPORTS]
    for site, region in project.pairs():
        dag = bag.dags[f"scrape__{site.name}__{region.name}"]
        blocks.append(scrape_source(dag, site, region, project.alerts))
        if dag.dag_id == one_dag_id:
            one_path.write_text(
                "\n".join([header(f"{one_dag_id}") + SCRAPE_IMPORTS, blocks[-1]]), "utf-8"
            )
    for region in project.rolled_up_regions():
        dag = bag.dags[f"rollup__{region.name}"]
        blocks.append(region_rollup_source(dag, project, region))
    blocks.append(global_rollup_source(bag.dags["rollup__global"], project))
    path.write_text("\n".join(blocks), encoding="utf-8")
    return len(blocks) - 1


# --------------------------------------------------------------------------- the children


def serialise(bag, path: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    out = {d: DagSerialization.to_dict(dag) for d, dag in sorted(bag.dags.items())}
    path.write_text(json.dumps(out, default=str), encoding="utf-8")


def bag_errors(bag) -> dict[str, str]:
    return {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()}


def child(argv: list[str]) -> None:
    """One process; prints ``@@`` and a JSON answer as its last line."""
    import gc

    mode, *rest = argv
    answer: dict = {}
    if mode == "prepare":  # untimed: the anchors, both serialisations, every bytecode file
        import py_compile

        import airflow.sdk.execution_time.task_runner
        from airflow.dag_processing.dagbag import BundleDagBag, DagBag

        ours, static, one_dag_id, tmp = Path(rest[0]), Path(rest[1]), rest[2], Path(rest[3])
        bag = DagBag(dag_folder=str(ours))
        answer.update(dags=len(bag.dags), errors=bag_errors(bag))
        serialise(bag, tmp / "ours.json")
        one = static.parent / "static_one" / "static_one.py"
        one.parent.mkdir()
        answer["generated"] = write_static_files(bag, static / "static_dags.py", one, one_dag_id)
        for path in (static / "static_dags.py", one):
            py_compile.compile(str(path), doraise=True)  # under PYTHONPYCACHEPREFIX
        static_bag = DagBag(dag_folder=str(static))
        answer.update(static_dags=len(static_bag.dags), static_errors=bag_errors(static_bag))
        serialise(static_bag, tmp / "static.json")
    elif mode == "bag":  # rest: folder
        import airflow
        from airflow.dag_processing.dagbag import DagBag

        gc.freeze()
        wall, cpu = time.perf_counter(), time.process_time()
        bag = DagBag(dag_folder=rest[0])
        answer.update(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)
        answer.update(dags=len(bag.dags), errors=bag_errors(bag))
    elif mode == "one":  # rest: DAG file, dag_id [warm]
        file, dag_id = Path(rest[0]), rest[1]
        import airflow.sdk.execution_time.task_runner  # noqa: F401 (what a task runner has)
        from airflow.dag_processing.dagbag import BundleDagBag
        from airflow.sdk.definitions._internal.dag_parsing_context import (
            _airflow_parsing_context_manager,
        )

        gc.freeze()
        if "warm" in rest:  # the providers' asset URI handlers already discovered
            from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

            started = time.perf_counter()
            _ = ProvidersManagerTaskRuntime().asset_uri_handlers
            answer["asset_uri_discovery"] = time.perf_counter() - started
            gc.freeze()
        before = set(sys.modules)
        wall, cpu = time.perf_counter(), time.process_time()
        with _airflow_parsing_context_manager(dag_id=dag_id, task_id="scrape"):
            bag = BundleDagBag(
                dag_folder=str(file), safe_mode=False, load_op_links=False,
                bundle_path=file.parent, bundle_name="dags-folder",
            )  # fmt: skip
        answer.update(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)
        answer.update(dags=sorted(bag.dags), errors=bag_errors(bag))
        answer["imported"] = sorted({m.split(".")[0] for m in set(sys.modules) - before})
    print("@@" + json.dumps(answer), flush=True)


# --------------------------------------------------------------------------- the dag-processor


def processor_pass(env: dict[str, str], folder: Path) -> list[dict]:
    """One pass of tests/support/dagprocessor.py over ``folder``: each file forked from a
    process that has imported Airflow, parsed and serialised by Airflow's ``_parse_file``."""
    from support.dagprocessor import read_answers

    proc = subprocess.run(
        [sys.executable, "-m", "support.dagprocessor", str(folder), "--timeout", str(TIMEOUT)],
        cwd=REPO / "tests", env=env, capture_output=True, text=True,
        timeout=CHILD_TIMEOUT * 4, check=False,
    )  # fmt: skip
    answers = read_answers(proc.stdout)
    if proc.returncode != 0 or not answers:
        raise RuntimeError(f"dag-processor pass failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    bad = {a["file"]: a.get("import_errors") or "timed out" for a in answers
           if a["timed_out"] or a["import_errors"]}  # fmt: skip
    if bad:
        raise SystemExit(f"dag-processor pass over {folder}: {bad}")
    return answers


def real_dag_processor(tmp: Path, config: Path, folder: Path, expected: list[str]) -> dict:
    """``airflow dag-processor --num-runs 1`` over ``folder`` into a fresh SQLite metadata DB:
    its wall time, and every expected DAG id in the ``dag`` table with no import error."""
    import sqlite3

    home = tmp / "processor-home"
    env = child_env(tmp, config)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__DAGS_FOLDER=str(folder),
        AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT=str(int(TIMEOUT)),
    )
    airflow = [sys.executable, "-m", "airflow"]
    for argv in (["db", "migrate"], ["dag-processor", "--num-runs", "1"]):
        started = time.perf_counter()
        done = subprocess.run([*airflow, *argv], env=env, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT * 4, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"airflow {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - started
    with sqlite3.connect(home / "airflow.db") as db:
        listed = {row[0] for row in db.execute("SELECT dag_id FROM dag WHERE NOT is_stale")}
        errors = [row[0] for row in db.execute("SELECT filename FROM import_error")]
    missing = sorted(set(expected) - listed)
    if missing or errors:
        raise SystemExit(f"real dag-processor: {len(missing)} DAGs missing, e.g. "
                         f"{missing[:3]}; import errors in {errors}")  # fmt: skip
    return {"wall": wall, "dags_in_metadata_db": len(listed), "import_errors": 0}


def processor_figures(tmp: Path, repeat: int) -> tuple[list[Figure], dict]:
    """The dag-processor's path at every size of SIZES: the slowest file against a quarter of
    the timeout, the parse CPU per DAG against 10 ms; one DAG under the parsing context at
    the largest size; the real dag-processor at REAL_SIZE."""
    from offpeak.config import load_project
    from offpeak.factory import dag_ids as all_dag_ids
    from offpeak.naming import scrape_dag_file

    folder = tmp / "dags"
    shutil.copytree(REPO / "dags", folder, ignore=IGNORED)
    figures, seen = [], {}
    for pairs in SIZES:
        config = tmp / f"config-{pairs}"
        scrape = make_config(config, pairs // 5)
        expected = all_dag_ids(load_project(config))
        env = child_env(tmp, config)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
        if pairs == SIZES[0]:
            processor_pass(env, folder)  # untimed: writes the bytecode of every import
        if pairs == SIZES[-1]:
            # A task start at this size, measured before this size's pass: right after a pass
            # of 10,000 DAGs (GBs allocated and freed) this VM reclaims memory for a while, and
            # the same runs took 88, 111 and 142 ms in that order (docs/benchmarks.md).
            one_dag_id = scrape[len(scrape) // 2]
            one_file = str(folder / scrape_dag_file(one_dag_id.split("__")[1]))
            runs = [run_child(env, "one", one_file, one_dag_id) for _ in range(max(repeat, 5))]
            seen["one_at_largest"] = {"dag_id": one_dag_id, "runs": [r["wall"] for r in runs]}
        # Each size once (10,000 pairs: ~80-110 s here), to keep `make bench` under 25 minutes;
        # a pass sums the CPU of every file's parse, so one pass is already an average.
        answers = processor_pass(env, folder)
        built = sorted(d for a in answers for d in a["dags"])
        if [d for d in built if d.startswith("scrape__")] != scrape:
            raise SystemExit(f"{pairs} pairs: the scrape DAGs built differ from the config's")
        slowest = [max(a["wall"] for a in answers)]
        per_dag = [sum(a["cpu"] for a in answers) / len(built)]
        files = [{a["file"]: [round(a["wall"], 2), len(a["dags"])] for a in answers}]
        seen[pairs] = {"dags": len(built), "expected": len(expected)}
        note = (
            f"{len(built):,} DAGs in {len(answers)} files, each parsed and serialised by "
            "Airflow's _parse_file in a process forked from one that imported Airflow"
        )
        figures += [
            Figure(
                section=SECTION, name=f"dag-processor, {pairs:,} pairs: the slowest DAG file",
                runs=slowest, anchor=f"25% of dag_file_processor_timeout ({TIMEOUT:g} s)",
                anchor_runs=[TIMEOUT / 4] * len(slowest), target=1.0, note=note,
                extra={"files_wall_s_and_dags": files},
            ),
            Figure(
                section=SECTION, name=f"dag-processor, {pairs:,} pairs: parse CPU per DAG",
                runs=per_dag, anchor="10 ms budget", anchor_runs=[0.010] * len(per_dag),
                target=1.0, note="every file's CPU seconds (DagBag, serialisation, the frame "
                "sent to the manager) over the DAGs they build",
            ),
        ]  # fmt: skip
        if pairs == REAL_SIZE:
            real = real_dag_processor(tmp, config, folder, expected)
            figures.append(Figure(
                section=SECTION, name=f"real dag-processor, {pairs:,} pairs: one pass",
                runs=[real["wall"]], note=f"`airflow dag-processor --num-runs 1` into SQLite: "
                f"{real['dags_in_metadata_db']:,} DAGs in the metadata DB, no import error",
                extra=real,
            ))  # fmt: skip
    return figures, seen


# --------------------------------------------------------------------------- comparing


def comparable(serialised: dict) -> dict:
    out = {}
    for dag_id, data in serialised.items():
        dag = {k: v for k, v in data["dag"].items() if k not in FILE_FIELDS}
        out[dag_id] = {**data, "dag": dag}
    return out


def first_difference(a, b, path: str = "") -> str:
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'the factory' if key in a else 'the static file'}"
            if a[key] != b[key]:
                return first_difference(a[key], b[key], f"{path}.{key}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {str(a)[:120]!r} vs {str(b)[:120]!r}"


def same_dags(ours: Path, anchor: Path) -> dict:
    """Compare the two serialisations DAG by DAG; raise naming the first difference."""
    a = comparable(json.loads(ours.read_text("utf-8")))
    b = comparable(json.loads(anchor.read_text("utf-8")))
    if sorted(a) != sorted(b):
        raise SystemExit(
            f"DAG ids differ: factory only {sorted(set(a) - set(b))[:5]}, "
            f"static file only {sorted(set(b) - set(a))[:5]}"
        )
    differ = [d for d in sorted(a) if a[d] != b[d]]
    if differ:
        raise SystemExit(
            f"{len(differ)} of {len(a)} DAGs serialise differently, e.g. {differ[0]}: "
            f"{first_difference(a[differ[0]], b[differ[0]])}"
        )
    return {"dags_compared": len(a), "identical": True, "fields_left_out": list(FILE_FIELDS)}


# --------------------------------------------------------------------------- main


def main() -> None:
    args = common.main_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-parse-") as name:
        tmp = Path(name)
        dag_ids = make_config(tmp / "config")
        one_dag_id = dag_ids[len(dag_ids) // 2]
        ours, static = tmp / "ours", tmp / "static"
        ours.mkdir()
        static.mkdir()
        for file in DAG_FILES:
            if (REPO / "dags" / file).is_dir():
                shutil.copytree(REPO / "dags" / file, ours / file, ignore=IGNORED)
            else:
                shutil.copy(REPO / "dags" / file, ours / file)
        env = child_env(tmp, tmp / "config")
        prepared = run_child(env, "prepare", str(ours), str(static), one_dag_id, str(tmp))
        for label, key in (("our DAG files", "errors"), ("the static file", "static_errors")):
            if prepared[key]:
                raise SystemExit(f"{label}: import errors {prepared[key]}")
        check = same_dags(tmp / "ours.json", tmp / "static.json")
        check.update(generated_dags=prepared["generated"], scrape_dags=len(dag_ids))
        print(f"same serialisation: {check}", file=sys.stderr)

        series: dict[str, list[float]] = {}

        def measure(key: str, *child_args: str, expect) -> dict:
            result = run_child(env, *child_args)
            if result["dags"] != expect or result["errors"]:
                raise SystemExit(f"{child_args}: {result['dags']!r:.200}, {result['errors']}")
            series.setdefault(key, []).append(result["wall"])
            series.setdefault(f"{key}_cpu", []).append(result["cpu"])
            return result

        static_one = str(tmp / "static_one" / "static_one.py")
        one_file = str(ours / scrape_dag_file(one_dag_id.split("__")[1]))
        for i in range(args.repeat):
            # Each pair back to back, alternating which goes first.
            pair = [("ours", str(ours)), ("static", str(static))]
            for key, folder in pair if i % 2 == 0 else pair[::-1]:
                measure(key, "bag", folder, expect=prepared["dags"])
            one = measure("one", "one", one_file, one_dag_id, expect=[one_dag_id])
            imported = one["imported"]
            warm = measure("warm", "one", one_file, one_dag_id, "warm", expect=[one_dag_id])
            series.setdefault("asset_uri_discovery", []).append(warm["asset_uri_discovery"])
            measure("static_one", "one", static_one, one_dag_id, expect=[one_dag_id])
            measure("static_warm", "one", static_one, one_dag_id, "warm", expect=[one_dag_id])

        scaled, seen = processor_figures(tmp, args.repeat)
        print(f"dag-processor sizes: {seen}", file=sys.stderr)

    figures = [
        Figure(
            section=SECTION,
            name=f"parse {len(dag_ids)} (site, region) DAGs + rollups",
            runs=series["ours"],
            anchor="one static file of the same DAGs",
            anchor_runs=series["static"],
            target=1.3,
            note=(
                f"{prepared['dags']} DAGs from {SITES} site files x 5 regions: DagBag fill of "
                "a folder with our 3 DAG files vs one generated file, fresh process each"
            ),
            extra={
                "serialisation": check,
                "cpu_runs": series["ours_cpu"],
                "anchor_cpu_runs": series["static_cpu"],
            },
        ),
        Figure(
            section=SECTION,
            name="one DAG under the parsing context",
            runs=series["one"],
            anchor="100 ms budget",
            anchor_runs=[BUDGET] * len(series["one"]),
            target=1.0,
            note=f"{one_dag_id}: BundleDagBag of its shard file after the task runner's imports",
            extra={
                "cpu_runs": series["one_cpu"],
                # The same DAG from a static file of its own, parsed the same way: what
                # Airflow and the operators cost, with no config read.
                "static_file_runs": series["static_one"],
                "static_file_cpu_runs": series["static_one_cpu"],
                # Both again with Airflow's asset-URI handler discovery done beforehand (the
                # first Asset with a non-file URI imports every provider's asset module,
                # amazon's with boto3), and that discovery's own time.
                "providers_discovered_runs": series["warm"],
                "providers_discovered_cpu_runs": series["warm_cpu"],
                "static_file_providers_discovered_runs": series["static_warm"],
                "asset_uri_discovery_runs": series["asset_uri_discovery"],
                "top_level_packages_imported": imported,
            },
        ),
    ]
    largest = seen["one_at_largest"]
    figures.append(
        Figure(
            section=SECTION,
            name=f"one DAG under the parsing context, {SIZES[-1]:,} pairs",
            runs=largest["runs"],
            anchor="100 ms budget",
            anchor_runs=[BUDGET] * len(largest["runs"]),
            target=1.0,
            note=f"{largest['dag_id']}: as above, in a config of {SIZES[-1]:,} pairs",
        )
    )
    figures += scaled
    common.write(figures, args.json)
    for fig in figures:
        print(
            f"{fig.name}: {common.spread(fig.runs)} s vs {fig.anchor} "
            f"{common.spread(fig.anchor_runs or [])} s, ratio "
            f"{common.spread(fig.ratios, '{:.2f}')} (target {fig.target})"
        )
    for key in (
        "static_file_runs",
        "providers_discovered_runs",
        "static_file_providers_discovered_runs",
        "asset_uri_discovery_runs",
    ):
        print(f"  {key}: {common.spread(figures[1].extra[key])} s")
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
