"""The CeleryExecutor deployment with real workers: Debian's redis-server, two `airflow celery
worker`s that share no folder (the data root is an S3-compatible store), every demo DAG run
for its region's latest trading date, and the faults a distributed deployment meets: a worker
SIGKILLed mid-crawl, the broker restarted mid-run, a site's queue served by one worker, and a
killed crawl resumed by its retry on the other worker from the pages it kept on S3.

The tests run in order on one module-scoped stack (each leaves the workers as the next needs).
"""

from __future__ import annotations

import re
import time
from collections import Counter

import psutil
import pytest

from dev.devenv import MAIN_JOB_DAGS
from offpeak.config import load_project
from offpeak.naming import scrape_dag_id
from support.celery import CeleryStack, Redis, S3Store

# Its own CeleryExecutor stack: `make test` runs it in the session beside the stack tier's.
pytestmark = pytest.mark.own_stack

# The demo sites' rows per (site, region) partition, on any trading date.
ROWS = {"equities": 90, "fx_rates": 57, "funds": 28}
SLOW_EQUITIES = "/faults/slow/equities/{region}/{trading_date}/quotes?page=1"  # 2 s a page
QUEUED_SITE, QUEUE = "funds", "crawl_keyed"  # funds' crawls go to a queue of their own
TRADING_DATE = "2026-10-13"  # a trading day in every region (Tokyo's Sports Day is the 12th)


@pytest.fixture(scope="module")
def celery(pg, demo_url, tmp_path_factory):
    """Redis, the S3 store and the CeleryExecutor stack, with two workers: w1 serves the
    default queue, w2 the default queue and funds' ``crawl_keyed``. Equities' pages answer in
    2 s each here, so its crawls are still running when a worker is killed; rollups check
    their inputs every 5 s."""
    home = tmp_path_factory.mktemp("celery")
    redis, s3 = Redis(home).start(), S3Store(home).start()
    stack = CeleryStack(pg, home, redis, s3)
    stack.edit_yaml("sites/equities.yaml", lambda d: d.update(start_urls=[SLOW_EQUITIES]))
    stack.edit_yaml(f"sites/{QUEUED_SITE}.yaml", lambda d: d.update(queue=QUEUE))
    stack.edit_yaml("regions.yaml", lambda d: d["rollups"].update(poke_interval_seconds=5))
    for site in load_project(stack.config_dir).sites:  # a killed task's retry starts in 5 s
        stack.edit_yaml(
            f"sites/{site}.yaml", lambda d: d.setdefault("dag", {}).update(retry_delay_seconds=5)
        )
    from offpeak.factory import dag_ids  # imports Airflow: not before the session's env is set

    try:
        stack.start()
        stack.wait_parsed(dag_ids(load_project(stack.config_dir)))
        stack.start_workers(w1=["default"], w2=["default", QUEUE])
        yield stack
    finally:
        stack.stop()
        s3.stop()
        redis.stop()


@pytest.fixture
def rows(celery):
    """Rows per (site, region, trading date) in the Celery stack's warehouse, and how many
    distinct natural keys they hold (a duplicate would make the two differ)."""
    import psycopg

    def count() -> dict[tuple[str, str, str], tuple[int, int]]:
        project = load_project(celery.config_dir)
        found = {}
        with psycopg.connect(celery.pg.uri(celery.WAREHOUSE)) as conn:
            for site in project.sites.values():
                key = ", ".join(site.natural_key)
                found |= {
                    (site.name, region, day.isoformat()): (n, keys)
                    for region, day, n, keys in conn.execute(
                        f"SELECT region, trading_date, count(*), count(DISTINCT ({key}, region,"
                        f" trading_date)) FROM scraped.{site.name} GROUP BY 1, 2"
                    )
                }
        return found

    return count


