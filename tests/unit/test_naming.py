"""Unit tests for plugins/offpeak/naming.py: ids, their parse-back, and the config errors that
keep one DAG id per (site, region)."""

from __future__ import annotations

import pytest
from test_config import SHIPPED_SITES, assert_only_error, config_dir, site_with, write_site

from offpeak import factory, naming
from offpeak.config import ConfigError, load_project

__all__ = ["config_dir"]  # the fixture, shared with test_config


def test_ids_are_built_from_their_parts():
    assert naming.scrape_dag_id("fx_rates", "europe") == "scrape__fx_rates__europe"
    assert naming.rollup_dag_id("india") == "rollup__india"
    assert naming.rollup_dag_id(naming.GLOBAL) == "rollup__global"
    assert naming.pool_name("funds") == "site_funds"


def test_every_shipped_dag_id_reads_back_into_its_parts():
    project = load_project()
    for dag_id in factory.dag_ids(project):
        parsed = naming.parse_dag_id(dag_id)
        assert str(parsed) == dag_id
        assert parsed.scope in {*project.regions, naming.GLOBAL}
        assert parsed.site is None or parsed.site in project.sites
    assert naming.parse_dag_id("scrape__fx_rates__asia_pacific") == naming.DagId(
        "scrape", "fx_rates", "asia_pacific"
    )
    assert naming.scope_of("rollup__global") == "global"


def test_a_site_name_ending_with_an_underscore_reads_back():
    dag_id = naming.scrape_dag_id("fx_", "europe")
    assert dag_id == "scrape__fx___europe"
    assert naming.parse_dag_id(dag_id) == naming.DagId("scrape", "fx_", "europe")


@pytest.mark.parametrize(
    "dag_id", ["scrape__funds", "rollup", "backfill__funds__europe", "scrape__a__b__c"]
)
def test_other_dag_ids_are_refused_by_name(dag_id):
    with pytest.raises(ValueError) as info:
        naming.parse_dag_id(dag_id)
    assert str(info.value) == (
        f"{dag_id!r} is not a scrape__<site>__<region> or rollup__<scope> DAG"
    )


def test_check_name_says_why_a_double_underscore_is_refused():
    assert naming.check_name("fx_rates") == "fx_rates"
    with pytest.raises(ValueError) as info:
        naming.check_name("fx__rates", "site name")
    assert str(info.value) == (
        "site name 'fx__rates' contains '__', which separates the parts of DAG ids "
        "(scrape__<site>__<region>, rollup__<region>); use single underscores"
    )


# --------------------------------------------------------------------------- config errors


def test_a_site_name_with_a_double_underscore_is_a_config_error(config_dir):
    path = write_site(config_dir, "fx__rates", site_with())
    project = load_project(config_dir)
    message = assert_only_error(
        project,
        path,
        "file name 'fx__rates.yaml'",
        "site name 'fx__rates' contains '__'",
        "DAG ids",
    )
    assert "use single underscores" in message
    # Surfaced by dags/config_check.py; the valid sites keep their DAGs.
    with pytest.raises(ConfigError) as info:
        factory.raise_config_errors(project)
    assert str(path) in str(info.value) and "contains '__'" in str(info.value)
    assert "scrape__equities__europe" in factory.dag_ids(project)
    assert not any("fx__rates" in d for d in factory.dag_ids(project))


def regions_yaml_error(config_dir, edit) -> str:
    """regions.yaml changed by ``edit`` (text -> text): its error, which names the file and
    leaves no site loaded."""
    path = config_dir / "regions.yaml"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    project = load_project(config_dir)
    assert project.sites == {}
    message = project.errors["regions.yaml"]
    assert str(path) in message
    return message


def test_a_region_name_with_a_double_underscore_is_a_config_error(config_dir):
    message = regions_yaml_error(
        config_dir, lambda text: text.replace("\n  europe:", "\n  north__europe:")
    )
    assert "field `regions.north__europe" in message
    assert "region name 'north__europe' contains '__'" in message


def test_a_region_listed_twice_by_a_site_is_a_config_error(config_dir):
    path = write_site(config_dir, "prices", site_with(regions=["europe", "americas", "europe"]))
    assert_only_error(
        load_project(config_dir), path, "field `regions`", "['europe'] listed more than once"
    )


def test_a_region_defined_twice_in_regions_yaml_is_a_config_error(config_dir):
    def twice(text: str) -> str:
        head, rest = text.split("\n  americas:", 1)
        americas, tail = rest.split("\n  europe:", 1)
        return f"{head}\n  americas:{americas}\n  americas:{americas}\n  europe:{tail}"

    message = regions_yaml_error(config_dir, twice)
    assert "field `regions.americas`: defined more than once (lines" in message
    assert "rollup__americas" in message


def test_two_sites_giving_one_dag_id_name_both_files(config_dir, monkeypatch):
    """Were a name with "__" let through, site "a__b" in region "c" and site "a" in region
    "b__c" would both give scrape__a__b__c: the collision check names both files and the
    first file (in sorted order) keeps its DAGs."""
    monkeypatch.setattr(naming, "check_name", lambda name, what="name": name)
    regions = config_dir / "regions.yaml"
    text = regions.read_text(encoding="utf-8")
    europe = "\n  europe:" + text.split("\n  europe:", 1)[1].split("\n  asia_pacific:", 1)[0]
    more = europe.replace("europe:", "b__c:", 1) + europe.replace("europe:", "c:", 1)
    regions.write_text(text.replace("\n  europe:", more + "\n  europe:", 1), encoding="utf-8")
    first = write_site(config_dir, "a", site_with(regions=["b__c"]))
    second = write_site(config_dir, "a__b", site_with(regions=["c"]))
    project = load_project(config_dir)
    assert set(project.errors) == {second.name}
    message = project.errors[second.name]
    assert str(second) in message and str(first) in message
    assert "region 'c' gives DAG id 'scrape__a__b__c'" in message
    assert "already gives; rename the site or the region" in message
    assert set(project.sites) == {*SHIPPED_SITES, "a"}
