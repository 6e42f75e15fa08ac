"""Rollups under a real scheduler, dag-processor and triggerer: each rollup runs only after its
inputs, the summary tables hold the expected rows, and a failed site fails its region's
rollup within seconds, not at the sensors' timeout."""

from __future__ import annotations

import json
from datetime import date, timedelta

from offpeak.config import load_project
from offpeak.naming import GLOBAL, rollup_dag_id, scrape_dag_id

PROJECT = load_project()
# Tuesday 2026-11-03: Culture Day in Japan (XTKS closed), the others trade. (Not a recent
# day: unpausing a DAG makes a scheduled run for its latest due day, and a backfill skips
# dates that have a run.)
DAY = date(2026, 11, 3)
TRADING = ["americas", "europe", "india", "oceania"]
ROWS = {"equities": 90, "fx_rates": 57, "funds": 28}  # valid rows the demo sites serve
REJECTED = {"equities": 10, "fx_rates": 3, "funds": 2}


def backfill(stack, dag_id: str, day: date, conf: dict | None = None) -> int:
    """A backfill of one trading day; it must have made its run (not skipped the date)."""
    backfill_id = stack.backfill(dag_id, day, day, conf)
    made = stack.query(
        "SELECT dag_run_id, exception_reason FROM backfill_dag_run WHERE backfill_id = %s",
        backfill_id,
    )
    assert len(made) == 1 and made[0][0] is not None, f"{dag_id} {day}: {made}"
    return backfill_id


def backfill_run(stack, backfill_id: int) -> tuple | None:
    rows = stack.backfill_runs(backfill_id, "r.dag_id, r.run_id, r.state, r.start_date, r.end_date")
    return rows[0] if rows else None


def task(stack, dag_id: str, run_id: str, task_id: str) -> tuple:
    return stack.query(
        "SELECT state, start_date, end_date, try_number FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
        dag_id,
        run_id,
        task_id,
    )[0]


def wait_finished(stack, backfills: dict[str, int], timeout: float = 420) -> dict[str, tuple]:
    def finished():
        runs = {dag_id: backfill_run(stack, b) for dag_id, b in backfills.items()}
        done = all(r and r[2] in ("success", "failed") for r in runs.values())
        return runs if done else None

    return stack.wait(finished, timeout, f"runs of {sorted(backfills)}", every=3)


