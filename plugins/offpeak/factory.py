"""Builds one `scrape__<site>__<region>` DAG per (site, region) from the YAML config."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import yaml

from offpeak import settings, tasks
from offpeak.alerts.deadlines import deadline_alert, window_length
from offpeak.config import (
    Alerts,
    ConfigError,
    Project,
    Region,
    Site,
    YamlDumper,
    load_project,
)
from offpeak.naming import (
    GLOBAL,
    parse_dag_id,
    pool_name,
    rollup_dag_id,
    rollup_shard,
    scrape_dag_id,
    scrape_shard,
)
from offpeak.params import rollup_params, scrape_params
from offpeak.rollups.dates import rollup_logical_date
from offpeak.rollups.summaries import summarize_global, summarize_region
from offpeak.warehouse.assets import GLOBAL_ROLLUP_TABLE, REGION_ROLLUP_TABLES, table_asset

if TYPE_CHECKING:
    from airflow.sdk import DAG

# Our modules that subclass Airflow's (the operator, timetables, notifier, sensor) are imported
# in the builders: config_check.py, and a worker parsing another file's DAG, never load them,
# and the scrape DAGs' file never loads the rollups' sensor.

log = logging.getLogger(__name__)
START_DATE = (2026, 1, 1)


# Rendered YAML by id() of the model, with the model itself (so the id is not reused while
# the entry lives): a site is in one DAG per region and a region in one per site, and a dump
# per DAG was over a third of parsing them.
_RENDERED_LIMIT = 1024
_rendered: dict[tuple[str, int], tuple[object, str]] = {}


def _yaml_section(key: str, model: Site | Region) -> str:
    """``key:`` and ``model``'s resolved config below it, as YAML, rendered once per model."""
    hit = _rendered.get((key, id(model)))
    if hit is None or hit[0] is not model:
        text = yaml.dump(
            {key: model.model_dump(mode="json")},
            Dumper=YamlDumper,
            sort_keys=False,
            allow_unicode=True,
        )
        if len(_rendered) >= _RENDERED_LIMIT:
            _rendered.clear()
        _rendered[(key, id(model))] = hit = (model, text)
    return hit[1]


def _calendar_overrides(region: Region) -> str:
    """A doc_md bullet naming the region's calendar overrides, or "" when it has none."""
    listed = [
        f"{what} {day} ({why})"
        for what, days in (("closed", region.closures), ("extra session", region.extra_sessions))
        for day, why in days.items()
    ]
    if not listed:
        return ""
    return (
        f"* `{region.exchange}` calendar overrides of region `{region.name}` (regions.yaml): "
        f"{'; '.join(listed)}\n"
    )


def _doc_md(site: Site, region: Region, alerts: Alerts) -> str:
    # The same text as dumping {"site": ..., "region": ...} at once (a block mapping's entries
    # are rendered independently), at one dump per site and per region instead of per DAG.
    resolved = _yaml_section("site", site) + _yaml_section("region", region)
    queue = f"* the crawl runs on Celery queue `{site.queue}`\n" if site.queue else ""
    return (
        f"### {site.name} in {region.name}\n\n"
        f"{site.description}\n\n"
        f"* spider kind: `{site.kind}`, natural key: `{', '.join(site.natural_key)}`\n"
        f"* schedule: one run per `{region.exchange}` trading day, due when the off-peak "
        f"window opens ({region.off_peak} `{region.timezone}`); the data interval is the "
        "trading day, local midnight to midnight\n"
        f"* reading a run: its id names the trading date first (`scheduled__<trading date>__"
        "<window opening, UTC>`); the UI's logical date is the trading day's local midnight "
        f"in UTC, which east of UTC falls on the day before (in `{region.timezone}`, convert "
        "it to local time: that date is the trading date)\n"
        f"{_calendar_overrides(region)}"
        f"* warehouse table: `{settings.warehouse_schema()}.{site.name}`, partition region "
        f"`{region.name}` + trading date\n"
        f"* pool `{pool_name(site.name)}`: at most {site.politeness.max_concurrent_crawls} "
        "crawl(s) of this site at once, across regions and backfills\n"
        f"{queue}"
        f"* alerts: a failed task, and a run unfinished when its window closes, post to the "
        f"webhook of connection `{alerts.http_conn_id}`; the DAG pauses after "
        f"{site.dag.max_consecutive_failed_runs or 'no'} failed run(s) in a row\n"
        "* trigger form / REST conf: `trading_date` (YYYY-MM-DD), `ignore_window`, "
        "`max_pages`, `start_urls`, `dry_run`, `ignore_breaker` (see each field's "
        "description)\n\n"
        f"Resolved config (from `include/config`):\n\n```yaml\n{resolved}```\n"
    )


