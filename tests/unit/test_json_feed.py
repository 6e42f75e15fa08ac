"""JSON values kept as they are (issue 22): from a JSON API's body through the spider and the
feed Scrapy writes to the clean file the load COPYs, booleans, nested values, strings and
numbers arrive exactly."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from scrapy.http import Request, TextResponse

from offpeak.config import load_project, load_site
from offpeak.crawl import contract

SITE = {
    "kind": "json_api",
    "base_url_conn_id": "site_typed",
    "start_urls": ["/api/typed/{region}/{trading_date}"],
    "regions": ["europe"],
    "natural_key": ["id"],
    "json_api": {"records": "items", "pagination": "none"},
    "fields": {
        "id": {"type": "int", "path": "id"},
        "active": {"type": "boolean", "path": "active"},
        "listed": {
            "type": "boolean", "path": "listed", "true_values": ["yes", "\u2713"],
            "false_values": ["no", "\u2717"],
        },
        "meta": {"type": "json", "path": "meta"},
        "tags": {"type": "json", "path": "tags"},
        "message": {"type": "text", "path": "message"},
        "title": {"type": "text", "path": "message", "whitespace": "collapse"},
        "price": {"type": "decimal", "path": "price"},
        "big": {"type": "int", "path": "big"},
        "active_text": {"type": "text", "path": "active"},
        "active_re": {"type": "boolean", "path": "active", "re": "^(true|false)$"},
        "nested_price": {"type": "decimal", "path": "meta.price"},
        "live": {"type": "boolean", "const": True},
        "flagged": {"type": "boolean", "path": "absent", "default": False},
    },
}  # fmt: skip
LONG = "0.1000000000000000055511151231257827"
HUGE = "12345678901234567890.123456789"
BODY = f"""{{"items": [
  {{"id": 1, "active": true, "listed": "\u2713", "meta": {{"price": {LONG}, "deep": {{"a": [1,
   2.50, null, "x\\ny"]}}, "t": false}}, "tags": ["a", "b"], "message": "line one\\n  line two\\t",
   "price": {HUGE}, "big": 9007199254740993}},
  {{"id": 2, "active": false, "listed": "no", "meta": {{}}, "tags": [], "message": " \\r\\n ",
   "price": 1e5, "big": -9223372036854775808}},
  {{"id": 3, "active": null, "meta": "just text", "tags": [1E-7], "message": "",
   "price": "2.50", "big": 12}}
]}}"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch):
    path = tmp_path / "typed.yaml"
    path.write_text(yaml.safe_dump(SITE, allow_unicode=True), encoding="utf-8")
    site = load_site(path, load_project().regions)
    monkeypatch.setenv(contract.SITE_CONFIG_ENV, site.model_dump_json())
    return site


def scraped(site) -> list[dict]:
    from scrapy.utils.test import get_crawler

    from offpeak.scraping.spiders import JsonApiSpider

    spider = JsonApiSpider.from_crawler(
        get_crawler(JsonApiSpider), site="typed", region="europe", trading_date="2026-11-18",
        base_url="http://127.0.0.1:8808",
    )  # fmt: skip
    url = "http://127.0.0.1:8808/api/typed/europe/2026-11-18"
    page = TextResponse(
        url=url, body=BODY.encode(), headers={"Content-Type": "application/json"},
        request=Request(url),
    )  # fmt: skip
    return [i for i in spider.parse(page) if isinstance(i, dict)]


def test_the_spider_hands_over_every_value_exactly(site):
    first, second, third = scraped(site)
    assert first["active"] is True and second["active"] is False and third["active"] is None
    # A json field travels as its exact JSON text; a number never passes through a float.
    assert (
        first["meta"]
        == f'{{"price": {LONG}, "deep": {{"a": [1, 2.50, null, "x\\ny"]}}, "t": false}}'
    )
    assert (first["tags"], second["meta"], third["meta"]) == ('["a", "b"]', "{}", '"just text"')
    assert third["tags"] == "[1E-7]"
    assert first["message"] == "line one\n  line two\t"
    assert (first["price"], second["price"], third["price"]) == (HUGE, "100000", "2.50")
    assert first["nested_price"] == LONG
    assert first["big"] == 9007199254740993
    # re is searched in the JSON text of a boolean: "true", read back as a boolean.
    assert (first["active_re"], second["active_re"]) == ("true", "false")
    # A boolean const and default stay booleans (YAML's true is not read as 1).
    assert (first["live"], first["flagged"]) == (True, "false")
    # Kept text keeps a string of only whitespace; the empty string is nothing found (a
    # default would apply), and so is whitespace alone in a collapsed field.
    assert (second["message"], third["message"]) == (" \r\n ", None)
    assert (second["title"], third["title"]) == (None, None)


def test_the_feed_and_the_transform_keep_them(site, tmp_path):
    """The items as Scrapy's feed exporter writes them, then the transform: the clean file
    holds what PostgreSQL reads back as the source's values."""
    from airflow.sdk import ObjectStoragePath
    from scrapy.exporters import JsonLinesItemExporter

    from offpeak.pipeline.transform import transform_file

    raw = tmp_path / "raw.jsonl"
    with open(raw, "wb") as out:
        exporter = JsonLinesItemExporter(out, encoding="utf-8")  # FEED_EXPORT_ENCODING
        for item in scraped(site):
            exporter.export_item(item)
    paths = [ObjectStoragePath(p.as_uri()) for p in (raw, tmp_path / "c.csv", tmp_path / "r")]
    result = transform_file(site, *paths)
    assert result["rejected"] == 0, (tmp_path / "r").read_text()
    text = (tmp_path / "c.csv").read_bytes().decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    names = [*site.fields, "source_url", "_line"]
    first, second, third = (dict(zip(names, row, strict=True)) for row in rows)
    assert first["active"] == "true" and second["active"] == "false" and third["active"] == ""
    assert (first["listed"], second["listed"]) == ("true", "false")
    assert (
        first["meta"]
        == f'{{"price": {LONG}, "deep": {{"a": [1, 2.50, null, "x\\ny"]}}, "t": false}}'
    )
    assert (first["message"], first["title"]) == ("line one\n  line two\t", "line one line two")
    assert (second["message"], second["title"]) == (" \r\n ", "")  # kept; collapsed: NULL
    assert third["message"] == ""  # the empty string: NULL
    assert (first["price"], second["price"], third["price"]) == (HUGE, "100000", "2.50")
    assert Decimal(first["nested_price"]) == Decimal(LONG) and first["nested_price"] == LONG
    assert (first["big"], second["big"]) == ("9007199254740993", "-9223372036854775808")
    assert (first["active_text"], second["active_text"]) == ("true", "false")
    assert (first["active_re"], second["active_re"]) == ("true", "false")
    assert (first["live"], first["flagged"]) == ("true", "false")
