"""Unit tests for plugins/offpeak/config/: the shipped config and the errors of broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from offpeak import factory
from offpeak.config import (
    CircuitBreaker,
    ConfigError,
    Politeness,
    Quality,
    get_site,
    load_project,
)

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "config"
SHIPPED_SITES = {"equities", "funds", "fx_rates"}

# A valid json_api site; tests break one thing in a copy of it.
BASE_SITE = {
    "kind": "json_api",
    "base_url_conn_id": "site_prices",
    "start_urls": ["/api/prices/{region}/{trading_date}"],
    "regions": ["americas", "europe"],
    "natural_key": ["code"],
    "json_api": {"records": "data.items"},
    "fields": {
        "code": {"type": "text", "path": "code"},
        "price": {"type": "decimal", "path": "price", "required": True},
    },
}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A private copy of include/config that a test may break."""
    target = tmp_path / "config"
    shutil.copytree(SHIPPED, target)
    return target


def write_site(config_dir: Path, name: str, data: dict | str) -> Path:
    path = config_dir / "sites" / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def site_with(**changes) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE_SITE))  # deep copy
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def assert_only_error(project, path: Path, *words: str) -> str:
    """The broken file has one error naming the path and the site; the shipped sites load."""
    assert set(project.errors) == {path.name}
    message = project.errors[path.name]
    assert str(path) in message
    assert f"site {path.stem!r}" in message
    for word in words:
        assert word in message, f"{word!r} not in:\n{message}"
    assert set(project.sites) == SHIPPED_SITES
    return message


# --------------------------------------------------------------------------- shipped config


def test_shipped_config_loads_without_errors():
    project = load_project(SHIPPED)
    assert project.errors == {}
    assert set(project.sites) == SHIPPED_SITES
    assert set(project.regions) == {"americas", "europe", "asia_pacific", "oceania", "india"}
    assert project.error_report == ""


def test_shipped_pairs_are_sorted_and_complete():
    pairs = [(s.name, r.name) for s, r in load_project(SHIPPED).pairs()]
    assert len(pairs) == 11
    assert pairs == sorted(pairs)
    assert pairs[0] == ("equities", "americas")
    assert pairs[-1] == ("fx_rates", "oceania")
    assert ("funds", "americas") not in pairs


def test_regions_get_their_names_and_times():
    regions = load_project(SHIPPED).regions
    india = regions["india"]
    assert india.name == "india"
    assert india.timezone == "Asia/Kolkata"
    assert str(india.off_peak) == "16:30–08:30"
    assert india.off_peak.crosses_midnight


def test_default_config_dir_honours_env(monkeypatch, config_dir):
    write_site(config_dir, "prices", BASE_SITE)
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config_dir))
    project = load_project()
    assert project.config_dir == config_dir
    assert set(project.sites) == {*SHIPPED_SITES, "prices"}


def test_valid_extra_site_loads(config_dir):
    write_site(config_dir, "prices", BASE_SITE)
    project = load_project(config_dir)
    assert project.errors == {}
    assert project.sites["prices"].name == "prices"
    assert project.sites["prices"].required_fields() == {"code", "price"}
    assert len(project.pairs()) == 13


def test_get_site_returns_site_and_regions():
    site, regions = get_site("equities", SHIPPED)
    assert site.kind == "html_table"
    assert site.quality.min_items == 10
    assert set(site.regions) <= set(regions)


# --------------------------------------------------------------------------- broken site files


def test_unknown_field_type(config_dir):
    fields = {**BASE_SITE["fields"], "price": {"type": "money", "path": "price"}}
    path = write_site(config_dir, "prices", site_with(fields=fields))
    message = assert_only_error(load_project(config_dir), path, "fields.price.type", "'money'")
    assert "'decimal'" in message  # says which types are allowed


