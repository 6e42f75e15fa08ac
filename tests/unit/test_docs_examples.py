"""The docs' examples run: every YAML block of README.md and the docs/ pages it points to
validates with the config models, and every date format they show reads the sample it is shown
with."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from offpeak.config import ConfigError, FieldSpec, Region, load_regions, load_site
from offpeak.config.kinds import KINDS
from offpeak.pipeline.normalize import field_converter
from support import REPO

DOCS = (
    "README.md",
    "docs/running-locally.md",
    "docs/adding-a-site.md",
    "docs/configuration.md",
    "docs/schedules-and-rollups.md",
    "docs/operating.md",
    "docs/deploying.md",
    "docs/testing.md",
)
TEXTS = {doc: (REPO / doc).read_text(encoding="utf-8") for doc in DOCS}
SHIPPED = REPO / "include/config"
# (where, block): where is "<file> line <n>", the block's first line.
YAML_BLOCKS = [
    (f"{doc} line {text.count(chr(10), 0, m.start()) + 2}", m.group(1))
    for doc, text in TEXTS.items()
    for m in re.finditer(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
]
# (`"%d.%m.%Y"` for `30.06.2013`): a format and the sample the docs read with it.
DATE_EXAMPLES = [
    example
    for text in TEXTS.values()
    for example in re.findall(r'`"(%[^"`]*)"` for\s+`([^`]+)`', text)
]
KIND_OF_SECTION = {"html_table": "equities", "json_api": "fx_rates", "listing_detail": "funds"}


def _merged(base: dict, fragment: dict) -> dict:
    """``base`` with ``fragment`` laid over it, mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _base_site(fragment: dict) -> dict:
    """The shipped site a docs fragment belongs to: the one of its kind's section, or of
    its fields' locators (a JSON `path` is fx_rates'), else equities."""
    name = next((KIND_OF_SECTION[k] for k in KIND_OF_SECTION if k in fragment), None)
    fields = fragment.get("fields") or {}
    if name is None and any(isinstance(f, dict) and "path" in f for f in fields.values()):
        name = "fx_rates"
    return yaml.safe_load((SHIPPED / f"sites/{name or 'equities'}.yaml").read_text())


def _check_site(data: dict, tmp_path: Path, line: str) -> None:
    if "kind" not in data:
        data = _merged(_base_site(data), data)
    if "kind" in data and data["kind"] not in KINDS:
        pytest.fail(f"{line}: unknown kind {data['kind']!r}")
    path = tmp_path / "sites" / "example.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    try:
        load_site(path, load_regions(SHIPPED / "regions.yaml"), compile_selectors=True)
    except ConfigError as exc:
        pytest.fail(f"{line}: the YAML example does not validate:\n{exc}")


def _check_regions(data: dict, line: str) -> None:
    shipped = yaml.safe_load((SHIPPED / "regions.yaml").read_text())["regions"]
    for name, entry in data.items():
        base = shipped.get(name, shipped["americas"])
        try:
            Region.model_validate(_merged(base, entry))
        except ValueError as exc:
            pytest.fail(f"{line}: region {name!r} does not validate:\n{exc}")


def test_the_docs_have_yaml_and_date_examples_to_check():
    assert len(YAML_BLOCKS) >= 3
    assert len(DATE_EXAMPLES) >= 5


@pytest.mark.parametrize(("line", "text"), YAML_BLOCKS, ids=[where for where, _ in YAML_BLOCKS])
def test_every_yaml_example_in_the_docs_validates(line, text, tmp_path):
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{line}: not a YAML mapping"
    regions = load_regions(SHIPPED / "regions.yaml")
    if "regions" in data and isinstance(data["regions"], dict):
        _check_regions(data["regions"], line)  # a regions.yaml example
    elif set(data) <= set(regions) or all(
        isinstance(v, dict) and {"exchange", "timezone", "off_peak"} & set(v) for v in data.values()
    ):
        _check_regions(data, line)  # entries of regions.yaml's `regions`
    else:
        _check_site(data, tmp_path, line)


@pytest.mark.parametrize(("fmt", "sample"), DATE_EXAMPLES)
def test_every_date_format_example_reads_its_sample(fmt, sample):
    """Read as the field reads it, and the same day as dateutil's parser makes of it."""
    from dateutil.parser import parse

    spec = FieldSpec(type="date", css="td::text", formats=[fmt])
    value = field_converter(spec)(sample)
    assert value == parse(sample, dayfirst=fmt.startswith("%d")).date(), (fmt, sample)
