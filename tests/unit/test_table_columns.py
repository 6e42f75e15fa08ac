"""Table columns read by header text, or by position with the header checked; and requests
Scrapy's duplicate filter drops, named (offpeak.scraping.extensions.dropped)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from scrapy.http import HtmlResponse

from offpeak.config import ConfigError, load_project, load_site
from offpeak.crawl import contract
from offpeak.scraping.extensions.dropped import judge_drop

SITE = {
    "kind": "html_table",
    "base_url_conn_id": "site_t",
    "start_urls": ["/t/{region}/{trading_date}"],
    "regions": ["europe"],
    "natural_key": ["symbol"],
    "html_table": {"rows": "table#quotes tbody tr"},
    "fields": {
        "symbol": {"type": "text", "css": "td:nth-child(1)::text"},
        "last": {"type": "decimal", "css": "td:nth-child(2)::text"},
        "change": {"type": "decimal", "css": "td:nth-child(3)::text"},
    },
}
HEAD = "<thead><tr><th>Symbol</th><th> Last\n</th><th>Change</th></tr></thead>"
SWAPPED = "<thead><tr><th>Symbol</th><th>Change</th><th>Last</th></tr></thead>"
ROWS = "<tr><td>ABC</td><td>1.50</td><td>-0.10</td></tr><tr><td>XYZ</td><td>2</td><td>0.3</td></tr>"
ROWS_SWAPPED = (
    "<tr><td>ABC</td><td>-0.10</td><td>1.50</td></tr><tr><td>XYZ</td><td>0.3</td><td>2</td></tr>"
)


def site_file(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(yaml.safe_dump(SITE))
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    path = tmp_path / "config" / "sites" / "tbl.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def crawl_page(monkeypatch, tmp_path: Path, head: str, rows: str, **changes):
    """The items and dead letters of one page read by the site's spider."""
    from scrapy.utils.test import get_crawler

    from offpeak.scraping.spiders import HtmlTableSpider

    site = load_site(site_file(tmp_path, **changes), load_project().regions)
    monkeypatch.setenv(contract.SITE_CONFIG_ENV, site.model_dump_json())
    crawler = get_crawler(HtmlTableSpider)
    letters: list[tuple] = []
    crawler.dead_letters = type("Letters", (), {"add": lambda self, *a: letters.append(a)})()
    spider = HtmlTableSpider.from_crawler(
        crawler, site="tbl", region="europe", trading_date="2026-11-18",
        base_url="http://127.0.0.1:8808",
    )  # fmt: skip
    body = f"<html><body><table id='quotes'>{head}<tbody>{rows}</tbody></table></body></html>"
    page = HtmlResponse(url="http://127.0.0.1:8808/t?page=1", body=body.encode(), encoding="utf-8")
    items = [i for i in spider.parse(page) if isinstance(i, dict)]
    return items, letters


def test_columns_by_header_text_read_the_right_cells_when_columns_move(monkeypatch, tmp_path):
    by_header = {
        "fields__last": {"type": "decimal", "column": "Last"},
        "fields__change": {"type": "decimal", "column": "Change", "re": r"(-?[\d.]+)"},
    }
    for head, rows in ((HEAD, ROWS), (SWAPPED, ROWS_SWAPPED)):
        items, letters = crawl_page(monkeypatch, tmp_path, head, rows, **by_header)
        assert [(i["symbol"], i["last"], i["change"]) for i in items] == [
            ("ABC", "1.50", "-0.10"),
            ("XYZ", "2", "0.3"),
        ]
        assert letters == []


def test_columns_by_position_with_the_header_checked_refuse_a_page_whose_columns_moved(
    monkeypatch, tmp_path
):
    header = {"html_table__header": {2: "Last", 3: "Change"}}
    items, letters = crawl_page(monkeypatch, tmp_path, HEAD, ROWS, **header)
    assert [i["last"] for i in items] == ["1.50", "2"] and letters == []
    items, letters = crawl_page(monkeypatch, tmp_path, SWAPPED, ROWS_SWAPPED, **header)
    (record,) = items  # one record standing for the page, no row with swapped values
    (letter,) = letters
    url, cause, reason = letter[:3]
    assert cause == "columns_moved" and url == "http://127.0.0.1:8808/t?page=1"
    assert "column 2 is headed 'Change', not 'Last' (html_table.header)" in reason
    assert "column 'Last' moved, it is now column 3" in reason
    assert "its header row reads ['Symbol', 'Change', 'Last']" in reason
    assert reason == f"unreadable page {url}: {record['_error']}"
    assert record["_error"].startswith("its table header does not match the site's columns")