def test_a_queue_name_celery_cannot_route_is_named(config_dir):
    path = write_site(config_dir, "prices", site_with(queue="crawl vpn"))
    assert_only_error(load_project(config_dir), path, "queue", "crawl vpn")
    write_site(config_dir, "prices", site_with(queue="crawl_vpn.eu-1"))
    assert load_project(config_dir).sites["prices"].queue == "crawl_vpn.eu-1"


def test_natural_key_names_unknown_field(config_dir):
    path = write_site(config_dir, "prices", site_with(natural_key=["ticker"]))
    assert_only_error(load_project(config_dir), path, "natural_key", "ticker")


def test_unknown_region(config_dir):
    path = write_site(config_dir, "prices", site_with(regions=["americas", "antarctica"]))
    message = assert_only_error(load_project(config_dir), path, "regions", "antarctica")
    assert "regions.yaml defines" in message
    assert "'americas'" in message


def test_kind_without_its_section(config_dir):
    path = write_site(config_dir, "prices", site_with(json_api=None))
    assert_only_error(load_project(config_dir), path, "kind 'json_api' needs a 'json_api' section")


def test_kind_with_another_kinds_section(config_dir):
    path = write_site(config_dir, "prices", site_with(html_table={"rows": "tr"}))
    assert_only_error(
        load_project(config_dir),
        path,
        "field `html_table`: kind 'json_api' does not use this section",
    )


def test_a_browser_on_a_site_with_no_html_is_named(config_dir):
    path = write_site(config_dir, "prices", site_with(browser={"wait_for": "tr"}))
    assert_only_error(
        load_project(config_dir), path,
        "field `browser`: kind 'json_api' reads no HTML a browser could render; browser is for "
        "html_table, listing_detail",
    )  # fmt: skip


def test_rendering_one_page_role_is_for_listing_detail_sites(config_dir):
    equities = yaml.safe_load((SHIPPED / "sites/equities.yaml").read_text())
    equities |= {"name": "board", "browser": {"pages": "detail", "timeout_seconds": 400}}
    path = write_site(config_dir, "board", equities)
    message = load_project(config_dir).errors[path.name]
    assert "browser.timeout_seconds" in message and "300" in message, message
    equities["browser"]["timeout_seconds"] = 30
    write_site(config_dir, "board", equities)
    message = load_project(config_dir).errors[path.name]
    assert "field `browser.pages`: 'detail' is for listing_detail sites" in message, message


def test_css_field_on_json_api_site(config_dir):
    fields = {**BASE_SITE["fields"], "price": {"type": "decimal", "css": "td.price::text"}}
    path = write_site(config_dir, "prices", site_with(fields=fields))
    assert_only_error(load_project(config_dir), path, "fields.price", "`path`")


def test_field_with_two_locators(config_dir):
    fields = {**BASE_SITE["fields"], "price": {"type": "decimal", "path": "p", "css": "td"}}
    path = write_site(config_dir, "prices", site_with(fields=fields))
    assert_only_error(load_project(config_dir), path, "fields.price", "exactly one of css")


def test_unknown_placeholder_in_start_urls(config_dir):
    path = write_site(config_dir, "prices", site_with(start_urls=["/api/prices/{ds}"]))
    assert_only_error(load_project(config_dir), path, "start_urls", "['ds']", "{trading_date}")


def test_reserved_field_name(config_dir):
    fields = {**BASE_SITE["fields"], "region": {"type": "text", "path": "region"}}
    path = write_site(config_dir, "prices", site_with(fields=fields))
    assert_only_error(load_project(config_dir), path, "['region']", "reserved")


def test_unknown_top_level_key(config_dir):
    path = write_site(config_dir, "prices", site_with(schedule="@daily"))
    assert_only_error(load_project(config_dir), path, "schedule", "Extra inputs")


def test_name_must_match_file_name(config_dir):
    path = write_site(config_dir, "prices", site_with(name="quotes"))
    assert_only_error(load_project(config_dir), path, "field `name`", "'quotes'")


