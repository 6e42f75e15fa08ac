"""Each json_api pagination style, crawled for real (`scrapy crawl` in a subprocess, as
ScrapeOperator runs it) from the demo server's /api/paged routes: 23 records in pages of 5
(include/demo_sites/server.py PAGED_DOCS). Each crawl stops where it should (exact items and
pages fetched), and a next link or cursor that points back is a dead letter naming the URL,
with the crawl partial."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from offpeak.config import Site
from offpeak.crawl import contract
from offpeak.crawl.output import dead_letters_beside, read_dead_letters, read_stats
from offpeak.crawl.runner import CrawlRequest
from offpeak.crawl.verdict import Verdict, judge
from offpeak.partition import Partition

pytestmark = pytest.mark.integration
DAY = date(2026, 3, 3)
REGION = "europe"
CODES = [f"P{i:03d}" for i in range(1, 24)]  # the route's 23 records, in order


@dataclass
class Crawled:
    codes: list[str]
    errors: list[str]  # records standing for a page that could not be read
    pages: int  # responses from the site (robots.txt aside)
    stats: dict[str, Any]
    dead_letters: list[dict[str, Any]]
    verdict: Verdict


@pytest.fixture
def crawl(demo_url, tmp_path):
    """``crawl(start_url, json_api)``: a site with that start URL and json_api section, crawled
    from the demo server; its items' codes, pages, stats, dead letters and verdict."""
    from offpeak.crawl.operator import ScrapeOperator

    def run(start_url: str, json_api: dict[str, Any]) -> Crawled:
        site = Site.model_validate({
            "name": "paged", "kind": "json_api", "base_url_conn_id": "site_paged",
            "start_urls": [start_url], "regions": [REGION], "natural_key": ["code"],
            "json_api": json_api,
            "fields": {"code": {"type": "text", "path": "code"},
                       "price": {"type": "decimal", "path": "price"}},
        })  # fmt: skip
        work = tmp_path / f"crawl{len(list(tmp_path.iterdir()))}"
        work.mkdir()
        feed, stats_file = work / "items.jsonl", work / "stats.json"
        op = ScrapeOperator(task_id="scrape", site=site.name, region=REGION)
        request = CrawlRequest(site, Partition(site.name, REGION, DAY, "manual__1"), demo_url)
        rc = op.run_crawl(request, feed, stats_file, str(work))
        stats = read_stats(stats_file)
        items = [json.loads(line) for line in feed.read_text().splitlines()]
        return Crawled(
            [item["code"] for item in items if "_error" not in item],
            [item["_error"] for item in items if "_error" in item],
            contract.site_pages(stats),
            stats,
            read_dead_letters(dead_letters_beside(stats_file)),
            judge(site, stats, rc),
        )

    return run


def assert_complete(crawled: Crawled, pages: int, codes: list[str] = CODES) -> None:
    assert crawled.verdict.outcome == "complete", crawled.verdict.reasons
    assert crawled.dead_letters == [] and crawled.errors == []
    assert sorted(crawled.codes) == codes
    assert crawled.pages == pages


def assert_loop(crawled: Crawled, pages: int, page: str, points_to: str) -> None:
    """Partial, and one dead letter naming the page and the URL it points back to."""
    assert crawled.verdict.outcome == "partial"
    assert any("pagination loop" in reason for reason in crawled.verdict.reasons)
    assert sorted(crawled.codes) == CODES  # every record once: the repeat is not fetched
    assert crawled.pages == pages
    [letter] = crawled.dead_letters
    assert letter["cause"] == "pagination_loop"
    assert letter["url"].endswith(page)
    assert f"{points_to} as its next page" in letter["reason"]
    assert "already requested" in letter["reason"]


# --------------------------------------------------------------------------- page numbers


def test_page_numbers_end_at_the_first_empty_page(crawl):
    crawled = crawl("/api/paged/pages", {"records": "items", "pagination": "page_number"})
    assert_complete(crawled, pages=6)  # 5 pages of records, then page 6: an empty list


def test_page_numbers_end_at_a_404_past_the_last_page(crawl):
    crawled = crawl("/api/paged/pages?past=404", {"records": "items", "pagination": "page"})
    assert_complete(crawled, pages=6)  # page 6 answers 404: the end, not an error
    assert crawled.stats[f"{contract.STATUS_PREFIX}404"] == 1


def test_a_404_is_an_error_when_the_site_says_it_is_not_the_end(crawl):
    paging = {"style": "page_number", "stop_on_not_found": False}
    crawled = crawl("/api/paged/pages?past=404", {"records": "items", "pagination": paging})
    assert crawled.verdict.outcome == "partial"
    assert sorted(crawled.codes) == CODES
    [letter] = crawled.dead_letters
    assert (letter["cause"], letter["status"]) == ("http_error", 404)
    assert letter["url"].endswith("/api/paged/pages?past=404&page=6")


@pytest.mark.parametrize("total", ["total_pages_path", "total_items_path"])
def test_page_numbers_end_at_the_total_the_body_gives(crawl, total):
    paging = {"style": "page_number", total: f"meta.{total.removesuffix('_path')}"}
    crawled = crawl("/api/paged/pages", {"records": "items", "pagination": paging})
    assert_complete(crawled, pages=5)  # no request for a page past the total


# --------------------------------------------------------------------------- offset / limit


