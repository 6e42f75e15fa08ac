"""``python -m offpeak.coverage``: the Coverage page's matrix in a terminal, or as JSON.

    python -m offpeak.coverage [--days 20] [--site S ...] [--region R ...] [--state ST ...]
                               [--json] [--why-file PATH]

Runs wherever the Airflow CLI runs (it reads Airflow's metadata DB and the warehouse
connection as the api-server does): ``make coverage`` in the ``make run`` environment,
``docker compose exec airflow-scheduler python -m offpeak.coverage`` in compose.
Exit status: 0 when no trading day shown is missing or failed, 1 when one is (so it can
gate a downstream job), 2 for a usage error; a non-zero exit ends with one line that says why
(to stderr, or into ``--why-file``: `make coverage` shows it instead of make's error line).
A trading day before a DAG's first scheduled run was never due, and is not a gap.
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
    m.NEVER_DUE: "_",
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


def why_not_zero(result: m.Matrix) -> str:
    """The one line a non-zero exit ends with."""
    gaps = result.gaps()
    states = {c.state for _, c in gaps}
    kinds = " or ".join(s for s in m.GAPS if s in states)
    return (
        f"coverage: {len(gaps)} trading date(s) shown are {kinds} (listed above); fill them "
        "from the Coverage page or with `airflow backfill create`"
    )


def main(argv: list[str] | None = None) -> int:
    # --why-file first, so that a usage error is written there too.
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--why-file")
    why_file = early.parse_known_args(argv)[0].why_file

    def say_why(line: str) -> None:
        if why_file:
            with open(why_file, "w", encoding="utf-8") as out:
                out.write(line + "\n")
        else:
            print(line, file=sys.stderr)

    parser = _Parser(
        on_error=lambda message: say_why(f"coverage: usage error: {message}"),
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
    parser.add_argument("--why-file", metavar="PATH",
                        help="on a non-zero exit, write the one line that says why here, not "
                        "to stderr (make coverage)")  # fmt: skip
    args = parser.parse_args(argv)
    if not 1 <= args.days <= m.MAX_DAYS:
        parser.error(f"--days must be between 1 and {m.MAX_DAYS}, not {args.days}")

    from airflow.utils.session import create_session

    with create_session() as session:
        result = current_matrix(
            session, days=args.days, sites=args.site, regions=args.region, states=args.state
        )
    print(json.dumps(result.to_dict(), indent=2) if args.json else render(result), flush=True)
    if result.gaps():
        say_why(why_not_zero(result))
        return 1
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, telling ``on_error`` the message of a usage error before it exits 2."""

    def __init__(self, *args, on_error, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_error = on_error

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self._on_error(message)
        self.exit(2)


if __name__ == "__main__":
    sys.exit(main())