def test_a_file_name_that_is_no_site_name_is_named_as_the_file(config_dir):
    """The site's name is its file's: an error on it names the file, not a field `name` the
    user never wrote."""
    path = write_site(config_dir, "Bond-Prices", site_with())
    message = assert_only_error(load_project(config_dir), path, "file name 'Bond-Prices.yaml'")
    assert "field `name`" not in message and "rename the file" in message


def test_every_cross_field_mistake_of_a_file_is_reported_at_once_on_its_own_field(config_dir):
    """An unknown key field, a quality rule on an unknown field, a field located the HTML way on
    a JSON API and another kind's section: four lines, each naming its field."""
    data = site_with(natural_key=["ticker"], html_table={"rows": "tr"})
    data["fields"]["price"] = {"type": "decimal", "css": "td.price::text"}
    data["quality"] = {"ranges": {"volume": {"min": 0}}}
    path = write_site(config_dir, "prices", data)
    message = assert_only_error(
        load_project(config_dir), path,
        "  field `natural_key`: names unknown field(s) ['ticker']; the site's fields are "
        "['code', 'price']",
        "  field `quality.ranges`: names unknown field(s) ['volume']",
        "  field `fields.price`: a json_api site locates fields with `path` (or `const`)",
        "  field `html_table`: kind 'json_api' does not use this section",
    )  # fmt: skip
    assert "(top level)" not in message
    assert len(message.splitlines()) == 1 + 4


def test_a_natural_key_of_a_json_field_is_refused(config_dir):
    data = site_with()
    data["fields"]["code"]["type"] = "json"
    path = write_site(config_dir, "prices", data)
    assert_only_error(
        load_project(config_dir), path, "field `natural_key`: field(s) ['code'] are type json"
    )


def test_invalid_yaml_syntax(config_dir):
    path = write_site(config_dir, "prices", "kind: json_api\nfields: {code: [unclosed\n")
    project = load_project(config_dir)
    assert set(project.errors) == {"prices.yaml"}
    message = project.errors["prices.yaml"]
    assert "not valid YAML" in message
    assert str(path) in message
    assert set(project.sites) == SHIPPED_SITES


def test_an_unquoted_impossible_date_is_a_config_error_naming_the_file(config_dir):
    # PyYAML reads an unquoted 2026-02-30 as a date and raises a bare ValueError.
    path = config_dir / "regions.yaml"
    path.write_text(path.read_text() + "extra: {2026-02-30: x}\n")
    project = load_project(config_dir)
    assert set(project.errors) == {"regions.yaml"}
    message = project.errors["regions.yaml"]
    assert str(path) in message and "day is out of range for month" in message
    assert 'write dates as quoted "YYYY-MM-DD"' in message


def test_yaml_that_is_not_a_mapping(config_dir):
    path = write_site(config_dir, "prices", "- just\n- a list\n")
    assert_only_error(load_project(config_dir), path, "expected a mapping")


def test_broken_shipped_site_does_not_hide_the_others(config_dir):
    path = config_dir / "sites" / "funds.yaml"
    path.write_text(path.read_text().replace("type: int", "type: integer"), encoding="utf-8")
    project = load_project(config_dir)
    assert set(project.errors) == {"funds.yaml"}
    assert "fields.aum.type" in project.errors["funds.yaml"]
    assert set(project.sites) == {"equities", "fx_rates"}
    assert len(project.pairs()) == 8


# --------------------------------------------------------------------------- selectors

# A valid html_table site; the selector tests break one selector in a copy of it.
HTML_SITE = {
    "kind": "html_table",
    "base_url_conn_id": "site_quotes",
    "start_urls": ["/quotes/{region}/{trading_date}"],
    "regions": ["americas"],
    "natural_key": ["symbol"],
    "html_table": {"rows": "table#quotes tbody tr", "next_page": "a.next::attr(href)"},
    "fields": {
        "symbol": {"type": "text", "css": "td.symbol::text"},
        "last_price": {"type": "decimal", "css": "td.last::text"},
        "volume": {"type": "int", "xpath": "./td[@class='volume']/text()"},
    },
}