def test_rollups_run_after_their_inputs_and_summarise_them(stack, warehouse):
    sites = {r: [s.name for s in PROJECT.sites_of(r)] for r in TRADING}
    site_dags = [scrape_dag_id(s, r) for r in TRADING for s in sites[r]]
    rollups = [rollup_dag_id(r) for r in TRADING] + [rollup_dag_id(GLOBAL)]
    for dag_id in site_dags + rollups:
        stack.airflow("dags", "unpause", dag_id)

    # The rollups first, so they really wait; then the crawls.
    backfills = {d: backfill(stack, d, DAY) for d in rollups}
    backfills |= {d: backfill(stack, d, DAY, {"ignore_window": True}) for d in site_dags}
    runs = wait_finished(stack, backfills)
    assert {d: r[2] for d, r in runs.items()} == dict.fromkeys(runs, "success")

    region_done = {}
    for region in TRADING:
        dag_id, run_id = rollup_dag_id(region), runs[rollup_dag_id(region)][1]
        loads_done = max(
            task(stack, scrape_dag_id(s, region), runs[scrape_dag_id(s, region)][1], "load")[2]
            for s in sites[region]
        )
        state, started, ended, _ = task(stack, dag_id, run_id, "summarize")
        assert state == "success" and started >= loads_done, (region, started, loads_done)
        region_done[region] = ended
    global_run = runs[rollup_dag_id(GLOBAL)][1]
    state, started, _, _ = task(stack, rollup_dag_id(GLOBAL), global_run, "summarize")
    assert state == "success" and started >= max(region_done.values())
    # Tokyo had no session: its sensor did not wait for a rollup that never comes.
    closed = task(stack, rollup_dag_id(GLOBAL), global_run, "wait_for_regions.asia_pacific")
    assert closed[0] == "success"

    site_rows = warehouse.execute(
        "SELECT region, site, rows_loaded, rows_rejected, loads >= 1, complete "
        "FROM scraped.rollup_site_day WHERE trading_date = %s ORDER BY 1, 2",
        (DAY,),
    ).fetchall()
    assert site_rows == [
        (r, s, ROWS[s], REJECTED[s], True, True) for r in TRADING for s in sorted(sites[r])
    ]
    measures = warehouse.execute(
        "SELECT region, site, measure, n, min_value, max_value, avg_value "
        "FROM scraped.rollup_measure_day WHERE trading_date = %s",
        (DAY,),
    ).fetchall()
    expected_measures = sum(
        sum(f.measure for f in PROJECT.sites[s].fields.values()) for r in TRADING for s in sites[r]
    )
    assert len(measures) == expected_measures == 30
    (price,) = [m for m in measures if m[:3] == ("americas", "equities", "last_price")]
    truth = warehouse.execute(
        "SELECT count(last_price), min(last_price), max(last_price), avg(last_price) "
        "FROM scraped.equities WHERE region = 'americas' AND trading_date = %s",
        (DAY,),
    ).fetchone()
    assert price[3:] == truth and price[3] == 90

    global_rows = warehouse.execute(
        "SELECT region, sites, rows_loaded, rows_rejected FROM scraped.rollup_global_day "
        "WHERE trading_date = %s ORDER BY region",
        (DAY,),
    ).fetchall()
    assert global_rows == [
        (r, len(sites[r]), sum(ROWS[s] for s in sites[r]), sum(REJECTED[s] for s in sites[r]))
        for r in TRADING
    ]

    # Clearing one site's load with offpeak.clearing (Airflow 3.3 ignores the markers)
    # re-runs exactly the rollup parts built on it, and they succeed again.
    stack.run_module("offpeak.clearing", scrape_dag_id("funds", "europe"),
                     "--trading-date", DAY.isoformat(), "--task", "load")  # fmt: skip
    europe, glob = runs[rollup_dag_id("europe")][1], runs[rollup_dag_id(GLOBAL)][1]

    def tries() -> dict[str, tuple]:
        rows = stack.query(
            "SELECT dag_id || '.' || task_id, state, try_number FROM task_instance "
            "WHERE (dag_id, run_id) IN ((%s, %s), (%s, %s), (%s, %s))",
            rollup_dag_id("europe"), europe, rollup_dag_id(GLOBAL), glob,
            scrape_dag_id("funds", "europe"), runs[scrape_dag_id("funds", "europe")][1],
        )  # fmt: skip
        return {t: (state, n) for t, state, n in rows}

    def rerun_done():
        now = tries()
        return (
            now
            if all(state == "success" for state, _ in now.values())
            and (now["rollup__europe.summarize"][1] == 2)
            else None
        )

    after = stack.wait(rerun_done, 180, "the cleared rollups to run again", every=2)
    assert after["scrape__funds__europe.load"][1] == 2
    assert after["scrape__funds__europe.scrape"][1] == 1  # upstream of load: not cleared
    assert after["rollup__europe.wait_for_sites.funds"][1] == 2
    assert after["rollup__europe.wait_for_sites.equities"][1] == 1
    assert after["rollup__global.wait_for_regions.europe"][1] == 2
    assert after["rollup__global.summarize"][1] == 2
    assert after["rollup__global.wait_for_regions.americas"][1] == 1


