"""The Scrapy settings and base URL a crawl gets from the site config and its connection."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from offpeak.config import get_site
from offpeak.connections import base_url_from_connection
from offpeak.crawl.spec import scrapy_settings


def test_politeness_comes_from_the_site_file(tmp_path: Path):
    site, _ = get_site("equities")
    settings = scrapy_settings(site, tmp_path / "items.jsonl", tmp_path / "stats.json")
    assert settings["ROBOTSTXT_OBEY"] is True
    assert settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == 4
    assert settings["CLOSESPIDER_TIMEOUT"] == 600
    assert settings["DOWNLOAD_MAXSIZE"] == 10 * 1024 * 1024
    assert settings["AUTOTHROTTLE_ENABLED"] is True
    feed = {(tmp_path / "items.jsonl").as_uri(): {"format": "jsonlines", "encoding": "utf8"}}
    assert json.loads(settings["FEEDS"]) == feed
    assert settings["OFFPEAK_STATS_FILE"] == str(tmp_path / "stats.json")


@pytest.mark.parametrize(
    ("conn_type", "host", "port", "schema", "url"),
    [
        ("http", "127.0.0.1", 8808, "", "http://127.0.0.1:8808"),
        ("http", "data.example.com", None, "https", "https://data.example.com"),
        ("https", "data.example.com", 8443, None, "https://data.example.com:8443"),
        ("http", "https://api.example.com/v2/", None, None, "https://api.example.com/v2"),
        # The URI form of a webhook puts its path in schema (the alerts connection).
        (
            "https",
            "hooks.slack.com",
            None,
            "services/T0/B0/x",
            "https://hooks.slack.com/services/T0/B0/x",
        ),
    ],
)
def test_base_url_from_http_connection(conn_type, host, port, schema, url):
    conn = SimpleNamespace(conn_type=conn_type, host=host, port=port, schema=schema)
    assert base_url_from_connection(conn) == url
