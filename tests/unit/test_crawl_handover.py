"""What the crawl subprocess gets from ScrapeOperator instead of re-reading the config: the
validated site (offpeak.scraping.siteconfig), and what it counts cheaply (FieldCoverage)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scrapy.http import HtmlResponse

from offpeak.config import ConfigError, get_site
from offpeak.crawl import contract, process, spec
from offpeak.scraping.siteconfig import crawl_site

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "config"


def test_the_crawl_reads_the_site_the_operator_validated(monkeypatch, tmp_path):
    site, _ = get_site("equities", SHIPPED)
    env = process.scrapy_env("s3cr3t", spec.crawl_env(site))
    monkeypatch.setenv(contract.SITE_CONFIG_ENV, env[contract.SITE_CONFIG_ENV])
    # The YAML is not read again: a config folder without the site changes nothing.
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(tmp_path))
    handed = crawl_site("equities")
    assert (handed.name, handed.kind, handed.start_urls) == (
        "equities", "html_table", tuple(site.start_urls),
    )  # fmt: skip
    assert {n: (f.css, f.xpath, f.path) for n, f in handed.fields.items()} == {
        n: (f.css, f.xpath, f.path) for n, f in site.fields.items()
    }
    assert (handed.section.rows, handed.section.next_page) == (
        site.html_table.rows, site.html_table.next_page,
    )  # fmt: skip
    assert "s3cr3t" not in env[contract.SITE_CONFIG_ENV]


def test_a_config_handed_over_for_another_site_is_refused(monkeypatch):
    site, _ = get_site("fx_rates", SHIPPED)
    monkeypatch.setenv(contract.SITE_CONFIG_ENV, site.model_dump_json())
    with pytest.raises(ValueError, match="config of site 'fx_rates', not of site 'equities'"):
        crawl_site("equities")


def test_a_crawl_by_hand_reads_the_yaml_and_names_file_and_field(monkeypatch, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(SHIPPED, config)
    path = config / "sites" / "equities.yaml"
    data = yaml.safe_load(path.read_text())
    data["html_table"]["rows"] = "table#quotes tbody tr["
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv(contract.SITE_CONFIG_ENV, raising=False)
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))
    with pytest.raises(ConfigError) as err:
        crawl_site("equities")
    assert str(path) in str(err.value) and "field `html_table.rows`" in str(err.value)
    assert crawl_site("fx_rates").section.records == "data.rates"


def equities_page(url: str) -> HtmlResponse:
    body = (
        "<html><body><table id='quotes'><thead><tr><th>Symbol</th></tr></thead><tbody>"
        "<tr class='quote'><td class='symbol'>ABC</td><td class='name'> Acme </td>"
        "<td class='last'>$1.00</td><td class='volume'></td></tr>"
        "<tr class='quote'><td class='symbol'></td><td class='name'>Globex</td>"
        "<td class='last'>n/a</td><td class='volume'>1,000</td></tr>"
        "</tbody></table><a class='next' href='?page=2'>Next</a></body></html>"
    )
    return HtmlResponse(url=url, body=body.encode(), encoding="utf-8")


def test_the_spider_scrapes_with_the_handed_over_config(monkeypatch):
    from scrapy.utils.test import get_crawler

    from offpeak.scraping.spiders import HtmlTableSpider

    site, _ = get_site("equities", SHIPPED)
    monkeypatch.setenv(contract.SITE_CONFIG_ENV, site.model_dump_json())
    monkeypatch.setenv(contract.API_KEY_ENV, "s3cr3t")
    crawler = get_crawler(HtmlTableSpider)
    spider = HtmlTableSpider.from_crawler(
        crawler, site="equities", region="europe", trading_date="2026-11-18",
        base_url="http://127.0.0.1:8808",
    )  # fmt: skip
    out = list(spider.parse(equities_page("http://127.0.0.1:8808/q?page=1&key=s3cr3t")))
    items, requests = out[:2], out[2:]
    assert items[0] == {
        "symbol": "ABC", "name": " Acme ", "last_price": "$1.00", "change": None,
        "change_pct": None, "volume": None, "listed_on": None,
        "_url": "http://127.0.0.1:8808/q?page=1",
    }  # fmt: skip
    assert (items[1]["symbol"], items[1]["volume"]) == (None, "1,000")
    assert [r.url for r in requests] == ["http://127.0.0.1:8808/q?page=2"]


def test_field_coverage_counts_in_the_pipeline_and_writes_the_stats_once_at_close():
    from scrapy.exceptions import NotConfigured
    from scrapy.utils.test import get_crawler

    from offpeak.scraping.pipelines import FieldCoverage

    crawler = get_crawler(settings_dict={contract.COVERAGE_FIELDS: "pair,bid,mid,venue"})
    coverage = FieldCoverage.from_crawler(crawler)
    items = (
        {"pair": "EUR/USD", "bid": "1.08", "mid": 1.0805, "venue": {"name": "ZFX"}},
        {"pair": "EUR/GBP", "bid": "  ", "mid": 0, "venue": {}},
        {"pair": "GBP/USD", "bid": None, "mid": None, "venue": None},
        {"_url": "http://x/", "_error": "response is not JSON"},  # an unreadable page
    )
    assert [coverage.process_item(item) for item in items] == list(items)
    assert crawler.stats.get_stats() == {}  # nothing per item
    coverage.close_spider()
    assert crawler.stats.get_stats() == {
        "offpeak/field/pair": 3,
        "offpeak/field/bid": 1,
        "offpeak/field/mid": 2,
        "offpeak/field/venue": 1,
    }
    with pytest.raises(NotConfigured):
        FieldCoverage.from_crawler(get_crawler())


def test_the_crawl_process_builds_no_config_models(tmp_path):
    """Start-up of a crawl: the spiders, settings and components load without offpeak.config
    (its pydantic models, YAML and trading calendars cost ~0.3 s)."""
    site, _ = get_site("equities", SHIPPED)
    probe = (
        "import sys\n"
        "from scrapy.utils.project import get_project_settings\n"
        "from offpeak.scraping.spiders import HtmlTableSpider\n"
        "settings = get_project_settings()\n"
        "spider = HtmlTableSpider(site='equities', region='europe',\n"
        "    trading_date='2026-11-18', base_url='http://127.0.0.1:1')\n"
        "for part in ('EXTENSIONS', 'ITEM_PIPELINES', 'DOWNLOADER_MIDDLEWARES'):\n"
        "    for module in settings.getdict(part):\n"
        "        __import__(module.rsplit('.', 1)[0])\n"
        "print(spider.site.name, sorted(m for m in sys.modules if m.startswith('offpeak')))\n"
    )
    env = process.scrapy_env(None, spec.crawl_env(site))
    env.pop(contract.PARENT_PID_ENV)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    name, modules = done.stdout.split(" ", 1)
    assert name == "equities"
    assert "offpeak.config" not in modules and "offpeak.pipeline" not in modules, modules
    assert json.loads(env[contract.SITE_CONFIG_ENV])["name"] == "equities"


@pytest.mark.parametrize(
    "locator",
    [
        {"css": "td.name::text"},
        {"css": "td.last::text"},
        {"css": "td.volume::text"},  # empty in one row: matches nothing there
        {"css": "td.name"},  # elements, not text: serialized by parsel
        {"css": "a::attr(href)"},
        {"css": "td::text"},  # several text nodes, joined
        {"xpath": "./td[@class='volume']/text()"},
        {"xpath": "count(./td)"},  # a number
        {"xpath": "boolean(./td[@class='symbol']/text())"},  # a boolean
        {"xpath": "string(./td[@class='name'])"},  # a string result, not a node
        {"css": "td.nothing::text"},
    ],
)
def test_a_compiled_field_reads_exactly_what_parsel_reads(locator):
    from offpeak.scraping.siteconfig import Locator
    from offpeak.scraping.spiders.fields import FieldReader, extract

    spec = Locator(**locator)
    read = FieldReader(spec)
    response = equities_page("http://127.0.0.1:8808/q?page=1")
    for selector in [response, *response.css("tr")]:
        assert read(selector) == extract(selector, spec)
