"""The JSON Schemas of site and region files and the docs' config reference, from the models."""

# Generated, never edited: `python -m offpeak.config.schema` writes include/config/
# site.schema.json and regions.schema.json and the tables between the config-reference markers
# in docs/configuration.md; tests/unit/test_config_schema.py holds all three equal to the models.
# The schemas are for editors (validation as you type); the models are the authority: what a
# JSON Schema cannot say (selectors that compile, regexes, one locator per field, the fields a
# natural key names) is checked by the models' validators only.

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from offpeak.config.fields import FieldSpec
from offpeak.config.kinds import KINDS
from offpeak.config.regions import Alerts, OffPeakWindow, Region, RegionsFile, Rollups
from offpeak.config.sections import (
    Cursor,
    LinkHeader,
    NextUrl,
    NoPagination,
    Offset,
    PageNumber,
    _Paged,
)
from offpeak.config.sites import CircuitBreaker, DagSettings, Politeness, Quality, Range, Site

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SITE_SCHEMA = "site.schema.json"
REGIONS_SCHEMA = "regions.schema.json"
BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"
REFERENCE_DOC = Path("docs") / "configuration.md"
EDITORS = (
    "For editors: validates as you type. The models (offpeak.config) are the authority and "
    "also check what a JSON Schema cannot: selectors and regular expressions that compile, "
    "one locator per field, the fields a natural key or a quality check names."
)


def site_schema() -> dict[str, Any]:
    """The JSON Schema of sites/<name>.yaml: Site's, with ``name`` optional (the file's name
    is the site's) and each kind requiring its section and no other kind's."""
    schema = Site.model_json_schema()
    schema["required"] = [k for k in schema["required"] if k != "name"]
    schema["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
            "then": {
                "required": [name],
                "not": {"anyOf": [{"required": [other]} for other in KINDS if other != name]},
            },
        }
        for name in KINDS
    ]
    return {"$schema": DRAFT, "title": "offpeak site file", **schema, "$comment": EDITORS}


def regions_schema() -> dict[str, Any]:
    """The JSON Schema of regions.yaml."""
    schema = RegionsFile.model_json_schema()
    return {"$schema": DRAFT, "title": "offpeak regions.yaml", **schema, "$comment": EDITORS}


def dumps(schema: dict[str, Any]) -> str:
    """A schema as its file holds it."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- reference

_JSON_TYPES = {"integer": "int", "number": "number", "string": "text", "boolean": "bool"}


def _type_text(prop: dict[str, Any]) -> str:
    """A property's JSON Schema type in a few words."""
    if "$ref" in prop:
        return "mapping (below)"
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " / ".join(f"`{v}`" for v in prop["enum"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [_type_text(p) for p in prop[key] if p.get("type") != "null"]
            return " or ".join(dict.fromkeys(parts))
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type_text(prop.get('items', {}))}"
    if kind == "object":
        values = prop.get("additionalProperties") or next(
            iter(prop.get("patternProperties", {}).values()), None
        )
        return f"mapping to {_type_text(values)}" if isinstance(values, dict) else "mapping"
    return prop.get("format") or _JSON_TYPES.get(str(kind), "any")


def _default_text(model: type[BaseModel], key: str) -> str:
    field = model.model_fields[key]
    if model is Site and key == "name":
        return "the file's name"
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(below)"
    if value is None:
        return "unset"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def model_table(title: str, model: type[BaseModel], skip: frozenset[str] = frozenset()) -> str:
    """One model's keys (but ``skip``) as a Markdown table: key, type, default, meaning."""
    props = model.model_json_schema()["properties"]
    rows = [
        f"| `{key}` | {_cell(_type_text(props[key]))} | {_cell(_default_text(model, key))} "
        f"| {_cell(field.description or '')} |"
        for key, field in model.model_fields.items()
        if key not in skip
    ]
    doc = _cell(model.__doc__ or "") if model.__doc__ and model is not Site else ""
    head = f"**{title}**" + (f": {doc}" if doc else "")
    return "\n".join([head, "", "| key | type | default | meaning |", "|---|---|---|---|", *rows])


Table = tuple[str, type[BaseModel], frozenset[str]]


def _style(model: type[BaseModel]) -> str:
    """A pagination style's name: the one value its ``style`` takes."""
    (name,) = get_args(model.model_fields["style"].annotation)
    return str(name)


def reference_tables() -> list[Table]:
    """The reference's tables in order, regions.yaml's then a site file's: a title, a model
    and the keys left to another table (a pagination style's page limits)."""
    paged = frozenset(_Paged.model_fields)
    styles = (NoPagination, PageNumber, Offset, Cursor, NextUrl, LinkHeader)
    return [
        ("regions.yaml: `regions.<name>`", Region, frozenset()),
        ("`regions.<name>.off_peak`", OffPeakWindow, frozenset()),
        ("regions.yaml: `rollups`", Rollups, frozenset()),
        ("regions.yaml: `alerts`", Alerts, frozenset()),
        ("Site file (`sites/<name>.yaml`)", Site, frozenset()),
        *(
            (f"`{kind.name}` (kind {kind.name})", kind.section, frozenset())
            for kind in KINDS.values()
        ),
        ("`json_api.pagination`, every style but `none`", _Paged, frozenset()),
        *((f"`json_api.pagination`, style `{_style(style)}`", style, paged) for style in styles),
        ("`fields.<name>`", FieldSpec, frozenset()),
        ("`politeness`", Politeness, frozenset()),
        ("`quality`", Quality, frozenset()),
        ("`quality.ranges.<field>`", Range, frozenset()),
        ("`circuit_breaker`", CircuitBreaker, frozenset()),
        ("`dag`", DagSettings, frozenset()),
    ]


def reference() -> str:
    """The config reference's tables, as the marked block of the docs holds them."""
    tables = "\n\n".join(model_table(*table) for table in reference_tables())
    kinds = ", ".join(f"`{k.name}` {k.summary}" for k in KINDS.values())
    note = (
        "Generated from the models by `python -m offpeak.config.schema`; do not edit by hand. "
        f"The spider kinds are {kinds}."
    )
    return f"{BEGIN}\n{note}\n\n{tables}\n{END}"


def with_reference(text: str) -> str:
    """``text`` with its marked block replaced by :func:`reference`."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not (begin and end):
        raise ValueError(f"no {BEGIN} ... {END} block")
    return head + reference() + tail


def write(repo: Path) -> list[Path]:
    """Write the schemas into ``repo``/include/config and the reference into its docs; the
    files written (changed or not)."""
    config_dir = repo / "include" / "config"
    written = []
    for name, schema in ((SITE_SCHEMA, site_schema()), (REGIONS_SCHEMA, regions_schema())):
        (config_dir / name).write_text(dumps(schema), encoding="utf-8")
        written.append(config_dir / name)
    doc = repo / REFERENCE_DOC
    doc.write_text(with_reference(doc.read_text(encoding="utf-8")), encoding="utf-8")
    return [*written, doc]


def main(argv: list[str]) -> int:
    repo = Path(argv[0]) if argv else Path(__file__).resolve().parents[3]
    for path in write(repo):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