def test_offset_and_limit_end_at_a_short_page(crawl):
    paging = {"style": "offset", "limit": 5}
    crawled = crawl("/api/paged/offset", {"records": "results", "pagination": paging})
    assert_complete(crawled, pages=5)  # 5, 5, 5, 5 and the short page of 3


def test_offset_with_a_total_reads_past_pages_the_api_shortens(crawl):
    # Asked for 20 a page, the API gives at most 10: the total, not the page size, decides.
    paging = {"style": "offset", "limit": 20, "total_items_path": "count"}
    crawled = crawl("/api/paged/offset", {"records": "results", "pagination": paging})
    assert_complete(crawled, pages=3)  # offsets 0, 10, 20


# --------------------------------------------------------------------------- cursors, next URLs


@pytest.mark.parametrize(
    "paging",
    [
        {"style": "cursor", "cursor_path": "next_cursor"},
        {"style": "cursor", "cursor_header": "X-Next-Cursor"},
    ],
    ids=["body", "header"],
)
def test_a_cursor_from_the_body_or_a_header_is_followed_to_the_end(crawl, paging):
    assert_complete(crawl("/api/paged/cursor", {"records": "data", "pagination": paging}), 5)


def test_a_cursor_that_points_back_is_a_named_loop(crawl):
    paging = {"style": "cursor", "cursor_path": "next_cursor"}
    crawled = crawl("/api/paged/cursor?loop=1", {"records": "data", "pagination": paging})
    # The fifth page's cursor is the second page's: fetched once, then named.
    assert_loop(crawled, 5, "/api/paged/cursor?loop=1&cursor=c20", "?loop=1&cursor=c5")


def test_a_next_url_in_the_body_is_followed_and_a_loop_named(crawl):
    paging = {"style": "next_url", "next_url_path": "links.next"}
    assert_complete(crawl("/api/paged/next", {"records": "items", "pagination": paging}), 5)
    crawled = crawl("/api/paged/next?loop=1", {"records": "items", "pagination": paging})
    assert_loop(crawled, 5, "/api/paged/next?after=20&loop=1", "/api/paged/next?after=5&loop=1")


# --------------------------------------------------------------------------- Link header


def test_a_link_header_next_over_a_top_level_list(crawl):
    # The body is the list itself ("$"); the Link header has first/last/prev/next, relative.
    crawled = crawl("/api/paged/link", {"records": "$", "pagination": "link_header"})
    assert_complete(crawled, pages=5)


def test_a_link_header_that_points_back_to_the_first_page_is_a_named_loop(crawl):
    crawled = crawl("/api/paged/link?page=1&loop=1", {"pagination": "link_header"})
    assert_loop(crawled, 5, "/api/paged/link?page=5&loop=1", "/api/paged/link?page=1&loop=1")


# --------------------------------------------------------------------------- max_pages


def test_max_pages_reached_is_partial_with_a_dead_letter_naming_the_limit(crawl):
    paging = {"style": "link_header", "max_pages": 2}
    crawled = crawl("/api/paged/link", {"pagination": paging})
    assert crawled.verdict.outcome == "partial"
    assert crawled.codes == CODES[:10] and crawled.pages == 2
    [letter] = crawled.dead_letters
    assert letter["cause"] == "max_pages"
    assert letter["url"].endswith("/api/paged/link?page=2")
    assert "json_api.pagination.max_pages 2 reached" in letter["reason"]
    assert (
        '/api/paged/link?page=3 (its Link header\'s rel="next") is not fetched' in letter["reason"]
    )


def test_max_pages_as_an_expected_cap_is_complete_and_counted(crawl):
    paging = {"style": "cursor", "cursor_path": "next_cursor", "max_pages": 2,
              "on_max_pages": "complete"}  # fmt: skip
    crawled = crawl("/api/paged/cursor", {"records": "data", "pagination": paging})
    assert_complete(crawled, pages=2, codes=CODES[:10])
    assert crawled.stats[contract.PAGINATION_CAPPED] == 1


def test_a_last_page_at_max_pages_is_complete(crawl):
    paging = {"style": "next_url", "next_url_path": "links.next", "max_pages": 5}
    assert_complete(crawl("/api/paged/next", {"records": "items", "pagination": paging}), 5)


# --------------------------------------------------------------------------- records


def test_records_that_are_not_a_list_name_what_the_response_holds(crawl):
    crawled = crawl("/api/paged/pages", {"records": "$", "pagination": "page_number"})
    assert crawled.verdict.outcome == "partial"
    assert crawled.errors == ["json_api.records: the response is a JSON object, not a list"]
    assert crawled.pages == 1  # nothing read, so no page is guessed after it
    [letter] = crawled.dead_letters
    assert letter["cause"] == "unreadable_page"
    assert letter["url"].endswith("/api/paged/pages")


def test_the_demo_servers_paged_routes_are_documented():
    import importlib.util

    from support import REPO

    spec = importlib.util.spec_from_file_location("demo", REPO / "include/demo_sites/server.py")
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)
    readme = (REPO / "include/demo_sites/README.md").read_text(encoding="utf-8")
    for style, doc in server.PAGED_DOCS.items():
        assert f"| `{style}` | {doc} |" in readme
    with pytest.raises(server.HttpError) as unknown:
        server.paged_reply("/api/paged/scroll")
    assert unknown.value.status == 404
    assert "known: pages, offset, cursor, next, link" in unknown.value.message
