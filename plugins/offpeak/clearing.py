"""Clear a DAG's tasks for a trading date and, through its markers, the rollups built on them.

Airflow 3.3 no longer follows ExternalTaskMarkers itself (apache/airflow#61451).

    python -m offpeak.clearing scrape__equities__europe --trading-date 2026-11-03 [--task load]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from datetime import date

from offpeak.config import Project, load_project
from offpeak.factory import build_rollup_dags, build_scrape_dags
from offpeak.naming import scope_of
from offpeak.rollups.dates import rollup_clock


@dataclass(frozen=True)
class Clear:
    """One ``airflow tasks clear``: a task (and its downstream) of one run."""

    dag_id: str
    task_id: str
    logical_date: str

    def command(self) -> list[str]:
        # Airflow 3.3 matches --task-regex as a substring of the task id, not as a regex;
        # the exact id is the safe argument (no task id here contains another).
        return [
            "tasks", "clear", self.dag_id, "--task-regex", self.task_id,
            "--downstream", "--start-date", self.logical_date, "--end-date", self.logical_date,
            "--yes",
        ]  # fmt: skip


def plan(dag_id: str, task_id: str, trading_date: date, project: Project | None = None):
    """The clears to run, the first for ``dag_id.task_id``, then one per marker reached."""
    from airflow.providers.standard.sensors.external_task import ExternalTaskMarker

    project = project or load_project()
    dags = {**build_scrape_dags(project), **build_rollup_dags(project)}
    steps, todo, seen = [], [(dag_id, task_id)], set()
    while todo:
        current, task = todo.pop(0)
        if (current, task) in seen:
            continue
        seen.add((current, task))
        dag = dags.get(current)
        if dag is None or task not in dag.task_dict:
            raise ValueError(f"no task {task!r} in DAG {current!r}")
        clock = rollup_clock(project, scope_of(current))
        steps.append(Clear(current, task, clock.midnight(trading_date).isoformat()))
        below = dag.partial_subset(task_ids=[task], include_downstream=True)
        for marker in below.tasks:
            if isinstance(marker, ExternalTaskMarker):
                todo.append((marker.external_dag_id, marker.external_task_id))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dag_id")
    parser.add_argument("--trading-date", required=True, type=date.fromisoformat)
    parser.add_argument("--task", default="scrape", help="first task to clear (default scrape)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    for step in plan(args.dag_id, args.task, args.trading_date):
        print("airflow", " ".join(step.command()), flush=True)
        if not args.dry_run:
            subprocess.run([sys.executable, "-m", "airflow", *step.command()], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
