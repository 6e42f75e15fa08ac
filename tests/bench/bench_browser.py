"""`make bench`, section Browser (issue 27): a rendered site's crawl beside a plain
scrapy-playwright spider of the same pages, and a site's proxy beside a direct crawl.

The pages are the demo's equities whose rows a script writes after load (`/js/...`), served
with 5 and 200 pages by a server in this process (its own copy of the demo module).

- **Browser**: ``ScrapeOperator.run_crawl`` of the site with ``browser: {wait_for: rows}``
  (our spider, settings, guards and dead letters; Debian's chromium), and, back to back, the
  anchor: ``scrapy runspider`` of a minimal spider with scrapy-playwright's handler, the same
  launch options, page cap, blocked resource types and wait, and none of our components.
  Timed from subprocess start to exit; beside it the peak RSS of the whole crawl (the crawl
  process, Playwright's driver and every chromium process, summed, sampled every 50 ms).
- **Proxy**: the same pages read plainly (the plain equities, 200 pages) by our crawl through
  Debian's tinyproxy on 127.0.0.1, against our crawl of them direct.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import common
import psutil
from bench_crawl import DAY, PARSE_METHOD, REGION, lines, quiet, run_plain, timed_child
from common import Figure

SECTION = "Browser"
# (pages, pairs): 5 pages are mostly start-up, so --repeat pairs; 200 pages take ~70 s a
# run (the pages follow one another by their next links), so one pair.
SIZES = ((5, None), (200, 1))
TARGET = 1.10  # issue 27, target 4: ours against the plain scrapy-playwright spider
WAIT_FOR = "table#quotes tbody tr"

ANCHOR_SPIDER = """\
import scrapy
from scrapy_playwright.page import PageMethod

FIELDS = {fields!r}
META = {{"playwright": True,
         "playwright_page_goto_kwargs": {{"wait_until": "load", "timeout": 20000}},
         "playwright_page_methods": [PageMethod("wait_for_selector", {wait_for!r},
                                                timeout=20000)]}}


def abort(request):
    return request.resource_type in {block!r}


class PlainBrowserSpider(scrapy.Spider):
    name = "plain_browser"
    custom_settings = {settings!r} | {{"PLAYWRIGHT_ABORT_REQUEST": abort}}

    async def start(self):
        yield scrapy.Request({start!r}, meta=META)

