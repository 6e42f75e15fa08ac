"""Builds one `scrape__<site>__<region>` DAG per (site, region) from the YAML config."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import yaml

from offpeak.config import ConfigError, Project, Region, Site, load_project

if TYPE_CHECKING:
    from airflow.sdk import DAG

log = logging.getLogger(__name__)
START_DATE = (2026, 1, 1)


def dag_id_for(site: str, region: str) -> str:
    return f"scrape__{site}__{region}"


def _doc_md(site: Site, region: Region) -> str:
    resolved = yaml.safe_dump(
        {"site": site.model_dump(mode="json"), "region": region.model_dump(mode="json")},
        sort_keys=False,
        allow_unicode=True,
    )
    return (
        f"### {site.name} in {region.name}\n\n"
        f"{site.description}\n\n"
        f"* spider kind: `{site.kind}`, natural key: `{', '.join(site.natural_key)}`\n"
        f"* schedule: one run per `{region.exchange}` trading day, due when the off-peak "
        f"window opens ({region.off_peak} `{region.timezone}`); the data interval is the "
        "trading day, local midnight to midnight\n"
        f"* warehouse table: `scraped.{site.name}`, partition region `{region.name}` "
        "+ trading date\n"
        f'* trigger conf: `{{"trading_date": "YYYY-MM-DD"}}` scrapes that date; '
        f'`{{"ignore_window": true}}` crawls now instead of waiting for the window\n\n'
        f"Resolved config (from `include/config`):\n\n```yaml\n{resolved}```\n"
    )


def build_scrape_dag(site: Site, region: Region) -> DAG:
    import pendulum
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from offpeak import tasks
    from offpeak.operators import ScrapeOperator
    from offpeak.timetable import OffPeakTimetable

    settings = site.dag
    default_args = {
        "owner": settings.owner,
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_seconds),
    }
    with DAG(
        dag_id=dag_id_for(site.name, region.name),
        description=f"{site.kind} crawl of {site.name} for {region.name} "
        f"({region.exchange}, off-peak {region.off_peak} {region.timezone})",
        schedule=OffPeakTimetable.for_region(
            region, catchup_days=settings.catchup_days if settings.catchup else None
        ),
        start_date=pendulum.datetime(*START_DATE, tz=region.timezone),
        catchup=settings.catchup,
        max_active_runs=settings.max_active_runs,
        default_args=default_args,
        tags=[f"site:{site.name}", f"region:{region.name}", f"kind:{site.kind}"],
        doc_md=_doc_md(site, region),
    ) as dag:
        scrape = ScrapeOperator(task_id="scrape", site=site.name, region=region.name)
        kwargs = {"site": site.name, "region": region.name}
        transform = PythonOperator(
            task_id="transform", python_callable=tasks.transform, op_kwargs=kwargs
        )
        load = PythonOperator(task_id="load", python_callable=tasks.load, op_kwargs=kwargs)
        scrape >> transform >> load
    return dag


def build_scrape_dags(project: Project | None = None) -> dict[str, DAG]:
    """All valid (site, region) DAGs; in a worker, only the one it runs."""
    from airflow.sdk import get_parsing_context

    project = project or load_project()
    wanted = get_parsing_context().dag_id
    dags = {}
    for site, region in project.pairs():
        dag_id = dag_id_for(site.name, region.name)
        if wanted and wanted != dag_id:
            continue
        dags[dag_id] = build_scrape_dag(site, region)
    for name, error in sorted(project.errors.items()):
        log.error("Skipped %s: %s", name, error)
    return dags


def raise_config_errors(project: Project | None = None) -> None:
    """Raise one ConfigError listing every broken config file, so Airflow records it as an
    import error of the DAG file that calls this, while the valid sites' DAGs stay loaded."""
    project = project or load_project()
    if project.errors:
        raise ConfigError(
            f"{len(project.errors)} config file(s) in {project.config_dir} are invalid; "
            f"their DAGs are not loaded:\n\n{project.error_report}"
        )