def build_scrape_dag(site: Site, region: Region, alerts: Alerts | None = None) -> DAG:
    import pendulum
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.sensors.external_task import ExternalTaskMarker
    from airflow.sdk import DAG

    from offpeak.alerts.notifier import FailureNotifier
    from offpeak.crawl.operator import ScrapeOperator
    from offpeak.schedule.timetable import OffPeakTimetable

    alerts = alerts or Alerts()
    dag_cfg = site.dag
    default_args = {
        "on_failure_callback": [
            FailureNotifier(http_conn_id=alerts.http_conn_id, site=site.name, region=region.name)
        ],
        "owner": dag_cfg.owner,
        "retries": dag_cfg.retries,
        "retry_delay": timedelta(seconds=dag_cfg.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=dag_cfg.max_retry_delay_seconds),
    }
    with DAG(
        dag_id=scrape_dag_id(site.name, region.name),
        description=f"{site.kind} crawl of {site.name} for {region.name} "
        f"({region.exchange}, off-peak {region.off_peak} {region.timezone})",
        schedule=OffPeakTimetable.for_region(
            region, catchup_days=dag_cfg.catchup_days if dag_cfg.catchup else None
        ),
        start_date=pendulum.datetime(*START_DATE, tz=region.timezone),
        catchup=dag_cfg.catchup,
        max_active_runs=dag_cfg.max_active_runs,
        max_consecutive_failed_dag_runs=dag_cfg.max_consecutive_failed_runs,
        deadline=deadline_alert(region, alerts),
        params=scrape_params(site),
        default_args=default_args,
        tags=[f"site:{site.name}", f"region:{region.name}", f"kind:{site.kind}"],
        doc_md=_doc_md(site, region, alerts),
        user_defined_macros={
            "offpeak_rollup_logical_date": partial(rollup_logical_date, region.name, region.name)
        },
    ) as dag:
        scrape = ScrapeOperator(
            task_id="scrape", site=site.name, region=region.name, pool=pool_name(site.name),
            **({"queue": site.queue} if site.queue else {}),
        )  # fmt: skip
        kwargs = {"site": site.name, "region": region.name}
        transform = PythonOperator(
            task_id="transform", python_callable=tasks.transform, op_kwargs=kwargs
        )
        load = PythonOperator(
            task_id="load", python_callable=tasks.load, op_kwargs=kwargs,
            outlets=[table_asset(site.name)],
        )  # fmt: skip
        # Clearing this run with "recursive" also clears the region rollup that waits for it.
        mark = ExternalTaskMarker(
            task_id="mark_rollup",
            external_dag_id=rollup_dag_id(region.name),
            external_task_id=f"wait_for_sites.{site.name}",
            logical_date="{{ offpeak_rollup_logical_date(dag_run) }}",
        )
        scrape >> transform >> load >> mark
    return dag


def _rollup_args(project: Project) -> dict:
    from offpeak.alerts.notifier import FailureNotifier

    # Retries are for a lost try only (a worker killed or lost while the task ran): a failed
    # input and a sensor's timeout fail at once (rollups.sensor), and so does check_inputs.
    return {
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "on_failure_callback": [FailureNotifier(http_conn_id=project.alerts.http_conn_id)],
    }


def _window_seconds(region: Region) -> int:
    return int(window_length(region).total_seconds())


def build_region_rollup_dag(project: Project, region: Region) -> DAG:
    """rollup__<region>: waits for the load of every site DAG of the region on the same
    trading date, then summarises them; same timetable as those DAGs."""
    import pendulum
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.sensors.external_task import ExternalTaskMarker
    from airflow.sdk import DAG, TaskGroup

    from offpeak.schedule.timetable import OffPeakTimetable

    cfg = project.rollups
    sites = project.sites_of(region.name)
    with DAG(
        dag_id=rollup_dag_id(region.name),
        description=f"Daily summary of {len(sites)} site(s) in {region.name} once all have loaded",
        schedule=OffPeakTimetable.for_region(region),
        start_date=pendulum.datetime(*START_DATE, tz=region.timezone),
        catchup=False,
        max_active_runs=4,
        fail_fast=True,  # one failed input fails the run at once; the other sensors stop
        default_args=_rollup_args(project),
        params=rollup_params(),
        tags=["rollup", f"region:{region.name}"],
        doc_md=_rollup_doc(
            region.name,
            [scrape_dag_id(s.name, region.name) for s in sites],
            cfg,
            _calendar_overrides(region),
        ),
        user_defined_macros={
            "offpeak_rollup_logical_date": partial(rollup_logical_date, region.name, GLOBAL)
        },
    ) as dag:
        timeout = _window_seconds(region)
        with TaskGroup("wait_for_sites") as waits:
            for site in sites:
                _wait_for(
                    cfg, site.name, scope=region.name, upstream_region=region.name,
                    external_dag_id=scrape_dag_id(site.name, region.name),
                    external_task_id="load", timeout=timeout,
                )  # fmt: skip
        summarize = PythonOperator(
            task_id="summarize",
            python_callable=summarize_region,
            op_kwargs={"region": region.name},
            retries=2,
            inlets=[table_asset(site.name) for site in sites],
            outlets=[table_asset(t) for t in REGION_ROLLUP_TABLES],
        )
        mark = ExternalTaskMarker(
            task_id="mark_global",
            external_dag_id=rollup_dag_id(GLOBAL),
            external_task_id=f"wait_for_regions.{region.name}",
            logical_date="{{ offpeak_rollup_logical_date(dag_run) }}",
        )
        waits >> summarize >> mark >> _verdict()
    return dag