def task_instances(stack, dag_ids: list[str], **where) -> list[dict]:
    """Task instances of the latest run of each DAG (or of ``run_id``), as dicts."""
    runs = "SELECT DISTINCT ON (dag_id) dag_id, run_id FROM dag_run WHERE dag_id = ANY(%s)"
    params: list = [dag_ids]
    if "run_id" in where:
        runs += " AND run_id = %s"
        params.append(where["run_id"])
    found = stack.query(
        "SELECT t.dag_id, t.run_id, t.task_id, t.state, t.hostname, t.try_number, t.queue "
        f"FROM task_instance t JOIN ({runs} ORDER BY dag_id, run_after DESC) r "
        "USING (dag_id, run_id)",
        *params,
    )
    names = ("dag_id", "run_id", "task_id", "state", "hostname", "try_number", "queue")
    return [dict(zip(names, row, strict=True)) for row in found]


def alive(processes, matches) -> list:
    """Those of ``processes`` still alive (not zombies) whose argv ``matches``."""
    found = []
    for proc in processes:
        try:
            if proc.status() != "zombie" and matches(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # gone meanwhile
            pass
    return found


def crawls(processes) -> list:
    """The crawl subprocesses (``python -m scrapy crawl``) still alive."""
    return alive(processes, lambda argv: "scrapy" in argv and "crawl" in argv)


def task_processes(processes) -> list:
    """Task processes (Airflow titles them ``airflow worker -- <ti id>``) still alive."""
    return alive(processes, lambda argv: " ".join(argv).startswith("airflow worker"))


def latest_run_states(stack, dag_ids: list[str]) -> dict[str, str]:
    return dict(stack.query(
        "SELECT DISTINCT ON (dag_id) dag_id, state FROM dag_run WHERE dag_id = ANY(%s) "
        "ORDER BY dag_id, run_after DESC", dag_ids,
    ))  # fmt: skip


def wait_finished(stack, dags: list[str], timeout: float, what: str) -> None:
    """Wait until the latest run of each of ``dags`` has ended; on a timeout, fail naming the
    runs still going and their unfinished tasks (state, worker, try)."""

    def finished():
        states = latest_run_states(stack, dags).values()
        return len(states) == len(dags) and all(s in ("success", "failed") for s in states)

    try:
        stack.wait(finished, timeout, what, every=3)
    except pytest.fail.Exception as exc:
        going = {d: s for d, s in latest_run_states(stack, dags).items() if s != "success"}
        tasks = [
            f"{t['dag_id']}.{t['task_id']} {t['state']} on {t['hostname'] or '-'} try "
            f"{t['try_number']}"
            for t in task_instances(stack, sorted(going))
            if t["state"] not in ("success", "skipped")
        ]
        pytest.fail(f"runs not finished: {going}; their tasks: {tasks}\n{exc}")


def main_job_dags(stack) -> list[str]:
    return [d for (d,) in stack.query("SELECT dag_id FROM dag") if re.match(MAIN_JOB_DAGS, d)]


def test_every_demo_dag_succeeds_with_a_worker_killed_mid_crawl(celery, rows):
    """`make run`'s main job (every site DAG and region rollup, each region's latest trading
    date) on two workers; once a crawl runs on w1, w1's main process gets SIGKILL. Its crawl
    dies with it, the scheduler finds the task's heartbeat gone and retries it on w2, and every
    run ends in success with exactly the demo's rows, each key once."""
    stack = celery
    project = load_project(stack.config_dir)
    stack.airflow("dags", "unpause", "--treat-dag-id-as-regex", "-y", MAIN_JOB_DAGS)
    dags = main_job_dags(stack)
    assert len(dags) == 16  # 11 site DAGs and 5 region rollups

    def crawling_on_w1():
        running = [
            t for t in task_instances(stack, dags)
            if (t["task_id"], t["state"], t["hostname"]) == ("scrape", "running", "w1")
        ]  # fmt: skip
        return running if running and crawls(stack.worker_tree("w1")) else None

    killed_tis = stack.wait(crawling_on_w1, 240, "a crawl to run on worker w1", every=0.5)
    at_kill = crawls(stack.worker_tree("w1"))
    tree = stack.kill_worker("w1")
    assert at_kill, "the crawl had ended before the kill: nothing would be proven"

    def orphans():
        return crawls(tree) + task_processes(tree)

    deadline = time.monotonic() + 30
    while orphans() and time.monotonic() < deadline:
        time.sleep(1)
    assert not orphans(), f"left running after the worker died: {orphans()}"

    wait_finished(stack, dags, 600, "every run of the main job to finish")
    tis = task_instances(stack, dags)
    runs = latest_run_states(stack, dags)
    assert runs == dict.fromkeys(dags, "success"), runs
    latest = {(t["dag_id"], t["task_id"]): t for t in tis}
    for killed in killed_tis:  # the same task, tried again on the live worker
        again = latest[(killed["dag_id"], killed["task_id"])]
        assert (again["state"], again["hostname"]) == ("success", "w2"), again
        assert again["try_number"] > killed["try_number"]

    expected = {(s.name, r.name): ROWS[s.name] for s, r in project.pairs()}
    found = rows()
    loaded = {(site, region): n for (site, region, _), (n, keys) in found.items()}
    assert loaded == expected
    assert all(n == keys for n, keys in found.values()), found
    # funds' crawls went to its queue, which only w2 serves.
    funds = [t for t in tis if t["dag_id"].startswith(f"scrape__{QUEUED_SITE}__")]
    assert {(t["task_id"], t["queue"]) for t in funds if t["task_id"] == "scrape"} == {
        ("scrape", QUEUE)
    }
    assert {t["hostname"] for t in funds if t["task_id"] == "scrape"} == {"w2"}
    stack.airflow("dags", "pause", "--treat-dag-id-as-regex", "-y", MAIN_JOB_DAGS)
    stack.start_workers(w1=["default"])  # as `restart: always` brings a container back


def test_runs_finish_when_the_broker_restarts_mid_run(celery, rows):
    """Every fx_rates region triggered for one date; once a task is queued or running, Redis
    stops (SIGTERM, saving its snapshot as the packaged default does) and comes back 5 s later
    on the same port: workers and scheduler reconnect and every run succeeds."""
    stack = celery
    dags = [scrape_dag_id("fx_rates", r) for r in load_project(stack.config_dir).sites[
        "fx_rates"].regions]  # fmt: skip
    for dag_id in dags:
        stack.set_paused(dag_id, False)
    run_ids = {d: stack.trigger(d, {"trading_date": TRADING_DATE}) for d in dags}

    def in_flight():
        return any(
            t["state"] in ("queued", "running")
            for d, r in run_ids.items() for t in task_instances(stack, [d], run_id=r)
        )  # fmt: skip

    stack.wait(in_flight, 120, "an fx_rates task to be queued or running", every=0.3)
    stack.redis.stop()
    time.sleep(5)
    stack.redis.start()
    for dag_id, run_id in run_ids.items():
        assert stack.wait_run(dag_id, run_id, timeout=300) == "success"
    for dag_id in dags:
        stack.set_paused(dag_id, True)
    found = rows()
    for region in load_project(stack.config_dir).sites["fx_rates"].regions:
        assert found[("fx_rates", region, TRADING_DATE)] == (57, 57)


def test_a_sites_queue_is_served_by_its_worker_and_files_travel_through_object_storage(
    celery, rows
):
    """w2 now serves only funds' queue, w1 only the default one: funds' crawl must run on w2
    and its transform and load on w1. The workers share no folder, so the feed reaches w1
    through the S3 data root alone."""
    stack = celery
    stack.stop_worker("w2")
    stack.start_workers(w2=[QUEUE])
    dag_id = scrape_dag_id(QUEUED_SITE, "europe")
    stack.set_paused(dag_id, False)
    run_id = stack.trigger(dag_id, {"trading_date": TRADING_DATE})
    assert stack.wait_run(dag_id, run_id, timeout=300) == "success"
    ran_on = {
        t["task_id"]: (t["queue"], t["hostname"])
        for t in task_instances(stack, [dag_id], run_id=run_id)
        if t["task_id"] != "mark_rollup"
    }
    assert ran_on == {
        "scrape": (QUEUE, "w2"), "transform": ("default", "w1"), "load": ("default", "w1")
    }  # fmt: skip
    assert rows()[(QUEUED_SITE, "europe", TRADING_DATE)] == (28, 28)
    partition = f"site={QUEUED_SITE}/region=europe/date={TRADING_DATE}/"
    stored = stack.s3.keys("celery/")
    for stage in ("raw", "clean"):
        assert any(k.startswith(f"celery/{stage}/{partition}") for k in stored), (stage, stored)
    # Nothing of the partition was left in either worker's own folder.
    local = [p for w in ("w1", "w2") for p in (stack.home / f"worker-{w}").rglob("*.jsonl")]
    assert local == [], local


def test_a_retry_on_the_other_worker_resumes_the_killed_crawl(celery, rows, nginx):
    """Equities (2 s a page) crawled on w1, the only worker of the default queue after the test
    above; once the S3 data root holds robots.txt and two of its pages, w2 starts serving the
    default queue too and w1 gets SIGKILL. The retry runs on w2 and reads the kept pages from
    S3 instead of fetching them: nginx answered each page once over both tries (a page in
    flight at the kill is logged 499, never answered), and the rows are exact."""
    stack = celery
    dag_id = scrape_dag_id("equities", "europe")
    kept_prefix = f"celery/crawl-state/site=equities/region=europe/date={TRADING_DATE}/"

    def kept() -> list[str]:
        return [k for k in stack.s3.keys(kept_prefix) if k.endswith(".page")]

    since = len(nginx.answers())
    stack.set_paused(dag_id, False)
    run_id = stack.trigger(dag_id, {"trading_date": TRADING_DATE})

    def mid_crawl():
        (ti,) = [t for t in task_instances(stack, [dag_id], run_id=run_id)
                 if t["task_id"] == "scrape"]  # fmt: skip
        running = (ti["state"], ti["hostname"]) == ("running", "w1")
        return ti if running and len(kept()) >= 3 and crawls(stack.worker_tree("w1")) else None

    killed = stack.wait(mid_crawl, 240, "the equities crawl on w1 to keep 3 pages", every=0.2)
    workers = stack.celery_control().add_consumer(
        "default",
        destination=["w2@offpeak"],
        reply=True,
        timeout=15,  # a busy CI machine
    )
    assert workers and "ok" in workers[0]["w2@offpeak"], workers
    at_kill = len(kept())
    tree = stack.kill_worker("w1")
    deadline = time.monotonic() + 30
    while crawls(tree) + task_processes(tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack.wait_run(dag_id, run_id, timeout=300) == "success"

    (again,) = [t for t in task_instances(stack, [dag_id], run_id=run_id)
                if t["task_id"] == "scrape"]  # fmt: skip
    assert (again["hostname"], again["try_number"]) == ("w2", killed["try_number"] + 1), again
    pointer = stack.xcom(dag_id, run_id, "scrape")
    assert pointer["stats"]["resumed_pages"] >= at_kill >= 3, (pointer["stats"], at_kill)
    answers = Counter(
        (a["path"].rsplit("page=", 1)[-1], a["status"])
        for a in nginx.answers()[since:]
        if f"/europe/{TRADING_DATE}/quotes" in a["path"]
    )
    assert {p: n for (p, status), n in answers.items() if status == "200"} == dict.fromkeys(
        ["1", "2", "3", "4", "5"], 1
    ), answers
    assert rows()[("equities", "europe", TRADING_DATE)] == (90, 90)
    assert kept() == []  # removed once the crawl ended
    stack.set_paused(dag_id, True)  # the module's last test: the fixture stops w2 and the rest