def html_site(**sections) -> dict:
    data = yaml.safe_load(yaml.safe_dump(HTML_SITE))  # deep copy
    for section, changes in sections.items():
        data[section] = {**data.get(section, {}), **changes}
    return data


def test_valid_selectors_with_pseudo_elements_pass(config_dir):
    fields = {
        **HTML_SITE["fields"],
        "link": {"type": "text", "css": "td.name a::attr(href)"},
        "title": {"type": "text", "xpath": "./td[contains(@class, 'name')]/a/@title"},
    }
    write_site(config_dir, "quotes", html_site(fields=fields))
    write_site(
        config_dir,
        "funds2",
        {
            **html_site(),
            "kind": "listing_detail",
            "html_table": None,
            "listing_detail": {"links": "ul li a::attr(href)", "next_page": "a.next::attr(href)"},
        },
    )
    project = load_project(config_dir)
    assert project.errors == {}
    assert project.sites["quotes"].fields["link"].css == "td.name a::attr(href)"
    assert project.sites["funds2"].listing_detail.links == "ul li a::attr(href)"


def test_invalid_css_selector_in_field(config_dir):
    path = write_site(
        config_dir,
        "quotes",
        html_site(fields={"last_price": {"type": "decimal", "css": "td.last:::text"}}),
    )
    assert_only_error(
        load_project(config_dir),
        path,
        "fields.last_price.css",
        "invalid CSS selector 'td.last:::text'",
        "Expected ident, got <DELIM ':' at 9>",  # cssselect's own message
    )


def test_invalid_xpath_in_field(config_dir):
    bad = "./td[@class='x'"
    path = write_site(
        config_dir, "quotes", html_site(fields={"volume": {"type": "int", "xpath": bad}})
    )
    # DAG parsing: the cheap check (lxml stays out of the parse).
    assert_only_error(
        load_project(config_dir),
        path,
        "fields.volume.xpath",
        f"invalid XPath {bad!r}: unclosed '['",
    )
    # Run time (each task, the crawl): lxml compiles it, with its own message.
    with pytest.raises(ConfigError) as err:
        get_site("quotes", config_dir)
    assert "fields.volume.xpath" in str(err.value)
    assert f"invalid XPath {bad!r}: Invalid predicate" in str(err.value)


def test_an_xpath_only_lxml_rejects_fails_at_run_time(config_dir):
    bad = "./td[@class='x']||"  # balanced, but not XPath
    write_site(config_dir, "quotes", html_site(fields={"volume": {"type": "int", "xpath": bad}}))
    assert "quotes" in load_project(config_dir).sites  # the parse-time check lets it through
    with pytest.raises(ConfigError, match=r"fields\.volume\.xpath.*invalid XPath"):
        get_site("quotes", config_dir)


def test_invalid_html_table_rows(config_dir):
    path = write_site(config_dir, "quotes", html_site(html_table={"rows": "table#quotes tr["}))
    message = assert_only_error(
        load_project(config_dir),
        path,
        "html_table.rows",
        "invalid CSS selector 'table#quotes tr['",
        "Expected ident or '*'",
    )
    assert "html_table.next_page" not in message  # the valid one is not blamed


def test_empty_rows_is_invalid_but_empty_next_page_means_none(config_dir):
    path = write_site(config_dir, "quotes", html_site(html_table={"rows": ""}))
    assert_only_error(load_project(config_dir), path, "html_table.rows", "Expected selector")
    write_site(config_dir, "quotes", html_site(html_table={"next_page": ""}))
    assert load_project(config_dir).errors == {}


def test_invalid_next_page_and_unknown_pseudo_element(config_dir):
    path = write_site(config_dir, "quotes", html_site(html_table={"next_page": "a.next::href"}))
    assert_only_error(
        load_project(config_dir),
        path,
        "html_table.next_page",
        "invalid CSS selector 'a.next::href'",
        "The pseudo-element ::href is unknown",
    )


