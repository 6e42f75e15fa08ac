"""statsd-exporter's mapping (include/docker/statsd/mapping.yml) turns every metric the pipeline
sends (offpeak.metrics) into the Prometheus name and labels docs/operating.md "Metrics" promises.

The exporter is a Go program (prom/statsd-exporter) that cannot run here: no Docker engine and
no network. So these tests read the file with a model of its documented glob mapping
(tests/support/statsd.py: ``*`` is one dot-free part of the name, ``$n`` the n-th captured
part, the first matching rule wins, ``match_metric_type`` separates counters from timers) and
the checks its loader makes (keys, match, metric and label names). The model's own reading is
checked against the exporter's README example first."""

from __future__ import annotations

import functools

import pytest
import yaml

from offpeak import metrics
from offpeak.config import load_project
from support import REPO
from support.statsd import Mapped, Mapping, MappingError

PROJECT = load_project()
STATSD_TYPE = {metrics.COUNTER: "c", metrics.TIMER: "ms"}
# A value for each open-ended label.
SAMPLE = {"status": "503"}


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return Mapping.load()


@functools.cache
def compose_prefix() -> str:
    """The statsd_prefix docker-compose.yaml gives every Airflow service."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    return compose["x-airflow-common"]["environment"]["AIRFLOW__METRICS__STATSD_PREFIX"]


def sent(metric: metrics.Metric, site: str, region: str, value: object = None) -> str:
    """The name as it reaches the exporter: Airflow puts its prefix in front."""
    return f"{compose_prefix()}.{metric.format(site, region, value)}"


def label_values(metric: metrics.Metric) -> tuple[object, ...]:
    if not metric.label:
        return (None,)
    return metric.values or (SAMPLE[metric.label],)


def test_the_model_reads_the_exporters_readme_example_as_documented():
    example = Mapping(
        {
            "mappings": [
                {
                    "match": "test.dispatcher.*.*.*",
                    "name": "dispatcher_events_total",
                    "labels": {"processor": "$1", "action": "$2", "outcome": "$3", "job": "x"},
                },
                {"match": "*.signup.*.*", "name": "signup_events_total",
                 "labels": {"provider": "$2", "outcome": "$3", "job": "${1}_server"}},
            ]
        }
    )  # fmt: skip
    assert example.map("test.dispatcher.FooProcessor.send.success", "c") == Mapped(
        "dispatcher_events_total",
        {"processor": "FooProcessor", "action": "send", "outcome": "success", "job": "x"},
        None,
    )
    assert example.map("foo_product.signup.facebook.failure", "c") == Mapped(
        "signup_events_total",
        {"provider": "facebook", "outcome": "failure", "job": "foo_product_server"},
        None,
    )
    # `*` is one whole part: a name with a part more or less is not matched.
    assert example.map("test.dispatcher.FooProcessor.send", "c") is None
    assert example.map("test.dispatcher.Foo.Processor.send.success", "c") is None


def test_the_mapping_file_loads_as_the_exporter_loads_it(mapping):
    assert mapping.defaults == {"match_type": "glob", "glob_disable_ordering": False}
    # One rule per metric we send, and one for Airflow's task outcomes.
    assert len(mapping.rules) == len(metrics.METRICS) + 1
    # What the loader refuses, the model refuses too.
    bad = {"match": "a.*.b", "name": "ok_total", "labels": {"part": "$1"}}
    for key, value, words in [
        ("name", "bad-name", "invalid or missing name"),
        ("match", "a.*.b.", "invalid match"),
        ("match", "1a.*.b", "invalid match"),
        ("labels", {"bad-label": "$1"}, "invalid label key"),
        ("labels", {"x": "$1"}, "invalid label key"),  # the exporter wants 2 characters or more
        ("match_metric_type", "timer", "invalid metric type"),
        ("matcher", "a.b", "unknown keys"),
    ]:
        with pytest.raises(MappingError, match=words):
            Mapping({"mappings": [{**bad, key: value}]})


@pytest.mark.parametrize("metric", metrics.METRICS, ids=lambda m: m.name)
def test_every_metric_we_send_maps_to_its_prometheus_name_and_labels(mapping, metric):
    for value in label_values(metric):
        name = sent(metric, "fx_rates", "asia_pacific", value)
        labels = {"site": "fx_rates", "region": "asia_pacific"}
        if metric.label:
            labels[metric.label] = str(value)
        assert mapping.map(name, STATSD_TYPE[metric.kind]) == Mapped(
            metric.prometheus, labels, "histogram" if metric.kind == metrics.TIMER else None
        ), name


def test_the_names_users_query_map_as_the_readme_says(mapping):
    """Written out by hand, as docs/operating.md "Metrics" lists them."""
    expected = {
        ("airflow.offpeak.crawl.pages.equities.india", "c"): (
            "offpeak_crawl_pages_total", {"site": "equities", "region": "india"}),
        ("airflow.offpeak.crawl.http_errors.equities.europe.503", "c"): (
            "offpeak_crawl_http_errors_total",
            {"site": "equities", "region": "europe", "status": "503"}),
        ("airflow.offpeak.crawl.duration.funds.india", "ms"): (
            "offpeak_crawl_duration_seconds", {"site": "funds", "region": "india"}),
        ("airflow.offpeak.transform.rejected.funds.americas", "c"): (
            "offpeak_transform_rejected_total", {"site": "funds", "region": "americas"}),
        ("airflow.offpeak.load.rows.fx_rates.europe.unchanged", "c"): (
            "offpeak_load_rows_total",
            {"site": "fx_rates", "region": "europe", "change": "unchanged"}),
        ("airflow.offpeak.load.runs.equities.india.failed", "c"): (
            "offpeak_load_runs_total",
            {"site": "equities", "region": "india", "outcome": "failed"}),
        ("airflow.ti.finish.scrape__equities__india.load.failed", "c"): (
            "airflow_ti_finish_total",
            {"dag_id": "scrape__equities__india", "task_id": "load", "state": "failed"}),
    }  # fmt: skip
    got = {}
    for name, kind in expected:
        mapped = mapping.map(name, kind)
        got[name, kind] = (mapped.name, mapped.labels) if mapped else None
    assert got == expected
    # Crawl times become a histogram with buckets for crawls of seconds to an hour.
    [duration] = [r for r in mapping.rules if r["name"] == "offpeak_crawl_duration_seconds"]
    assert duration["histogram_options"]["buckets"][0] == 1
    assert duration["histogram_options"]["buckets"][-1] == 3600


def test_every_shipped_site_and_region_maps_to_its_own_labels(mapping):
    """Site and region names are single parts of a name, so each pair reads back as itself."""
    pairs = [(site.name, region) for site in PROJECT.sites.values() for region in site.regions]
    assert len(pairs) >= 9
    for site, region in pairs:
        for metric in metrics.METRICS:
            value = label_values(metric)[0]
            mapped = mapping.map(sent(metric, site, region, value), STATSD_TYPE[metric.kind])
            assert mapped is not None, (metric.name, site, region)
            assert (mapped.labels["site"], mapped.labels["region"]) == (site, region)


def test_what_the_mapping_does_not_take_passes_through_unmapped(mapping):
    # Airflow's own metrics keep the exporter's default naming (dots to underscores).
    assert mapping.map("airflow.scheduler_heartbeat", "c") is None
    assert mapping.map("airflow.dag_processing.total_parse_time", "g") is None
    # A metric's name with the wrong type, or without the compose prefix, is no match either:
    # the prefix in the rules is compose's statsd_prefix.
    assert mapping.map("airflow.offpeak.crawl.pages.equities.india", "ms") is None
    assert mapping.map("offpeak.crawl.pages.equities.india", "c") is None
    assert compose_prefix() == "airflow"


def test_every_offpeak_rule_is_a_metric_we_send(mapping):
    ours = {m.prometheus for m in metrics.METRICS}
    rules = {r["name"] for r in mapping.rules if r["match"].startswith("airflow.offpeak.")}
    assert rules == ours
    # Prometheus conventions: counters end in _total, the timer is in seconds.
    for metric in metrics.METRICS:
        suffix = "_seconds" if metric.kind == metrics.TIMER else "_total"
        assert metric.prometheus.endswith(suffix), metric.prometheus


def test_no_url_or_dotted_value_becomes_part_of_a_name():
    """A secret in a URL can never reach a metric name: every part is a plain word."""
    for site in ("https://data.example.com/?key=s3cret", "equities.india", "", "a b"):
        with pytest.raises(ValueError, match="cannot be part of a metric name"):
            metrics.CRAWL_PAGES.format(site, "india")
    with pytest.raises(ValueError, match="is not one of"):
        metrics.LOAD_RUNS.format("equities", "india", "exploded")
