"""Unit tests for plugins/offpeak/compat.py: a work-around applies only up to its guard."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG

from offpeak import compat


@pytest.mark.parametrize(
    ("version", "applies"),
    [
        ("3.3.1", True),
        ("3.3.2", True),
        ("3.3.2rc1", True),  # a pre-release of an affected release
        ("3.3.2.post1", True),
        ("3.3.3", False),  # the first release after the guard gets no patch
        ("3.4.0", False),
        (None, False),  # no airflow-core installed
    ],
)
def test_the_dag_test_deadline_fix_applies_up_to_the_last_release_known_to_need_it(
    version, applies
):
    assert compat.affected(version, compat.DAG_TEST_DEADLINES_UP_TO) is applies


def test_the_dag_test_deadline_fix_is_installed_once_on_an_affected_airflow():
    expected = compat.affected(compat.airflow_version(), compat.DAG_TEST_DEADLINES_UP_TO)
    assert compat.fix_dag_test_deadlines() is expected
    wrapped = DAG.test
    assert compat.fix_dag_test_deadlines() is expected
    assert DAG.test is wrapped  # a second call wraps nothing again


def test_param_schemas_are_checked_once_and_values_are_still_validated_every_time():
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    expected = compat.affected(compat.airflow_version(), compat.PARAM_SCHEMA_CHECKS_UP_TO)
    assert compat.check_param_schemas_once() is expected
    param = Param(None, type=["null", "integer"], minimum=1)
    for _ in range(3):  # the schema's check is remembered; the value is checked each time
        assert param.resolve(5) == 5
        with pytest.raises(ParamValidationError, match="0 is less than the minimum of 1"):
            param.resolve(0)
        with pytest.raises(ParamValidationError, match="'x' is not of type"):
            param.resolve("x")
        # A value that passed is remembered by its type too: True is not the integer 1.
        with pytest.raises(ParamValidationError, match="True is not of type"):
            param.resolve(True)
    day = Param("2026-12-08", type="string", format="date")
    for _ in range(3):  # Param.resolve's FormatChecker still applies to every new value
        assert day.resolve() == "2026-12-08"
        with pytest.raises(ParamValidationError, match="'2026-13-01' is not a 'date'"):
            day.resolve("2026-13-01")
    urls = Param([], type="array", items={"type": "string"}, uniqueItems=True)
    for _ in range(3):  # lists are remembered by their items; a tuple is not an array
        assert urls.resolve(["/a"]) == ["/a"]
        with pytest.raises(ParamValidationError, match="has non-unique elements"):
            urls.resolve(["/a", "/a"])
        with pytest.raises(ParamValidationError, match="is not of type 'array'"):
            urls.resolve(("/a",))


def test_a_broken_param_schema_is_refused_every_time_not_remembered():
    import jsonschema

    compat.check_param_schemas_once()
    for _ in range(2):
        with pytest.raises(jsonschema.exceptions.SchemaError, match="'integr' is not valid"):
            jsonschema.validate(1, {"type": "integr"})


@pytest.mark.parametrize("table", ["equities", "fx_rates", "funds", "rollup_site_day"])
def test_warehouse_assets_equal_what_airflows_own_constructor_builds(table):
    """The prebuilt asset skips the URI handler discovery; it must be the Asset Airflow builds
    with the postgres provider's normaliser, field for field."""
    from airflow.sdk import Asset

    from offpeak.warehouse.assets import table_asset

    prebuilt = table_asset(table)
    ordinary = Asset(name=prebuilt.name, uri=prebuilt.uri, group=prebuilt.group)
    assert prebuilt == ordinary
    assert prebuilt.uri == f"postgres://warehouse:5432/warehouse/scraped/{table}"
    assert (prebuilt.name, prebuilt.group, prebuilt.extra) == (
        f"warehouse.scraped.{table}",
        "warehouse",
        {},
    )


def test_a_prebuilt_asset_still_refuses_a_bad_name():
    with pytest.raises(ValueError, match="cannot exceed 1500 characters"):
        compat.prebuilt_asset("x" * 1501, "postgres://warehouse:5432/warehouse/s/t", "warehouse")


def test_a_bad_params_error_is_its_first_line_where_airflow_validates_a_trigger():
    """SerializedParamsDict.validate is what the api-server runs on a trigger's conf; its
    message went on with jsonschema's dumps of the schema and the value."""
    from airflow.exceptions import ParamValidationError
    from airflow.serialization.definitions.param import SerializedParam, SerializedParamsDict

    params = SerializedParamsDict({"max_pages": SerializedParam("many", type=["null", "integer"])})
    assert compat.short_param_errors() is True
    assert compat.short_param_errors() is True  # once: a second call wraps nothing again
    with pytest.raises(ParamValidationError) as refused:
        params.validate()
    assert str(refused.value) == (
        "Invalid input for param max_pages: 'many' is not of type 'null', 'integer'"
    )
    ok = SerializedParamsDict({"max_pages": SerializedParam(3, type=["null", "integer"])})
    assert ok.validate() == {"max_pages": 3}
