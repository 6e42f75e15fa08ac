"""Crawl monitors on Scrapy stats (offpeak.crawl.checks.check_crawl), their failure
messages, the field-coverage extension, and the config errors of the quality section."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from offpeak.config import Site, get_site, load_project
from offpeak.crawl.checks import check_crawl
from offpeak.pipeline.quality import QualityCheckFailed, raise_failures, summary

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "config"
DAY = date(2026, 10, 6)


def fx_site(**quality) -> Site:
    """The shipped fx_rates site with its quality section changed."""
    site, _ = get_site("fx_rates", SHIPPED)
    data = site.model_dump()
    data["quality"].update(quality)
    return Site.model_validate(data)


def clean_stats(items: int = 60) -> dict:
    """The stats of a clean fx_rates crawl of the demo site: every field in every item but one
    empty bid, 4 responses (robots.txt + 3 pages), no errors."""
    stats = {f"offpeak/field/{f}": items for f in fx_site().fields}
    stats["offpeak/field/bid"] = items - 1
    stats.update({
        "finish_reason": "finished",
        "item_scraped_count": items,
        "downloader/response_status_count/200": 4,
    })  # fmt: skip
    return stats


def failed(checks) -> dict[str, str]:
    return {c.label: c.detail for c in checks if not c.passed}


def test_a_clean_crawl_of_the_shipped_site_passes_every_monitor():
    checks = check_crawl(fx_site(), clean_stats(), 60)
    assert failed(checks) == {}
    assert summary(checks) == {
        "min_items": "passed",
        "error_count": "passed",
        "http_errors": "passed",
        "field_coverage.pair": "passed",
        "field_coverage.bid": "passed",
        "field_coverage.ask": "passed",
        "field_coverage.quoted_at": "passed",
    }
    bid = next(c for c in checks if c.label == "field_coverage.bid")
    assert bid.detail == "field 'bid' present in 59 of 60 items (98.3%), min 95%"
    raise_failures(checks, "fx_rates", "europe", DAY)  # all passed: returns


def test_field_coverage_below_min_fails_with_the_counts():
    stats = {**clean_stats(57), "offpeak/field/bid": 41}
    checks = check_crawl(fx_site(), stats, 57)
    assert failed(checks) == {
        "field_coverage.bid": "field 'bid' present in 41 of 57 items (71.9%), below min 95%"
    }
    with pytest.raises(QualityCheckFailed) as err:
        raise_failures(checks, fx_site(), "europe", DAY)
    assert str(err.value) == (
        "quality check field_coverage failed for site fx_rates region europe 2026-10-06: "
        "field 'bid' present in 41 of 57 items (71.9%), below min 95%"
    )


def test_a_field_the_crawl_never_found_counts_as_absent():
    stats = clean_stats()
    del stats["offpeak/field/quoted_at"]
    checks = check_crawl(fx_site(), stats, 60)
    assert failed(checks) == {
        "field_coverage.quoted_at": "field 'quoted_at' present in 0 of 60 items (0%), below min 95%"
    }


def test_min_items():
    site = fx_site(min_items=10, min_field_coverage={})
    assert failed(check_crawl(site, clean_stats(10), 10)) == {}
    assert failed(check_crawl(site, clean_stats(9), 9)) == {
        "min_items": "scraped 9 items, fewer than min 10"
    }


def test_error_count_counts_scrapy_error_log_lines():
    stats = {**clean_stats(), "log_count/ERROR": 3}
    assert failed(check_crawl(fx_site(), stats, 60)) == {
        "error_count": "3 errors in the crawl log (log_count/ERROR), above max 0"
    }
    assert failed(check_crawl(fx_site(max_error_count=3), stats, 60)) == {}


def test_http_errors_count_every_status_from_400_but_404():
    stats = {
        **clean_stats(),
        "downloader/response_status_count/404": 5,  # a missing robots.txt, a page past the end
        "downloader/response_status_count/503": 3,
        "downloader/response_status_count/500": 1,
        "downloader/response_status_count/301": 2,
    }
    assert failed(check_crawl(fx_site(), stats, 60)) == {
        "http_errors": "4 responses with status >= 400 other than 404 (500: 1, 503: 3), above max 0"
    }
    assert failed(check_crawl(fx_site(max_http_errors=4), stats, 60)) == {}
    only_404 = {**clean_stats(), "downloader/response_status_count/404": 5}
    assert failed(check_crawl(fx_site(), only_404, 60)) == {}


def test_several_failures_are_listed_in_one_message():
    stats = {
        **clean_stats(8),
        "offpeak/field/pair": 4,
        "log_count/ERROR": 2,
        "downloader/response_status_count/429": 6,
    }
    checks = check_crawl(fx_site(), stats, 8)
    with pytest.raises(QualityCheckFailed) as err:
        raise_failures(checks, "fx_rates", "americas", DAY)
    assert str(err.value) == (
        "5 quality checks failed for site fx_rates region americas 2026-10-06 "
        "(min_items, error_count, http_errors, field_coverage, field_coverage):\n"
        "  min_items: scraped 8 items, fewer than min 10\n"
        "  error_count: 2 errors in the crawl log (log_count/ERROR), above max 0\n"
        "  http_errors: 6 responses with status >= 400 other than 404 (429: 6), above max 0\n"
        "  field_coverage: field 'pair' present in 4 of 8 items (50%), below min 100%\n"
        "  field_coverage: field 'bid' present in 7 of 8 items (87.5%), below min 95%"
    )


def test_no_items_leaves_coverage_to_min_items():
    checks = check_crawl(fx_site(min_items=0), {"finish_reason": "finished"}, 0)
    assert failed(checks) == {}
    assert summary(checks)["field_coverage.bid"] == "skipped"


def test_defaults_of_the_new_keys():
    q = Site.model_validate({**fx_site().model_dump(), "quality": {}}).quality
    assert (q.min_field_coverage, q.max_error_count, q.max_http_errors) == ({}, 0, 0)
    assert (q.finish_reasons, q.row_count_tolerance, q.ranges) == (["finished"], 0.5, {})


# --------------------------------------------------------------------------- config errors


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(SHIPPED, target)
    return target


def break_quality(config_dir: Path, **quality) -> tuple[Path, str]:
    """Change fx_rates.yaml's quality section; return the file and its error."""
    path = config_dir / "sites" / "fx_rates.yaml"
    data = yaml.safe_load(path.read_text())
    data["quality"].update(quality)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    project = load_project(config_dir)
    assert set(project.errors) == {"fx_rates.yaml"}
    assert set(project.sites) == {"equities", "funds"}  # the other sites still load
    message = project.errors["fx_rates.yaml"]
    assert str(path) in message and "site 'fx_rates'" in message
    return path, message


