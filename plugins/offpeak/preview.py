"""Preview a site's YAML: crawl its first page(s) with the real spider and settings, and print
what the pipeline would load, with no Airflow scheduler and no warehouse.

    python -m offpeak.preview include/config/sites/equities.yaml --region americas \\
        --date 2026-08-04 [--base-url http://127.0.0.1:8000] [--pages 1]

(``make preview SITE=... REGION=... DATE=... BASE_URL=...``). It prints the rows as typed
values, the rejects with their reasons, each field's coverage, the rows skipped as not data,
the next-page link found, and the quality checks' verdict. Exit status: 0 when the checks
pass, 1 when a run would fail them, 2 for a config or usage error (the message names the file
and the field). Like ``scrapy parse``, but for our YAML: the same spider, settings, transform
and checks as ScrapeOperator, on the pages fetched.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from offpeak import settings
from offpeak.config import ConfigError, Region, Site, load_regions, load_site
from offpeak.connections import SiteConnection, connection_var, site_connection
from offpeak.crawl import contract, runner, spec
from offpeak.partition import Partition
from offpeak.pipeline.quality import Check
from offpeak.pipeline.transform import RejectRatioExceeded, clean_columns, transform_file
from offpeak.schedule.tradingtime import RegionClock


class PreviewError(Exception):
    """A config or usage problem: the message names the file, field or option."""


@dataclass
class Preview:
    """What a preview found: typed rows (CSV texts), rejects, coverage, checks."""

    site: Site
    region: Region
    trading_date: date
    base_url: str
    returncode: int
    stats: dict[str, Any]
    rows: list[dict[str, str | None]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    crawl_log: list[str] = field(default_factory=list)
    failure: str | None = None  # the crawl's own failure, when it failed

    @property
    def passed(self) -> bool:
        return self.failure is None and all(c.passed for c in self.checks)

    @property
    def items(self) -> int:
        return len(self.rows) + len(self.rejects)


def regions_for(site_file: Path, config_dir: Path | None) -> Path:
    """regions.yaml: ``config_dir``'s, else the one beside the site's ``sites/`` folder, else
    the configured config dir's (OFFPEAK_CONFIG_DIR)."""
    if config_dir is not None:
        return config_dir / "regions.yaml"
    beside = site_file.resolve().parent.parent / "regions.yaml"
    if site_file.resolve().parent.name == "sites" and beside.is_file():
        return beside
    return Path(settings.config_dir()) / "regions.yaml"


def site_location(site: Site, base_url: str | None) -> SiteConnection:
    """Where the site is, as ScrapeOperator reads it (offpeak.connections, Airflow's own
    lookup: ``AIRFLOW_CONN_<ID>`` as a URI or JSON, or a secrets backend), or ``--base-url``."""
    if base_url:
        return SiteConnection(base_url)
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return site_connection(site.base_url_conn_id)
    except AirflowNotFoundException:
        var = connection_var(site.base_url_conn_id)
        raise PreviewError(
            f"site {site.name!r}: no base URL: pass --base-url, or export {var} (the site's "
            f"base_url_conn_id {site.base_url_conn_id!r}), e.g. {var}='http://127.0.0.1:8000'"
        ) from None


def load(site_file: Path, region_name: str, config_dir: Path | None) -> tuple[Site, Region]:
    if not site_file.is_file():
        raise PreviewError(f"{site_file}: no such site file")
    try:
        regions = load_regions(regions_for(site_file, config_dir))
        site = load_site(site_file, regions, compile_selectors=True)
    except ConfigError as exc:
        raise PreviewError(str(exc)) from None
    if region_name not in site.regions:
        raise PreviewError(
            f"{site_file}: site {site.name!r}: field `regions` does not list region "
            f"{region_name!r}; it lists {site.regions}"
        )
    return site, regions[region_name]


def preview(site: Site, region: Region, trading_date: date, where: SiteConnection, *,
            pages: int = 1) -> Preview:  # fmt: skip
    """Crawl ``pages`` page(s) as ScrapeOperator does (offpeak.crawl.runner, with the run
    param ``max_pages``), then transform and judge what was fetched."""
    from airflow.sdk import ObjectStoragePath

    # A preview belongs to no DAG run: its partition's run is "preview" (nothing is published).
    part = Partition(site.name, region.name, trading_date, "preview")
    request = runner.CrawlRequest.at(where, site, part, sample=spec.CrawlSample(max_pages=pages))
    with tempfile.TemporaryDirectory(prefix="offpeak-preview-") as tmp:
        crawl_log: list[str] = []
        crawled = runner.Crawler(log=_Collect(crawl_log)).run(request, Path(tmp))
        decision = crawled.decision
        result = Preview(
            site, region, trading_date, where.base_url, crawled.returncode, crawled.stats
        )
        result.crawl_log = crawl_log
        if decision.outcome == "failed" and not decision.failed_checks:
            result.failure = decision.message
            return result
        result.checks = list(decision.checks)
        clean, rejects = Path(tmp, "clean.csv"), Path(tmp, "rejects.jsonl")
        try:
            counts = transform_file(
                site,
                ObjectStoragePath(crawled.files.feed.as_uri()),
                ObjectStoragePath(clean.as_uri()),
                ObjectStoragePath(rejects.as_uri()),
                zone=region.timezone,
                trading_date=trading_date,
            )
            ratio = counts["reject_ratio"]
            ok = True
        except RejectRatioExceeded as exc:
            ratio, ok = None, False
            result.checks.append(Check("reject_ratio", False, str(exc).split("; reasons")[0]))
        columns = clean_columns(site)
        with open(clean, encoding="utf-8", newline="") as fh:
            result.rows = [
                dict(zip(columns, (v if v != "" else None for v in row), strict=True))
                for row in csv.reader(fh)
            ]
        with open(rejects, encoding="utf-8") as fh:
            result.rejects = [json.loads(line) for line in fh if line.strip()]
        if ok:
            limit = site.quality.max_reject_ratio
            result.checks.append(
                Check("reject_ratio", True, f"{ratio:.1%} of records rejected, max {limit:.1%}")
            )
        result.checks += range_checks(site, result.rows)
    return result