"""


class PeakRss:
    """The largest sum of PSS (MiB) over this process's descendants while it runs: chromium's
    processes share most of their pages, which a sum of RSS would count once per process."""

    def __init__(self) -> None:
        self.peak, self.done = 0.0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self.done.wait(0.05):
            total = 0
            for proc in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_full_info().pss
            self.peak = max(self.peak, total / 2**20)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def rendered_site():
    """The shipped equities, its pages the scripted ones, rendered (``browser``)."""
    from offpeak.config import get_site
    from offpeak.config.sites import Browser

    site, _ = get_site("equities")
    return site.model_copy(update={
        "start_urls": ["/js/equities/{region}/{trading_date}/quotes?page=1"],
        "browser": Browser(wait_for=WAIT_FOR),
    })  # fmt: skip


def anchor_spider(site, base_url: str, feed: Path, path: Path) -> Path:
    from bench_crawl import plain_settings

    from offpeak.crawl import spec
    from offpeak.scraping.browser import launch_options

    settings = plain_settings(site, feed)
    settings.update(
        {
            k: v
            for k, v in spec.browser_settings(site).items()
            if not k.startswith("OFFPEAK_") and k != "PLAYWRIGHT_ABORT_REQUEST"
        }
    )
    settings["DOWNLOAD_HANDLERS"] = json.loads(settings["DOWNLOAD_HANDLERS"])
    settings["PLAYWRIGHT_LAUNCH_OPTIONS"] = launch_options()  # fmt: skip
    fields = {n: ("css", f.css) if f.css else ("xpath", f.xpath) for n, f in site.fields.items()}
    start = f"{base_url}/js/equities/{REGION}/{DAY.isoformat()}/quotes?page=1"
    spider = ANCHOR_SPIDER.format(
        fields=fields, wait_for=WAIT_FOR, block=set(site.browser.block), settings=settings,
        start=start,
    ) + PARSE_METHOD.format(
        rows=site.html_table.rows, next_page=site.html_table.next_page, follow=", meta=META"
    )  # fmt: skip
    path.write_text(spider, encoding="utf-8")
    return path


def demo_server(pages: int):
    from bench_crawl import demo_server as serve

    return serve(pages)


def measure_browser(pages: int, repeat: int, tmp: Path) -> list[Figure]:
    from offpeak.crawl.operator import ScrapeOperator
    from offpeak.crawl.runner import CrawlRequest
    from offpeak.partition import Partition

    site = rendered_site()
    server, per_page = demo_server(pages)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    op = ScrapeOperator(task_id="scrape", site="equities", region=REGION)
    request = CrawlRequest(site, Partition("equities", REGION, DAY, "bench"), base)
    items = pages * per_page
    ours, plain, ours_rss, plain_rss = [], [], [], []
    try:
        for i in range(repeat):
            work = tmp / f"b{pages}-{i}"
            (work / "ours").mkdir(parents=True)
            (work / "plain").mkdir()

            def run_ours(w=work / "ours"):
                feed, stats = w / "items.jsonl", w / "stats.json"
                with quiet(), PeakRss() as rss:
                    seconds, _, rc = timed_child(
                        partial(op.run_crawl, request, feed, stats, str(w))
                    )
                assert rc == 0 and lines(feed) == items, (rc, lines(feed), items)
                ours.append(seconds)
                ours_rss.append(rss.peak)

            def run_anchor(w=work / "plain"):
                spider = anchor_spider(site, base, w / "items.jsonl", w / "spider.py")
                with PeakRss() as rss:
                    seconds, _, rc = timed_child(partial(run_plain, spider, w))
                assert rc == 0 and lines(w / "items.jsonl") == items, (rc, items)
                plain.append(seconds)
                plain_rss.append(rss.peak)

            for run in (run_anchor, run_ours) if i % 2 else (run_ours, run_anchor):
                run()
            print(f"  browser, {pages} pages: ours {ours[-1]:.2f} s, {ours_rss[-1]:.0f} MiB; "
                  f"plain {plain[-1]:.2f} s, {plain_rss[-1]:.0f} MiB", file=sys.stderr)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    name = f"Rendered crawl (Debian chromium), {pages} pages"
    anchor = "plain scrapy-playwright spider, same pages, browser and settings"
    return [
        Figure(section=SECTION, name=name, runs=ours, anchor=anchor, anchor_runs=plain,
               target=TARGET, volume=pages, per="pages/s",
               note=f"{items} items a run; subprocess start to exit",
               extra={"peak_rss_mib": ours_rss, "anchor_peak_rss_mib": plain_rss}),
        Figure(section=SECTION, name=f"{name}, peak memory (crawl + driver + chromium, PSS)",
               runs=ours_rss, unit="MiB", anchor=anchor, anchor_runs=plain_rss,
               note="PSS summed over the crawl's processes, sampled every 50 ms"),
    ]  # fmt: skip


def measure_proxy(pages: int, repeat: int, tmp: Path) -> list[Figure]:
    from offpeak.config import get_site
    from offpeak.connections import Proxy
    from offpeak.crawl.operator import ScrapeOperator
    from offpeak.crawl.runner import CrawlRequest
    from offpeak.partition import Partition
    from support.tinyproxy import Tinyproxy

    site, _ = get_site("equities")
    server, per_page = demo_server(pages)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    tiny = Tinyproxy(tmp / "tinyproxy", "bench", "bench-secret").start()
    proxy = Proxy("bench_proxy", f"127.0.0.1:{tiny.port}",
                  f"http://bench:bench-secret@127.0.0.1:{tiny.port}", "bench-secret")  # fmt: skip
    op = ScrapeOperator(task_id="scrape", site="equities", region=REGION)
    part = Partition("equities", REGION, DAY, "bench")
    direct_request = CrawlRequest(site, part, base)
    proxied_request = CrawlRequest(site, part, base, proxy=proxy)
    items = pages * per_page
    direct, proxied = [], []
    try:
        both = (("direct", direct_request, direct), ("proxied", proxied_request, proxied))
        for i in range(repeat):
            for name, req, out in both[::-1] if i % 2 else both:
                w = tmp / f"x{i}-{name}"
                w.mkdir(parents=True)
                with quiet():
                    seconds, _, rc = timed_child(
                        partial(op.run_crawl, req, w / "items.jsonl", w / "stats.json", str(w))
                    )
                assert rc == 0 and lines(w / "items.jsonl") == items, (name, rc)
                out.append(seconds)
        through = [u for u in tiny.requests() if "/quotes?page=" in u]
        assert len(through) == pages * repeat, len(through)  # the proxied runs' pages, all
    finally:
        tiny.stop()
        server.shutdown()
        server.server_close()
    return [
        Figure(section=SECTION, name=f"Crawl through a proxy (tinyproxy), {pages} pages",
               runs=proxied, anchor="the same crawl, direct", anchor_runs=direct,
               volume=pages, per="pages/s", note="plain pages; the ratio is the proxy's cost"),
    ]  # fmt: skip


def main() -> None:
    args = common.main_args()
    figures: list[Figure] = []
    started = time.perf_counter()
    os.environ.pop("OFFPEAK_PROXY_URL", None)
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-browser-") as tmp:
        for pages, pairs in SIZES:
            figures += measure_browser(pages, pairs or args.repeat, Path(tmp))
        figures += measure_proxy(200, args.repeat, Path(tmp))
    common.write(figures, args.json)
    for f in figures:
        ratio = f" ratio {common.spread(f.ratios)}" + (f" (target {f.target})" if f.target else "")
        print(f"{f.name}: {common.spread(f.runs)} {f.unit}{ratio if f.ratios else ''}")
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
