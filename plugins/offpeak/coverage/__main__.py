"""``python -m offpeak.coverage``: the Coverage page's matrix in a terminal, or as JSON.

    python -m offpeak.coverage [--days 20] [--site S ...] [--region R ...] [--state ST ...]
                               [--json]

Runs wherever the Airflow CLI runs (it reads Airflow's metadata DB and the warehouse
connection as the api-server does): ``make coverage`` in the ``make run`` environment,
``docker compose exec airflow-scheduler python -m offpeak.coverage`` in compose.
Exit status: 0 when no trading day shown is missing or failed, 1 when one is (so it can
gate a downstream job), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from offpeak.coverage import matrix as m
from offpeak.coverage.service import current_matrix

# One character per cell in the text view, and the legend that explains them.
SYMBOLS = {
    m.COMPLETE: "#",
    m.PARTIAL: "p",
    m.RUNNING: "r",
    m.FAILED: "F",
    m.MISSING: "?",
    m.SCHEDULED: ".",
    m.CLOSED: "-",
}


def render(result: m.Matrix) -> str:
    """The matrix as text: a row per (site, region), a column per date, then the gaps."""
    if not result.rows:
        return "No (site, region) DAG matches the filters."
    dates = [date.fromisoformat(d) for d in result.dates]
    names = [f"{r.site} / {r.region}" for r in result.rows]
    width = max(len(n) for n in [*names, "site / region"])
    lines = [
        f"Coverage of the last {len(dates)} trading dates, {result.dates[0]} to "
        f"{result.dates[-1]} (generated {result.generated_at})",
        "",
        f"{'month':>{width}}  " + " ".join(_month_marks(dates)),
        f"{'day':>{width}}  " + " ".join(d.strftime("%d") for d in dates),
    ]
    for name, row in zip(names, result.rows, strict=True):
        cells = " ".join(f" {SYMBOLS[c.state]}" for c in row.cells)
        lines.append(f"{name:<{width}}  {cells}")
    legend = ", ".join(f"{s} {state}" for state, s in SYMBOLS.items())
    counts = ", ".join(f"{n} {state}" for state, n in result.counts().items() if n)
    lines += ["", f"Legend: {legend}", f"Cells: {counts}"]
    gaps = result.gaps()
    if gaps:
        lines += ["", f"Gaps ({len(gaps)}): fill them from the Coverage page, or with "
                      "`airflow backfill create`:"]  # fmt: skip
        for row, cell in gaps:
            lines.append(f"  {cell.state:<8} {row.dag_id} {cell.date}: {cell.detail}")
    return "\n".join(line.rstrip() for line in lines)


def _month_marks(dates: list[date]) -> list[str]:
    """A column's month (``11``) where a month begins, blank elsewhere."""
    return [
        d.strftime("%m") if i == 0 or d.month != dates[i - 1].month else "  "
        for i, d in enumerate(dates)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offpeak.coverage",
        description="Which trading dates each (site, region) has loaded, failed or is missing.",
    )
    parser.add_argument("--days", type=int, default=m.DEFAULT_DAYS,
                        help=f"trading dates shown (default {m.DEFAULT_DAYS})")  # fmt: skip
    parser.add_argument("--site", action="append", default=[], help="only this site (repeat)")
    parser.add_argument("--region", action="append", default=[], help="only this region")
    parser.add_argument("--state", action="append", default=[], choices=m.STATES,
                        help="only rows with a cell in this state (repeat)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="the page's JSON document")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= m.MAX_DAYS:
        parser.error(f"--days must be between 1 and {m.MAX_DAYS}, not {args.days}")

    from airflow.utils.session import create_session

    with create_session() as session:
        result = current_matrix(
            session, days=args.days, sites=args.site, regions=args.region, states=args.state
        )
    print(json.dumps(result.to_dict(), indent=2) if args.json else render(result))
    return 1 if result.gaps() else 0


if __name__ == "__main__":
    sys.exit(main())