def range_checks(site: Site, rows: list[dict[str, str | None]]) -> list[Check]:
    """quality.ranges on the typed rows, as the load checks them in the warehouse."""
    checks = []
    for name, bounds in site.quality.ranges.items():
        values = [Decimal(r[name]) for r in rows if r.get(name) is not None]
        low = [v for v in values if bounds.min is not None and v < Decimal(str(bounds.min))]
        high = [v for v in values if bounds.max is not None and v > Decimal(str(bounds.max))]
        outside = len(low) + len(high)
        limits = " and ".join(
            f"{word} {bound:g}"
            for word, bound in (("min", bounds.min), ("max", bounds.max))
            if bound is not None
        )
        what = f"{outside} of {len(values)} values outside {limits}"
        checks.append(Check("range", outside == 0, what, name))
    return checks


class _Collect(logging.Logger):
    """A logger that keeps the crawl's log lines (shown when the crawl fails)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("offpeak.preview.crawl")
        self.lines = lines

    def _log(self, level, msg, args, *rest, **kwargs) -> None:  # type: ignore[override]
        self.lines.append(msg % args if args else str(msg))


# ------------------------------------------------------------------------------ printing


def table(headings: list[str], rows: list[list[str]]) -> list[str]:
    """Rows under headings, each column as wide as its widest cell."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headings)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headings), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _key_text(site: Site, record: Any) -> str:
    """The reject's natural key as far as the record has it (``symbol='ACME'``): which row it
    is on the page, where the line number is only its place in the feed."""
    if not isinstance(record, dict):
        return ""
    found = [(k, record.get(k)) for k in site.natural_key]
    return ", ".join(f"{k}={v!r}" for k, v in found if v not in (None, ""))


def report(p: Preview, shown: int = 20) -> str:
    site, stats = p.site, p.stats
    pages = contract.site_pages(stats)
    out = [
        f"Preview of site {site.name!r} ({site.kind}), region {p.region.name!r}, "
        f"trading date {p.trading_date}",
        f"  base URL {p.base_url}: {pages} page(s) fetched, finish reason "
        f"{stats.get('finish_reason', 'unknown')!r}",
        f"  next page: {stats.get('offpeak/next_page') or 'none found'}",
    ]
    if p.failure is not None:
        out += ["", f"The crawl failed: {p.failure}", "", "Crawl log (last 30 lines):"]
        out += [f"  {line}" for line in p.crawl_log[-30:]]
        return "\n".join(out)
    fields = list(site.fields)
    out += ["", f"Rows ({len(p.rows)}{f', the first {shown}' if len(p.rows) > shown else ''}):"]
    headings = [f"{n} ({site.fields[n].type})" for n in fields]
    cells = [["" if r[n] is None else str(r[n]) for n in fields] for r in p.rows[:shown]]
    out += [f"  {line}" for line in table(headings, cells)]
    out += ["", f"Rejects ({len(p.rejects)}):"]
    for r in p.rejects[:shown]:
        key = _key_text(site, r.get("record"))
        out.append(f"  line {r['line']}{f' ({key})' if key else ''}: {r['reason']}")
    skipped = int(stats.get("offpeak/rows_skipped", 0))
    out += ["", f"Rows skipped as not data (header, footer, spacer): {skipped}"]
    out += ["", f"Field coverage (of {p.items} scraped rows):"]
    floor = site.quality.min_field_coverage
    for name in fields:
        have = int(stats.get(f"offpeak/field/{name}", 0))
        share = f"{have / p.items:.0%}" if p.items else "-"
        least = f" (min {floor[name]:.0%})" if name in floor else ""
        out.append(f"  {name}: {have} of {p.items} = {share}{least}")
    out += ["", f"Quality checks (on the {pages} page(s) fetched):"]
    for c in p.checks:
        out.append(f"  {c.status:<7} {c.label}: {c.detail}")
    if p.passed:
        out += ["", f"Verdict: the checks pass; a run would load {len(p.rows)} row(s)."]
    else:
        failed = ", ".join(c.label for c in p.checks if not c.passed)
        out += ["", f"Verdict: a run would FAIL its quality checks ({failed})."]
    return "\n".join(out)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offpeak.preview",
        description="Crawl a site's first page(s) and print what the pipeline would load.",
    )
    parser.add_argument("site_file", type=Path, help="the site's YAML file")
    parser.add_argument("--region", required=True, help="one of the site's regions")
    parser.add_argument(
        "--date", type=_date, help="trading date (default: the region's latest trading date)"
    )
    parser.add_argument("--base-url", help="default: the site's AIRFLOW_CONN_<ID> connection")
    parser.add_argument("--pages", type=int, default=1, help="pages to fetch in all (default 1)")
    parser.add_argument("--rows", type=int, default=20, help="rows and rejects shown (20)")
    parser.add_argument("--config-dir", type=Path, help="where regions.yaml is")
    args = parser.parse_args(argv)
    try:
        if args.pages < 1:
            raise PreviewError(f"--pages must be at least 1, not {args.pages}")
        site, region = load(args.site_file, args.region, args.config_dir)
        where = site_location(site, args.base_url)
        trading_date = args.date
        if trading_date is None:
            trading_date = RegionClock.of(region).latest_due_day(datetime.now(tz=UTC))
        result = preview(site, region, trading_date, where, pages=args.pages)
    except PreviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(result, args.rows))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