def test_invalid_listing_detail_links(config_dir):
    data = {**html_site(), "kind": "listing_detail", "listing_detail": {"links": "ul > > a"}}
    del data["html_table"]
    path = write_site(config_dir, "quotes", data)
    assert_only_error(
        load_project(config_dir), path, "listing_detail.links", "invalid CSS selector 'ul > > a'"
    )


def test_every_broken_selector_of_a_file_is_named(config_dir):
    fields = {
        **HTML_SITE["fields"],
        "last_price": {"type": "decimal", "css": "td.last:::text"},
        "volume": {"type": "int", "xpath": "./td[@class='x'"},
    }
    path = write_site(config_dir, "quotes", html_site(fields=fields, html_table={"rows": "tr["}))
    assert_only_error(
        load_project(config_dir),
        path,
        "fields.last_price.css",
        "fields.volume.xpath",
        "html_table.rows",
    )


def test_broken_selector_in_shipped_site_does_not_hide_the_others(config_dir):
    path = config_dir / "sites" / "equities.yaml"
    text = path.read_text()
    assert 'css: "td.last::text"' in text
    path.write_text(text.replace('css: "td.last::text"', 'css: "td.last:::text"'), "utf-8")
    project = load_project(config_dir)
    assert set(project.errors) == {"equities.yaml"}
    message = project.errors["equities.yaml"]
    assert str(path) in message and "site 'equities'" in message
    assert "fields.last_price.css" in message
    assert "invalid CSS selector 'td.last:::text'" in message
    assert set(project.sites) == {"funds", "fx_rates"}
    with pytest.raises(ConfigError, match="invalid CSS selector"):
        get_site("equities", config_dir)


def test_shipped_selectors_all_compile():
    project = load_project(SHIPPED)
    assert project.errors == {}
    selectors = [
        f.css or f.xpath for s in project.sites.values() for f in s.fields.values() if not f.path
    ]
    assert len(selectors) == 14  # equities' 7 fields and funds' 7


# --------------------------------------------------------------------------- new settings


def test_new_settings_defaults():
    politeness, quality, breaker = Politeness(), Quality(), CircuitBreaker()
    assert politeness.allowed_hosts == []
    assert politeness.max_retry_after_seconds == 60
    assert politeness.max_retry_after_times == 3
    assert quality.max_delete_ratio == 0.1
    assert quality.on_excess_delete == "fail"
    assert (breaker.failures, breaker.cooldown_minutes) == (3, 60)
    for site in load_project(SHIPPED).sites.values():
        assert site.circuit_breaker == CircuitBreaker()
        assert site.politeness.allowed_hosts == []


def test_new_settings_are_read(config_dir):
    write_site(
        config_dir,
        "prices",
        site_with(
            politeness={
                "allowed_hosts": ["cdn.example.com", "10.1.2.3"],
                "max_retry_after_seconds": 0,
                "max_retry_after_times": 20,
            },
            quality={"max_delete_ratio": 1, "on_excess_delete": "warn"},
            circuit_breaker={"failures": 0, "cooldown_minutes": 10080},
        ),
    )
    project = load_project(config_dir)
    assert project.errors == {}
    site = project.sites["prices"]
    assert site.politeness.allowed_hosts == ["cdn.example.com", "10.1.2.3"]
    assert site.quality.on_excess_delete == "warn"
    assert site.circuit_breaker.failures == 0


def test_bad_allowed_hosts_entry_is_named(config_dir):
    path = write_site(
        config_dir,
        "prices",
        site_with(politeness={"allowed_hosts": ["cdn.example.com", "https://x.com/"]}),
    )
    message = assert_only_error(
        load_project(config_dir), path, "politeness.allowed_hosts", "'https://x.com/'"
    )
    assert "'cdn.example.com' must" not in message  # the good entry is not blamed