def test_an_unknown_field_in_min_field_coverage_names_the_file_and_field(config_dir):
    _, message = break_quality(config_dir, min_field_coverage={"bid": 0.9, "bidd": 0.9})
    assert "field `quality.min_field_coverage`: names unknown field(s) ['bidd']" in message
    assert "the site's fields are ['ask', 'bid', 'mid'," in message


def test_an_unknown_field_in_ranges_names_the_file_and_field(config_dir):
    _, message = break_quality(config_dir, ranges={"spread": {"max": 1}})
    assert "field `quality.ranges`: names unknown field(s) ['spread']" in message


def test_a_range_on_a_text_field_is_an_error(config_dir):
    _, message = break_quality(config_dir, ranges={"venue": {"min": 0}})
    assert "field `quality.ranges`: field(s) ['venue'] are not numeric" in message


def test_a_range_needs_a_bound_in_order(config_dir):
    _, message = break_quality(config_dir, ranges={"bid": {"min": 2, "max": 1}})
    assert "field `quality.ranges.bid`" in message and "min 2.0 is greater than max 1.0" in message


def test_coverage_is_a_share_not_a_percentage(config_dir):
    _, message = break_quality(config_dir, min_field_coverage={"bid": 95})
    assert "field `quality.min_field_coverage.bid`" in message
    assert "less than or equal to 1" in message


# --------------------------------------------------------------------------- the extension


def test_field_coverage_extension_counts_items_with_a_value():
    from scrapy.exceptions import NotConfigured
    from scrapy.utils.test import get_crawler

    from offpeak.scraping.pipelines import FieldCoverage

    crawler = get_crawler(settings_dict={"OFFPEAK_COVERAGE_FIELDS": "pair,bid,mid"})
    ext = FieldCoverage.from_crawler(crawler)
    ext.spider_opened(None)
    for item in (
        {"pair": "EUR/USD", "bid": "1.08", "mid": 1.0805},
        {"pair": "EUR/GBP", "bid": "  ", "mid": 0},
        {"pair": "GBP/USD", "bid": None, "mid": None},
        {"_url": "http://x/", "_error": "response is not JSON"},  # an unreadable page
    ):
        ext.item_scraped(item, None)
    assert crawler.stats.get_stats() == {
        "offpeak/field/pair": 3,
        "offpeak/field/bid": 1,
        "offpeak/field/mid": 2,
    }
    with pytest.raises(NotConfigured):
        FieldCoverage.from_crawler(get_crawler())
