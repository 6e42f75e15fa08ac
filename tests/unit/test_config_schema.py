"""The generated JSON Schemas and config reference: equal to the models, and agreeing with them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from offpeak.config import load_project, schema
from support import REPO

SHIPPED = REPO / "include" / "config"


def _jsonable(data: object) -> object:
    """A YAML document as an editor's YAML support hands it to the schema: dates as text."""
    return json.loads(json.dumps(data, default=str))


def _schema_errors(which: dict, path: Path) -> dict[str, str]:
    """Where (dotted, as the models name fields) the schema rejects ``path``, with why."""
    document = _jsonable(yaml.safe_load(path.read_text(encoding="utf-8")))
    validator = jsonschema.Draft202012Validator(which)
    return {
        ".".join(map(str, error.absolute_path)): error.message
        for error in validator.iter_errors(document)
    }


def _names(errors: dict[str, str], field: str) -> bool:
    """The schema's errors name ``field``: at it, or as the key its mapping does not allow."""
    parent, _, key = field.rpartition(".")
    return field in errors or f"{key!r} was unexpected" in errors.get(parent, "")


def test_the_schema_files_are_generated_from_the_models():
    for name, generated in (
        (schema.SITE_SCHEMA, schema.site_schema()),
        (schema.REGIONS_SCHEMA, schema.regions_schema()),
    ):
        shipped = (SHIPPED / name).read_text(encoding="utf-8")
        assert shipped == schema.dumps(generated), (
            f"include/config/{name} is stale: run `python -m offpeak.config.schema`"
        )


def test_the_docs_config_reference_is_generated_from_the_models():
    marked = [
        p
        for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
        if schema.BEGIN in p.read_text(encoding="utf-8")
    ]
    assert marked == [REPO / schema.REFERENCE_DOC]
    text = marked[0].read_text(encoding="utf-8")
    assert text == schema.with_reference(text), (
        f"the config reference in {schema.REFERENCE_DOC} is stale: run "
        "`python -m offpeak.config.schema`"
    )


def test_the_reference_lists_every_key_of_every_model_with_its_description():
    reference = schema.reference()
    for _, model, skip in schema.reference_tables():
        for key in set(model.model_fields) - skip:
            assert f"| `{key}` |" in reference, (model.__name__, key)
            assert model.model_fields[key].description, f"{model.__name__}.{key}: no description"


def test_every_shipped_file_is_valid_under_its_schema_and_names_it_for_editors():
    sites = sorted((SHIPPED / "sites").glob("*.yaml"))
    assert sites
    for path in sites:
        assert _schema_errors(schema.site_schema(), path) == {}, path.name
        modeline = f"# yaml-language-server: $schema=../{schema.SITE_SCHEMA}\n"
        assert path.read_text(encoding="utf-8").startswith(modeline), path.name
    regions = SHIPPED / "regions.yaml"
    assert _schema_errors(schema.regions_schema(), regions) == {}
    modeline = f"# yaml-language-server: $schema={schema.REGIONS_SCHEMA}\n"
    assert regions.read_text(encoding="utf-8").startswith(modeline)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        (
            "politeness",
            {"concurrent_requests_per_domain": 0},
            "politeness.concurrent_requests_per_domain",
        ),
        ("fields", {"price": {"type": "money", "path": "price"}}, "fields.price.type"),
        ("quality", {"on_window_end": "later"}, "quality.on_window_end"),
        ("surprise", 1, "surprise"),
        ("kind", "rss", "kind"),
    ],
)
def test_a_broken_site_is_rejected_by_the_schema_at_the_field_the_models_name(
    tmp_path, key, value, field
):
    config = tmp_path / "config"
    shutil.copytree(SHIPPED, config)
    path = config / "sites" / "fx_rates.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    model_error = load_project(config).errors["fx_rates.yaml"]
    assert f"field `{field}`" in model_error
    assert _names(_schema_errors(schema.site_schema(), path), field)


def test_a_site_with_another_kinds_section_is_rejected_by_the_schema(tmp_path):
    path = tmp_path / "fx_rates.yaml"
    data = yaml.safe_load((SHIPPED / "sites" / "fx_rates.yaml").read_text(encoding="utf-8"))
    data["html_table"] = {"rows": "tr"}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert _schema_errors(schema.site_schema(), path)


def test_a_broken_regions_file_is_rejected_by_the_schema_at_the_field_the_models_name(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(SHIPPED, config)
    path = config / "regions.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    region = sorted(data["regions"])[0]
    data["regions"][region]["exchange"] = "nyse"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    field = f"regions.{region}.exchange"
    assert f"field `{field}`" in load_project(config).errors["regions.yaml"]
    assert _names(_schema_errors(schema.regions_schema(), path), field)
