"""The spider-kind registry: a new kind is one entry (plus its spider), and its DAG builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from offpeak import factory
from offpeak.config import (
    KINDS,
    Site,
    SpiderKind,
    load_project,
    register_kind,
    schema,
    unregister_kind,
)
from offpeak.config.common import _Strict
from support import REPO


class RssFeed(_Strict):
    """An RSS feed: one record per <item>."""

    items: str = Field("//item", description="XPath of one record in the feed.")


TOY = SpiderKind("rss_feed", RssFeed, "offpeak.scraping.spiders:RssFeedSpider")
NEWS = {
    "kind": "rss_feed",
    "base_url_conn_id": "site_news",
    "start_urls": ["/feeds/{region}.xml"],
    "regions": ["europe"],
    "natural_key": ["guid"],
    "rss_feed": {"items": "//channel/item"},
    "fields": {"guid": {"type": "text", "xpath": "guid/text()"}},
}


@pytest.fixture
def toy_kind():
    register_kind(TOY)
    yield TOY
    unregister_kind(TOY.name)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO / "include" / "config", target)
    return target


def write_site(config_dir: Path, name: str, data: dict) -> None:
    (config_dir / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def test_a_registered_kind_is_configured_in_its_section_and_builds_its_dag(toy_kind, config_dir):
    write_site(config_dir, "news", NEWS)
    project = load_project(config_dir)
    assert project.errors == {}
    site = project.sites["news"]
    assert site.rss_feed == RssFeed(items="//channel/item")
    assert site.model_dump(mode="json")["rss_feed"] == {"items": "//channel/item"}

    dag = factory.build_scrape_dag(site, project.regions["europe"], project.alerts)
    assert dag.dag_id == "scrape__news__europe"
    assert "kind:rss_feed" in dag.tags
    assert "rss_feed:\n    items: //channel/item" in dag.doc_md


def test_a_registered_kind_checks_its_section_and_refuses_the_others(toy_kind, config_dir):
    write_site(config_dir, "news", {**NEWS, "rss_feed": {"itemz": "//item"}})
    write_site(config_dir, "wire", {**NEWS, "html_table": {"rows": "tr"}})
    errors = load_project(config_dir).errors
    assert "field `rss_feed.itemz`: Extra inputs are not permitted" in errors["news.yaml"]
    assert "field `html_table`: kind 'rss_feed' does not use this section" in errors["wire.yaml"]


def test_an_unregistered_kind_is_unknown_again(config_dir):
    register_kind(TOY)
    unregister_kind(TOY.name)
    write_site(config_dir, "news", NEWS)
    error = load_project(config_dir).errors["news.yaml"]
    kinds = "'html_table', 'json_api', 'listing_detail' or 'data_file'"
    assert f"field `kind`: Input should be {kinds}" in error
    assert "rss_feed" not in Site.model_fields and "rss_feed" not in KINDS


def test_the_schema_and_the_reference_follow_the_registry(toy_kind):
    site = schema.site_schema()
    assert "rss_feed" in site["properties"]["kind"]["enum"]
    assert "rss_feed" in site["properties"]
    assert "`rss_feed` (kind rss_feed)" in schema.reference()


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_each_built_in_kind_names_its_spider_class(kind):
    """Scrapy finds the spider by its name (``scrapy crawl <kind>``) in SPIDER_MODULES."""
    from offpeak.scraping import settings

    spider = kind.spider_class()
    assert spider.name == kind.name
    assert spider.__module__.startswith(tuple(settings.SPIDER_MODULES))


@pytest.mark.parametrize("name", ["quality", "fields", "Feed", "rss-feed"])
def test_a_kind_may_not_be_named_as_another_key_of_a_site(name):
    with pytest.raises(ValueError, match=f"spider kind {name!r}: a kind's name is its section"):
        register_kind(SpiderKind(name, RssFeed, "offpeak.scraping.spiders:RssFeedSpider"))
    assert name not in KINDS
