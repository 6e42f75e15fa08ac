"""`make bench`, section Crawl: ScrapeOperator's crawl beside plain `scrapy runspider`.

Each size is the equities site of the demo sites (20 rows a page, pages linked by a "next"
link) crawled by ``ScrapeOperator.run_crawl`` (``scrapy crawl`` in a subprocess with our
settings, extensions and guards), and, back to back in the same loop, by ``scrapy runspider``
of a minimal spider generated from the same site config: same start URL, row and field
selectors, pagination and Scrapy settings (concurrency, delays, autothrottle, robots.txt, user
agent, timeouts, feed), none of our components, fields read the plain way (parsel's
``.css().getall()``). Both are timed from subprocess start to exit; each pair's order
alternates. 5 pages is the demo site as served; 500 pages is the same site from a second
server whose (private) copy of the demo module serves more pages. Both servers run in this
process, as in the other sections.

Beside wall time, each figure's ``extra`` holds the crawl subprocesses' CPU seconds and their
ratio: on a machine shared with other work, wall time swings with the others' load while
CPU time does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from functools import partial
from pathlib import Path

import common
from common import Figure

SECTION = "Crawl"
SITE, REGION = "equities", "europe"
DAY = date(2026, 11, 18)
# Pages per crawl, and how many times --repeat pairs each size gets: a 5-page crawl is mostly
# start-up (~2 s), whose spread from run to run on a shared machine is as large as the target's
# margin, so it gets more pairs (they are cheap).
SIZES = ((5, 3), (500, 1))
TARGET = 1.10  # the largest ratio to plain `scrapy runspider` allowed (issue 12, target 4)

# Our settings module's names that are our components or our contract, not Scrapy's behaviour.
NOT_FOR_PLAIN_SCRAPY = {
    "BOT_NAME", "SPIDER_MODULES", "NEWSPIDER_MODULE", "DOWNLOADER_MIDDLEWARES", "ITEM_PIPELINES"
}  # fmt: skip

SPIDER_TEMPLATE = """\
import scrapy

FIELDS = {fields!r}  # name -> ("css" | "xpath", selector)


class PlainSpider(scrapy.Spider):
    name = "plain"
    start_urls = {start_urls!r}
    custom_settings = {settings!r}
"""
# The plain spiders' parse: the rows' fields read the plain way, then the next page (with
# ``{follow}``'s extra arguments; bench_browser's spider asks for the browser there).
PARSE_METHOD = """
    def parse(self, response):
        for row in response.css({rows!r}):
            item = {{}}
            for name, (how, selector) in FIELDS.items():
                found = (row.css(selector) if how == "css" else row.xpath(selector)).getall()
                item[name] = " ".join(found) if found else None
            if any(v is not None for v in item.values()):
                item["_url"] = response.url
                yield item
        href = response.css({next_page!r}).get()
        if href:
            yield response.follow(href, callback=self.parse{follow})