def test_a_failed_site_fails_its_region_rollup_within_seconds(stack):
    """funds/india fails (its conf asks for a BSE holiday; the stack's funds config has no
    retries): the funds sensor fails on its next check and fail_fast stops the rest."""
    day = date(2026, 11, 20)
    rollup, site_dag = rollup_dag_id("india"), scrape_dag_id("funds", "india")
    for dag_id in (rollup, site_dag):
        stack.airflow("dags", "unpause", dag_id)
    rollup_backfill = backfill(stack, rollup, day)
    site_backfill = backfill(
        stack, site_dag, day, {"trading_date": "2026-11-24", "ignore_window": True}
    )
    runs = wait_finished(stack, {rollup: rollup_backfill, site_dag: site_backfill}, timeout=240)
    assert runs[site_dag][2] == "failed" and runs[rollup][2] == "failed"

    load = task(stack, site_dag, runs[site_dag][1], "load")
    assert load[0] == "upstream_failed"
    sensor = task(stack, rollup, runs[rollup][1], "wait_for_sites.funds")
    assert sensor[0] == "failed"
    # Its retries are for a lost try: a failed upstream is final, not waited on again.
    assert sensor[3] == 1
    elapsed = runs[rollup][4] - runs[site_dag][4]
    print(f"the region rollup failed {elapsed.total_seconds():.1f}s after the site run")
    assert timedelta(0) <= elapsed < timedelta(minutes=2)  # the sensor timeout is 13 h
    others = task(stack, rollup, runs[rollup][1], "wait_for_sites.equities")[0]
    assert others in ("skipped", "failed")  # fail_fast stopped it
    assert task(stack, rollup, runs[rollup][1], "summarize")[0] in ("skipped", "upstream_failed")
    # The verdict says why the run failed.
    assert task(stack, rollup, runs[rollup][1], "check_inputs")[0] == "failed"


def test_a_skipped_load_does_not_hold_its_region_rollup(stack, warehouse):
    """funds/india's load is skipped (a dry run; an open circuit breaker skips it the same
    way): the funds sensor takes the skip as final, and the rollup summarises equities alone
    and names funds, within a minute of the site runs, not at the sensors' 13 h timeout."""
    day = date(2026, 11, 12)  # no other test loads india on this date
    rollup = rollup_dag_id("india")
    funds, equities = scrape_dag_id("funds", "india"), scrape_dag_id("equities", "india")
    for dag_id in (rollup, funds, equities):
        stack.airflow("dags", "unpause", dag_id)
    # The test before backfilled rollup__india and funds/india: Airflow refuses a second
    # backfill of a DAG until the scheduler has marked the first completed.
    stack.wait(
        lambda: not stack.query(
            "SELECT id FROM backfill WHERE dag_id = ANY(%s) AND completed_at IS NULL",
            [rollup, funds, equities],
        ),
        120, "earlier backfills of the india DAGs to be marked completed",
    )  # fmt: skip
    backfills = {rollup: backfill(stack, rollup, day)}
    backfills[funds] = backfill(stack, funds, day, {"ignore_window": True, "dry_run": True})
    backfills[equities] = backfill(stack, equities, day, {"ignore_window": True})
    runs = wait_finished(stack, backfills, timeout=300)
    assert {d: r[2] for d, r in runs.items()} == dict.fromkeys(runs, "success"), runs

    assert task(stack, funds, runs[funds][1], "load")[0] == "skipped"
    assert task(stack, rollup, runs[rollup][1], "wait_for_sites.funds")[0] == "success"
    elapsed = runs[rollup][4] - max(runs[funds][4], runs[equities][4])
    print(f"the region rollup ended {elapsed.total_seconds():.1f}s after the site runs")
    assert timedelta(0) <= elapsed < timedelta(minutes=1)

    ((summary,),) = stack.query(
        "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'summarize'"
        " AND key = 'return_value'", rollup, runs[rollup][1],
    )  # fmt: skip
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["sites_not_loaded"] == ["funds"] and summary["sites"] == 1, summary
    assert summary["rows_loaded"] == ROWS["equities"]
    summarized = warehouse.execute(
        "SELECT site, rows_loaded FROM scraped.rollup_site_day WHERE region = 'india'"
        " AND trading_date = %s", (day,),
    ).fetchall()  # fmt: skip
    assert summarized == [("equities", ROWS["equities"])]