@pytest.mark.parametrize("host", ["X.com", "x.com:8080", "x.com/path", "", "two words"])
def test_allowed_hosts_must_be_bare_lower_case(config_dir, host):
    path = write_site(config_dir, "prices", site_with(politeness={"allowed_hosts": [host]}))
    assert_only_error(load_project(config_dir), path, "politeness.allowed_hosts", repr(host))


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        ("politeness", "max_retry_after_seconds", 86401, "less than or equal to 86400"),
        ("politeness", "max_retry_after_times", -1, "greater than or equal to 0"),
        ("quality", "max_delete_ratio", 1.5, "less than or equal to 1"),
        ("quality", "on_excess_delete", "ignore", "'warn'"),
        ("circuit_breaker", "failures", 101, "less than or equal to 100"),
        ("circuit_breaker", "cooldown_minutes", 0, "greater than or equal to 1"),
        ("circuit_breaker", "threshold", 3, "Extra inputs"),
    ],
)
def test_new_settings_bounds(config_dir, section, key, value, words):
    path = write_site(config_dir, "prices", site_with(**{section: {key: value}}))
    assert_only_error(load_project(config_dir), path, f"{section}.{key}", words)


# --------------------------------------------------------------------------- broken regions.yaml


def edit_regions(config_dir: Path, old: str, new: str) -> Path:
    path = config_dir / "regions.yaml"
    path.write_text(path.read_text().replace(old, new), encoding="utf-8")
    return path


def test_unquoted_time_in_regions(config_dir):
    path = edit_regions(config_dir, '{start: "18:30", end: "07:30"}', "{start: 18:30, end: 07:30}")
    project = load_project(config_dir)
    assert project.sites == {}
    assert set(project.errors) == {"regions.yaml"}
    message = project.errors["regions.yaml"]
    assert str(path) in message
    assert "regions.americas.off_peak.start" in message
    assert "quoted" in message
    assert "(got 1110)" in message  # what YAML made of 18:30


def test_unknown_timezone_in_regions(config_dir):
    edit_regions(config_dir, "Europe/London", "Europe/Londn")
    project = load_project(config_dir)
    assert project.sites == {}
    assert project.regions == {}
    assert project.pairs() == []
    message = project.errors["regions.yaml"]
    assert "regions.europe.timezone" in message
    assert "unknown IANA timezone 'Europe/Londn'" in message


def test_exchange_without_trading_calendar_in_regions(config_dir):
    path = edit_regions(config_dir, "exchange: XLON", "exchange: XLSE")
    message = load_project(config_dir).errors["regions.yaml"]
    assert str(path) in message and "regions.europe.exchange" in message
    assert "no trading calendar for exchange 'XLSE'; known MICs:" in message and "XLON" in message


def test_window_with_seconds_is_accepted(config_dir):
    edit_regions(config_dir, '{start: "18:00", end: "07:00"}', '{start: "18:00:30", end: "07:00"}')
    window = load_project(config_dir).regions["europe"].off_peak
    assert str(window) == "18:00:30–07:00:00"


def test_unknown_on_window_end_is_named(config_dir):
    path = write_site(config_dir, "prices", site_with(quality={"on_window_end": "truncate"}))
    assert_only_error(load_project(config_dir), path, "quality.on_window_end", "'partial'")


def test_catchup_days_must_be_positive(config_dir):
    path = write_site(config_dir, "prices", site_with(dag={"catchup": True, "catchup_days": 0}))
    assert_only_error(
        load_project(config_dir), path, "dag.catchup_days", "greater than or equal to 1"
    )


def test_missing_regions_file(config_dir):
    (config_dir / "regions.yaml").unlink()
    project = load_project(config_dir)
    assert project.sites == {}
    assert "regions.yaml" in project.errors["regions.yaml"]


def test_get_site_raises_for_a_broken_site(config_dir):
    write_site(config_dir, "prices", site_with(natural_key=["ticker"]))
    with pytest.raises(ConfigError, match="field `natural_key`: names unknown field"):
        get_site("prices", config_dir)