def _wait_for(cfg, task_id: str, **target):
    """A rollup's sensor on one upstream: deferrable (the triggerer polls, no worker slot is
    held), failing as soon as the upstream fails, soft_fail from the config."""
    from offpeak.rollups.sensor import TradingDateSensor

    return TradingDateSensor(
        task_id=task_id,
        # A skipped load (an open circuit breaker, a dry run) will not come: the summary
        # leaves that site out and names it (summaries.summarize_region), rather than wait.
        allowed_states=["success", "skipped"],
        failed_states=["failed", "upstream_failed"],
        deferrable=True,
        poke_interval=cfg.poke_interval_seconds,
        soft_fail=cfg.soft_fail,
        **target,
    )


def _verdict():
    """The rollup's last task: fails the run when an input failed (see check_inputs)."""
    from airflow.providers.standard.operators.python import PythonOperator

    from offpeak.rollups.sensor import check_inputs

    return PythonOperator(task_id="check_inputs", python_callable=check_inputs).as_teardown(
        on_failure_fail_dagrun=True
    )


def build_global_rollup_dag(project: Project) -> DAG:
    """rollup__global: one run per date any region trades, after the last window closes;
    waits for the rollup of every region that trades that date, then summarises them."""
    import pendulum
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, TaskGroup

    from offpeak.schedule.timetable import GlobalTradingDayTimetable

    cfg = project.rollups
    regions = project.rolled_up_regions()
    with DAG(
        dag_id=rollup_dag_id(GLOBAL),
        description=f"Daily summary across {len(regions)} regions once every region has rolled up",
        schedule=GlobalTradingDayTimetable.for_regions(regions, cfg.global_delay_minutes),
        start_date=pendulum.datetime(*START_DATE, tz="UTC"),
        catchup=False,
        max_active_runs=4,
        fail_fast=True,
        default_args=_rollup_args(project),
        params=rollup_params(),
        tags=["rollup", "region:global"],
        doc_md=_rollup_doc(
            GLOBAL,
            [rollup_dag_id(r.name) for r in regions],
            cfg,
            "".join(_calendar_overrides(r) for r in regions),
        ),
    ) as dag:
        with TaskGroup("wait_for_regions") as waits:
            for region in regions:
                _wait_for(
                    cfg, region.name, scope=GLOBAL, upstream_region=region.name,
                    external_dag_id=rollup_dag_id(region.name),
                    external_task_id="summarize", timeout=cfg.global_timeout_minutes * 60,
                )  # fmt: skip
        summarize = PythonOperator(
            task_id="summarize", python_callable=summarize_global, retries=2,
            inlets=[table_asset(t) for t in REGION_ROLLUP_TABLES],
            outlets=[table_asset(GLOBAL_ROLLUP_TABLE)],
        )  # fmt: skip
        waits >> summarize >> _verdict()
    return dag


def _rollup_doc(scope: str, upstream: list[str], cfg, overrides: str = "") -> str:
    """``overrides``: the calendar overrides of the regions involved (_calendar_overrides)."""
    waits = "\n".join(f"* `{d}`" for d in upstream)
    what = (
        "the `load` of each site DAG of the region, same trading date"
        if scope != GLOBAL
        else "the `summarize` of each region rollup of the trading date (a region that does "
        "not trade that date, a listed closure included, is not waited for)"
    )
    table = "rollup_site_day`, `rollup_measure_day" if scope != GLOBAL else "rollup_global_day"
    calendar = f"\n\n{overrides.rstrip()}" if overrides else ""
    return (
        f"### Rollup: {scope}\n\nWaits for {what}:\n\n{waits}\n\n"
        f"then rebuilds `{settings.warehouse_schema()}.{table}` for that date. The sensors are "
        f"deferrable: the triggerer checks every {cfg.poke_interval_seconds} s and no worker "
        "slot is held; a failed input fails the run at once"
        f"{' (soft_fail: skips it)' if cfg.soft_fail else ''}.{calendar}"
        '\n\nTrigger conf: `{"trading_date": "YYYY-MM-DD"}`; without it and without a logical '
        "date, the latest trading day that is due.\n"
    )