"""


def demo_server(pages: int):
    """``(server, rows a page)``: a demo-sites server on 127.0.0.1 whose equities site has
    ``pages`` pages (its own copy of the module: the shipped constant is changed in that copy
    only)."""
    from support.services import load_demo_server

    module = load_demo_server()
    module.EQUITY_PAGES = pages
    server = module.make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, module.EQUITY_ROWS_PER_PAGE


def plain_settings(site, feed: Path) -> dict:
    """Every Scrapy setting our crawl runs with (settings module, then the per-run ones),
    without our components and our OFFPEAK_* contract."""
    import importlib

    from offpeak.crawl import spec

    module = importlib.import_module("offpeak.scraping.settings")
    settings = {
        k: v
        for k, v in vars(module).items()
        if k.isupper() and not k.startswith("OFFPEAK_") and k not in NOT_FOR_PLAIN_SCRAPY
    }
    # Scrapy's own extensions only: LogStats stays off, as ours turn it off.
    settings["EXTENSIONS"] = {
        k: v for k, v in settings["EXTENSIONS"].items() if k.startswith("scrapy.")
    }
    per_run = spec.scrapy_settings(site, feed, feed.with_suffix(".stats"), None, "")
    settings.update({k: v for k, v in per_run.items() if not k.startswith("OFFPEAK_")})
    settings["FEEDS"] = json.loads(settings["FEEDS"])
    return settings


def plain_spider(site, base_url: str, feed: Path, path: Path) -> Path:
    from urllib.parse import urljoin

    fields = {
        name: ("css", f.css) if f.css else ("xpath", f.xpath) for name, f in site.fields.items()
    }
    urls = [
        urljoin(base_url + "/", t.format(region=REGION, trading_date=DAY.isoformat(), api_key=""))
        for t in site.start_urls
    ]
    path.write_text(
        SPIDER_TEMPLATE.format(fields=fields, start_urls=urls, settings=plain_settings(site, feed))
        + PARSE_METHOD.format(
            rows=site.html_table.rows, next_page=site.html_table.next_page, follow=""
        ),
        encoding="utf-8",
    )
    return path


def run_plain(spider: Path, cwd: Path) -> int:
    """``scrapy runspider`` to its end, its output read line by line as ours is."""
    env = {k: v for k, v in os.environ.items() if k != "SCRAPY_SETTINGS_MODULE"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "runspider", str(spider)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for _line in proc.stdout:
        pass
    return proc.wait()


def child_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_child(fn) -> tuple[float, float, object]:
    """(wall seconds, the child's CPU seconds, result) of ``fn()``, which runs one child to its
    end. CPU time is the figure to read on a busy machine: others' load stretches wall time."""
    cpu = child_cpu()
    seconds, result = common.timed(fn)
    return seconds, child_cpu() - cpu, result


@contextlib.contextmanager
def quiet():
    """Send this process's stdout and stderr to /dev/null: the operator logs every line of the
    crawl's output (and that cost is part of its crawl), but it is no use on the console."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def measure(pages: int, repeat: int, tmp: Path, warm_up: bool) -> list[Figure]:
    """``repeat`` pairs of runs (ours and plain, back to back), after one unrecorded pair if
    ``warm_up``."""
    from offpeak.config import get_site
    from offpeak.crawl.operator import ScrapeOperator
    from offpeak.crawl.runner import CrawlRequest
    from offpeak.partition import Partition

    site, _ = get_site(SITE)
    server, rows_per_page = demo_server(pages)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    op = ScrapeOperator(task_id="scrape", site=SITE, region=REGION)
    request = CrawlRequest(site, Partition(SITE, REGION, DAY, "bench"), base)
    ours, plain, ours_cpu, plain_cpu = [], [], [], []
    items = pages * rows_per_page

    def run_ours(work: Path) -> tuple[float, float]:
        feed, stats = work / "items.jsonl", work / "stats.json"
        with quiet():
            seconds, cpu, rc = timed_child(partial(op.run_crawl, request, feed, stats, str(work)))
        s = json.loads(stats.read_text())
        assert rc == 0 and s["finish_reason"] == "finished", (rc, s.get("finish_reason"))
        got_pages = s["response_received_count"] - s.get("robotstxt/response_count", 0)
        assert got_pages == pages, (got_pages, pages)
        assert lines(feed) == s["item_scraped_count"] == items, (lines(feed), items)
        return seconds, cpu

    def run_anchor(work: Path) -> tuple[float, float]:
        feed = work / "items.jsonl"
        spider = plain_spider(site, base, feed, work / "plain_spider.py")
        seconds, cpu, rc = timed_child(partial(run_plain, spider, work))
        assert rc == 0 and lines(feed) == items, (rc, lines(feed), items)
        return seconds, cpu

    try:
        for i in range(repeat + warm_up):
            work = tmp / f"p{pages}-{i}"
            (work / "ours").mkdir(parents=True)
            (work / "plain").mkdir()
            # Each pair back to back, its order alternating: a drift in the machine's load
            # favours neither.
            if i % 2:
                plain_seconds, plain_c = run_anchor(work / "plain")
                seconds, cpu = run_ours(work / "ours")
            else:
                seconds, cpu = run_ours(work / "ours")
                plain_seconds, plain_c = run_anchor(work / "plain")
            warm = warm_up and i == 0
            if not warm:
                ours.append(seconds)
                plain.append(plain_seconds)
                ours_cpu.append(cpu)
                plain_cpu.append(plain_c)
            print(
                f"  {pages} pages{' (warm-up)' if warm else ''}: ours {seconds:.2f} s "
                f"(CPU {cpu:.2f} s), plain {plain_seconds:.2f} s (CPU {plain_c:.2f} s), "
                f"{items} items",
                file=sys.stderr,
            )
    finally:
        server.shutdown()
        server.server_close()
    crawl = f"ScrapeOperator crawl, {pages} pages"
    anchor = "plain `scrapy runspider`, same pages and settings"
    rates = [items / s for s in ours]
    cpu_ratios = [a / b for a, b in zip(ours_cpu, plain_cpu, strict=True) if b]
    return [
        Figure(
            section=SECTION, name=crawl, runs=ours, anchor=anchor, anchor_runs=plain,
            target=TARGET, volume=pages, per="pages/s",
            note=f"{items} items a run; subprocess start to exit",
            extra={
                "items": items,
                "items_per_s": {"median": median(rates), "min": min(rates), "max": max(rates)},
                "cpu_s": ours_cpu,
                "anchor_cpu_s": plain_cpu,
                "cpu_ratio": {
                    "median": median(cpu_ratios), "min": min(cpu_ratios), "max": max(cpu_ratios)
                },
            },
        ),
        Figure(
            section=SECTION, name=f"{crawl} (items)", runs=list(ours), volume=items,
            per="items/s", note="the same runs, as items/s",
        ),
    ]  # fmt: skip


def main() -> None:
    args = common.main_args()
    figures: list[Figure] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-crawl-") as tmp:
        for n, (pages, times) in enumerate(SIZES):  # the first size warms up the disk cache
            figures += measure(pages, args.repeat * times, Path(tmp), warm_up=n == 0)
    common.write(figures, args.json)
    for f in figures:
        ratio = f" ratio {common.spread(f.ratios)} (target {f.target})" if f.ratios else ""
        if "cpu_ratio" in f.extra:
            c = f.extra["cpu_ratio"]
            ratio += f", CPU ratio {c['median']:.3g} ({c['min']:.3g}–{c['max']:.3g})"
        print(
            f"{f.name}: {common.spread(f.runs)} s, {common.spread(f.rates, '{:,.0f}')} {f.per}"
            f"{ratio}"
        )
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