# --------------------------------------------------------------------------- factory


def test_raise_config_errors_names_every_broken_file(config_dir):
    write_site(config_dir, "prices", site_with(natural_key=["ticker"]))
    write_site(config_dir, "rates", "kind: [\n")
    project = load_project(config_dir)
    assert set(project.errors) == {"prices.yaml", "rates.yaml"}
    with pytest.raises(ConfigError) as info:
        factory.raise_config_errors(project)
    message = str(info.value)
    assert "2 config file(s)" in message
    assert str(config_dir / "sites" / "prices.yaml") in message
    assert str(config_dir / "sites" / "rates.yaml") in message
    assert "not valid YAML" in message
    assert "natural_key" in message


def test_raise_config_errors_is_silent_for_valid_config():
    assert factory.raise_config_errors(load_project(SHIPPED)) is None


# --------------------------------------------------------------------------- field types


@pytest.mark.parametrize(
    ("field", "words"),
    [
        (
            {"type": "decimal", "path": "p", "whitespace": "keep"},
            ["fields.price", "whitespace needs type text"],
        ),
        (
            {"type": "text", "path": "p", "whitespace": "squash"},
            ["fields.price.whitespace", "'collapse' or 'keep'"],
        ),
        (
            {"type": "text", "path": "p", "true_values": ["y"]},
            ["fields.price", "true_values need(s) type boolean"],
        ),
        (
            {"type": "boolean", "path": "p", "true_values": []},
            ["fields.price.true_values", "at least one spelling"],
        ),
        (
            {"type": "boolean", "path": "p", "false_values": ["no", "  "]},
            ["fields.price.false_values", "a blank spelling"],
        ),
        (
            {"type": "boolean", "path": "p", "true_values": ["Yes", "Y"], "false_values": ["y"]},
            ["fields.price", "'Y' is read as both true and false"],
        ),
        (
            {"type": "boolean", "path": "p", "true_values": ["no"]},
            ["fields.price", "'no' is read as both true and false", "false_values ['false', 'no']"],
        ),
        ({"type": "jsonb", "path": "p"}, ["fields.price.type", "'json'", "'boolean'"]),
    ],
)
def test_an_option_of_the_wrong_type_of_field_is_named(config_dir, field, words):
    fields = {**BASE_SITE["fields"], "price": field}
    path = write_site(config_dir, "prices", site_with(fields=fields))
    assert_only_error(load_project(config_dir), path, *words)


def test_an_unquoted_yes_in_the_spellings_asks_for_quotes(config_dir):
    """YAML reads `yes` unquoted as true: which spelling was meant is lost, so it is refused
    with the fix rather than guessed."""
    listed = {"type": "boolean", "path": "listed", "true_values": ["YES_UNQUOTED", "Y"]}
    text = yaml.safe_dump(site_with(fields={**BASE_SITE["fields"], "listed": listed}))
    path = write_site(config_dir, "prices", text.replace("YES_UNQUOTED", "yes"))
    message = assert_only_error(
        load_project(config_dir), path, "fields.listed.true_values", "quote yes, no"
    )
    assert 'true_values: ["yes"' in message


def test_the_new_types_and_their_options_load(config_dir):
    fields = {
        **BASE_SITE["fields"],
        "listed": {"type": "boolean", "path": "l", "true_values": ["yes", "\u2713"]},
        "meta": {"type": "json", "path": "m"},
        "memo": {"type": "text", "path": "n", "whitespace": "collapse"},
    }
    write_site(config_dir, "prices", site_with(fields=fields))
    project = load_project(config_dir)
    assert project.errors == {}
    site = project.sites["prices"]
    assert site.fields["listed"].true_values == ["yes", "\u2713"]
    assert site.fields["listed"].false_values is None  # the defaults: false, no
    assert site.fields["memo"].whitespace == "collapse"
    assert site.fields["code"].whitespace is None  # keep, on a json_api site