def test_a_missing_or_repeated_header_is_named(monkeypatch, tmp_path):
    changes = {"fields__last": {"type": "decimal", "column": "Price"}}
    _, (letter,) = crawl_page(monkeypatch, tmp_path, HEAD, ROWS, **changes)
    assert "field last: no column is headed 'Price'" in letter[2]
    twice = HEAD.replace("<th>Change</th>", "<th>Last</th>")
    changes = {"fields__last": {"type": "decimal", "column": "Last"}}
    _, (letter,) = crawl_page(monkeypatch, tmp_path, twice, ROWS, **changes)
    assert "field last: columns 2, 3 are all headed 'Last'" in letter[2]
    _, (letter,) = crawl_page(monkeypatch, tmp_path, "", ROWS, **changes)
    assert "no header row to check the table's columns by" in letter[2]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"html_table__header": {0: "Symbol"}}, "html_table.header"),
        ({"html_table__header": {1: " "}}, "give the header text"),
        ({"html_table__header_row": "tr["}, "html_table.header_row"),
        ({"fields__last": {"type": "decimal", "column": "Last", "css": "td"}}, "exactly one"),
    ],
)
def test_config_errors_name_the_header_option(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_site(site_file(tmp_path, **changes), load_project().regions)


def test_column_is_for_html_tables_only(tmp_path):
    data = {
        **SITE,
        "kind": "json_api",
        "html_table": None,
        "json_api": {"records": "rows"},
        "fields": {"symbol": {"type": "text", "column": "Symbol"}},
    }
    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"`column` .* locates a cell of an html_table"):
        load_site(path, load_project().regions)


# ------------------------------------------------------------------- dropped requests


def test_a_redirect_back_to_its_own_chain_is_a_redirect_loop_dead_letter():
    drop = judge_drop("http://h/q?page=2", ["http://h/q?page=2", "http://h/q?page=2&via=b"])
    assert drop.cause == "redirect_loop" and drop.url == "http://h/q?page=2"
    assert drop.reason == (
        "redirect loop at http://h/q?page=2: http://h/q?page=2 -> http://h/q?page=2&via=b -> "
        "http://h/q?page=2 redirects back to a URL of its own chain; Scrapy's duplicate filter "
        "dropped the repeat, so the page at http://h/q?page=2 was never read"
    )


def test_a_redirect_to_a_page_already_requested_loses_the_page_it_came_from():
    drop = judge_drop("http://h/q?page=1", ["http://h/q?page=3"])
    assert drop.cause == "redirect_loop" and drop.url == "http://h/q?page=3"
    assert "to http://h/q?page=1, which this crawl had already requested" in drop.reason


def test_a_next_page_back_to_a_page_already_requested_is_a_pagination_loop():
    drop = judge_drop("http://h/q?page=1", referer="http://h/q?page=5", next_page=True)
    assert drop.cause == "pagination_loop"
    assert drop.reason.startswith(
        "pagination loop: the next page linked from http://h/q?page=5 is http://h/q?page=1"
    )


def test_a_page_linked_twice_is_harmless():
    drop = judge_drop("http://h/fund/1", referer="http://h/funds?page=2")
    assert drop.cause is None
    assert drop.reason == (
        "http://h/fund/1 linked from http://h/funds?page=2 was already requested by this "
        "crawl: read once"
    )


def test_a_dropped_url_never_shows_the_sites_secret(monkeypatch):
    monkeypatch.setenv(contract.API_KEY_ENV, "s3cr3t")
    drop = judge_drop("http://h/q?page=1&key=s3cr3t", ["http://h/q?page=1&key=s3cr3t"])
    assert "s3cr3t" not in drop.reason and "s3cr3t" not in drop.url