def _wanted() -> str | None:
    """The DAG id a worker parses this file for (Airflow's parsing context), or None: all."""
    from airflow.sdk import get_parsing_context

    return get_parsing_context().dag_id


def build_rollup_dags(
    project: Project | None = None, *, shard: int | None = None
) -> dict[str, DAG]:
    """rollup__<region> for every region with sites, and rollup__global; with ``shard``, those
    whose scope hashes to it (naming.rollup_shard: dags/rollups/shard_<n>.py)."""
    wanted = _wanted()
    if project is None:
        if wanted is not None and not (_is_rollup(wanted) and _in_rollup_shard(wanted, shard)):
            return {}  # a worker running another file's DAG: nothing to build or read
        if shard is not None and wanted is None:
            # Read the site files only when a region of regions.yaml (or the global rollup)
            # is in this shard: an empty shard stays as cheap as a directory listing.
            regions = load_project(keep=lambda site: False).regions
            scopes = [*regions, GLOBAL]
            if not any(_in_rollup_shard(rollup_dag_id(s), shard) for s in scopes):
                return {}
        project = load_project()
    dags = {}
    regions = project.rolled_up_regions()
    ids = [rollup_dag_id(r.name) for r in regions] + ([rollup_dag_id(GLOBAL)] if regions else [])
    for dag_id in ids:
        if wanted not in (None, dag_id) or not _in_rollup_shard(dag_id, shard):
            continue
        scope = parse_dag_id(dag_id).scope
        if scope == GLOBAL:
            dags[dag_id] = build_global_rollup_dag(project)
        else:
            dags[dag_id] = build_region_rollup_dag(project, project.regions[scope])
    return dags


def _in_rollup_shard(dag_id: str, shard: int | None) -> bool:
    return shard is None or rollup_shard(parse_dag_id(dag_id).scope) == shard


def _is_rollup(dag_id: str) -> bool:
    try:
        return parse_dag_id(dag_id).site is None
    except ValueError:
        return False


def _site_of(dag_id: str) -> str | None:
    """The site of a scrape__<site>__<region> id; None for any other id."""
    try:
        return parse_dag_id(dag_id).site
    except ValueError:
        return None


def dag_ids(project: Project) -> list[str]:
    """Every DAG the factory builds from ``project``, sorted (without building them)."""
    ids = [scrape_dag_id(s.name, r.name) for s, r in project.pairs()]
    regions = project.rolled_up_regions()
    ids += [rollup_dag_id(r.name) for r in regions]
    return sorted(ids + ([rollup_dag_id(GLOBAL)] if regions else []))


def build_scrape_dags(
    project: Project | None = None, *, shard: int | None = None
) -> dict[str, DAG]:
    """All valid (site, region) DAGs, or with ``shard`` those of the sites in that shard
    (naming.scrape_shard: dags/scrape/shard_<n>.py), whose config files alone are read; in a
    worker, only the one DAG it runs, from that site's config file alone."""
    wanted = _wanted()
    if project is None:
        only_site = _site_of(wanted) if wanted else None
        if wanted and (only_site is None or not _in_shard(only_site, shard)):
            return {}  # a worker running another file's DAG: nothing to build or read
        if only_site is not None:
            project = load_project(only_site=only_site)
        elif shard is not None:
            project = load_project(keep=lambda site: scrape_shard(site) == shard)
        else:
            project = load_project()
    dags = {}
    for site, region in project.pairs():
        dag_id = scrape_dag_id(site.name, region.name)
        if (wanted and wanted != dag_id) or not _in_shard(site.name, shard):
            continue
        dags[dag_id] = build_scrape_dag(site, region, project.alerts)
    for name, error in sorted(project.errors.items()):
        log.error("Skipped %s: %s", name, error)
    return dags


def _in_shard(site: str, shard: int | None) -> bool:
    return shard is None or scrape_shard(site) == shard


def raise_config_errors(project: Project | None = None) -> None:
    """Raise one ConfigError listing every broken config file, so Airflow records it as an
    import error of the DAG file that calls this, while the valid sites' DAGs stay loaded."""
    project = project or load_project()
    if project.errors:
        raise ConfigError(
            f"{len(project.errors)} config file(s) in {project.config_dir} are invalid; "
            f"their DAGs are not loaded:\n\n{project.error_report}"
        )
