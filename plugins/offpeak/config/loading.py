"""Reading the config folder: YAML parsed once per content, every broken file reported by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import ValidationError

from offpeak import naming, settings
from offpeak.config.common import FieldProblems
from offpeak.config.kinds import KINDS
from offpeak.config.regions import Alerts, Region, RegionsFile, Rollups
from offpeak.config.sites import Site
from offpeak.errors import Final

_T = TypeVar("_T")


class ConfigError(Final):
    """A config file is invalid; the message names the file, the site and the field."""


@dataclass
class Project:
    """Everything read from the config folder: valid sites plus an error per broken file."""

    config_dir: Path
    regions: dict[str, Region]
    sites: dict[str, Site]
    errors: dict[str, str] = field(default_factory=dict)
    rollups: Rollups = field(default_factory=Rollups)
    alerts: Alerts = field(default_factory=Alerts)

    def sites_of(self, region: str) -> list[Site]:
        """The sites crawled in ``region``, sorted by name."""
        return [self.sites[s] for s in sorted(self.sites) if region in self.sites[s].regions]

    def rolled_up_regions(self) -> list[Region]:
        """The regions with at least one site, sorted by name: each has a rollup."""
        return [self.regions[r] for r in sorted(self.regions) if self.sites_of(r)]

    def pairs(self) -> list[tuple[Site, Region]]:
        """(site, region) pairs in a stable order: the DAGs to build."""
        return [
            (self.sites[s], self.regions[r])
            for s in sorted(self.sites)
            for r in sorted(self.sites[s].regions)
        ]

    @cached_property
    def error_report(self) -> str:
        return "\n\n".join(self.errors[k] for k in sorted(self.errors))


def _format_validation_error(
    path: Path, site: str | None, err: ValidationError, *, named_by_file: bool = False
) -> str:
    """One line per error, each naming its field. ``named_by_file``: the site's name is its
    file's, which the user did not write as a field; an error on it names the file name."""
    who = f"site {site!r}" if site else "regions"
    lines = [f"{path}: invalid config for {who}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        found = e.get("ctx", {}).get("error")
        if isinstance(found, FieldProblems):  # a model's cross-field checks: each on its field
            prefix = f"{loc}." if e["loc"] else ""
            lines += [f"  field `{prefix}{where}`: {msg}" for where, msg in found.problems]
            continue
        if named_by_file and loc == "name":
            why = e["msg"].removeprefix("Value error, ")
            lines.append(
                f"  file name {path.name!r}: {site!r} is not a valid site name ({why}); the "
                "file name is the site name: rename the file"
            )
            continue
        got = e.get("input")
        got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  field `{loc}`: {e['msg']}{got_txt}")
    return "\n".join(lines)


# libyaml's C parser and emitter, about 10x PyYAML's pure-Python ones, with the same resolver
# and representer: the same values (YAML 1.1's 18:30 is still 1110) and the same text. A PyYAML
# built without libyaml falls back to the pure-Python classes.
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YamlDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# What was built from each config file (a RegionsFile, a Site or the ConfigError), with the
# bytes it was built from: parsing is the slow part, and the three DAG files, each task and the
# crawl read the same files, so an unchanged file is parsed once per process. The bytes, not
# the mtime, decide: an edit is always seen (an mtime may not tick between two quick writes),
# and comparing them costs microseconds a file.
_MEMO_LIMIT = 4096
_memo: dict[tuple, tuple[bytes, object]] = {}


def _memoized(key: tuple, content: bytes, build: Callable[[], _T]) -> _T:
    """``build()``, or what it gave last time for ``key`` if ``content`` is unchanged since.
    A ConfigError is remembered too, and raised again (a new one) on each call."""
    hit = _memo.get(key)
    if hit is None or hit[0] != content:
        try:
            result: object = build()
        except ConfigError as exc:
            result = exc
        if len(_memo) >= _MEMO_LIMIT:  # a long test session's temporary configs
            _memo.clear()
        _memo[key] = hit = (content, result)
    if isinstance(hit[1], ConfigError):
        raise ConfigError(*hit[1].args)
    return hit[1]  # type: ignore[return-value]


def _compose(path: Path, text: str) -> tuple[yaml.Node | None, object]:
    """The YAML document's node tree and the value built from it, parsed once."""
    loader = YamlLoader(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValueError as exc:  # PyYAML's constructors: an unquoted impossible date, 2026-02-30
        raise ConfigError(
            f"{path}: not valid YAML: {exc} (an impossible date? write dates as quoted "
            '"YYYY-MM-DD")'
        ) from None
    finally:
        loader.dispose()


def _repeated_keys(root: yaml.Node | None, section: str) -> dict[str, list[int]]:
    """Keys given more than once in the top-level mapping ``section`` of a YAML document, with
    their line numbers: YAML itself keeps the last one and says nothing."""
    lines: dict[str, list[int]] = {}
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        if key.value == section and isinstance(value, yaml.MappingNode):
            for name, _ in value.value:
                lines.setdefault(str(name.value), []).append(name.start_mark.line + 1)
    return {k: v for k, v in lines.items() if len(v) > 1}


def load_regions_file(path: Path) -> RegionsFile:
    content = path.read_bytes()
    return _memoized(("regions", str(path)), content, lambda: _parse_regions(path, content))


def _parse_regions(path: Path, content: bytes) -> RegionsFile:
    root, data = _compose(path, content.decode("utf-8"))
    repeated = _repeated_keys(root, "regions")
    if repeated:
        raise ConfigError(
            f"{path}: invalid config for regions:\n"
            + "\n".join(
                f"  field `regions.{name}`: defined more than once (lines "
                f"{', '.join(map(str, lines))}); a region name is part of DAG ids "
                f"({naming.rollup_dag_id(name)}, {naming.scrape_dag_id('<site>', name)}), "
                "so each region is defined once"
                for name, lines in sorted(repeated.items())
            )
        )
    try:
        return RegionsFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, None, err)) from None


def load_regions(path: Path) -> dict[str, Region]:
    return load_regions_file(path).regions


def load_site(path: Path, regions: dict[str, Region], *, compile_selectors: bool = False) -> Site:
    """One site file. ``compile_selectors`` compiles every selector with lxml, as the crawl
    will (run time); without it the check is the cheap one fit for DAG parsing."""
    content = path.read_bytes()
    # The result depends on the file, the region names (no other part of regions.yaml), how
    # selectors are checked and the spider kinds registered.
    key = ("site", str(path), frozenset(regions), compile_selectors, tuple(KINDS.values()))
    return _memoized(key, content, lambda: _parse_site(path, content, regions, compile_selectors))


def _parse_site(
    path: Path, content: bytes, regions: dict[str, Region], compile_selectors: bool
) -> Site:
    site_name = path.stem
    _, data = _compose(path, content.decode("utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: site {site_name!r}: expected a mapping at the top level")
    if "name" in data and data["name"] != site_name:
        raise ConfigError(
            f"{path}: site {site_name!r}: field `name` is {data['name']!r} but must match "
            f"the file name {site_name!r}"
        )
    try:
        site = Site.model_validate(
            {**data, "name": site_name}, context={"compile_selectors": compile_selectors}
        )
    except ValidationError as err:
        raise ConfigError(
            _format_validation_error(path, site_name, err, named_by_file="name" not in data)
        ) from None
    unknown = [r for r in site.regions if r not in regions]
    if unknown:
        raise ConfigError(
            f"{path}: invalid config for site {site_name!r}:\n"
            f"  field `regions`: unknown region(s) {unknown}; "
            f"regions.yaml defines {sorted(regions)}"
        )
    return site


def _claim_dag_ids(site: Site, path: Path, owners: dict[str, Path]) -> None:
    """Record in ``owners`` the DAG ids ``site`` builds, from ``path``; ConfigError naming
    both files when another site's config already builds one of them (the first file keeps
    its DAGs). The naming rules make this impossible today; this check keeps it so."""
    built = {naming.scrape_dag_id(site.name, region): region for region in site.regions}
    clashes = [
        f"  field `regions`: region {region!r} gives DAG id {dag_id!r}, which "
        f"{owners[dag_id]} already gives; rename the site or the region"
        for dag_id, region in sorted(built.items())
        if dag_id in owners
    ]
    if clashes:
        raise ConfigError(f"{path}: invalid config for site {site.name!r}:\n" + "\n".join(clashes))
    owners.update(dict.fromkeys(built, path))


def load_project(
    config_dir: Path | None = None,
    *,
    only_site: str | None = None,
    keep: Callable[[str], bool] | None = None,
) -> Project:
    """Read every config file. Broken site files are collected in ``errors``, never raised,
    so one bad file cannot hide the other sites; a broken regions.yaml leaves no sites.

    ``only_site``: read regions.yaml and that site's file alone (a worker building the one
    DAG it runs); a site without a file gives a project without sites. ``keep``: read only
    the site files whose site name (the file's stem) it accepts (one shard of the scrape
    DAG files); the others are not opened."""
    config_dir = Path(config_dir or settings.config_dir())
    errors: dict[str, str] = {}
    try:
        regions_file = load_regions_file(config_dir / "regions.yaml")
    except (ConfigError, OSError) as exc:
        return Project(config_dir, {}, {}, {"regions.yaml": str(exc)})
    regions = regions_file.regions
    sites: dict[str, Site] = {}
    owners: dict[str, Path] = {}  # DAG id -> the site file it is built from
    if only_site is None:
        paths = sorted((config_dir / "sites").glob("*.yaml"))
        if keep is not None:
            paths = [p for p in paths if keep(p.stem)]
    else:
        paths = [p for p in [config_dir / "sites" / f"{only_site}.yaml"] if p.is_file()]
    for path in paths:
        try:
            site = load_site(path, regions)
            _claim_dag_ids(site, path, owners)
        except ConfigError as exc:
            errors[path.name] = str(exc)
        else:
            sites[path.stem] = site
    return Project(config_dir, regions, sites, errors, regions_file.rollups, regions_file.alerts)


def get_site(name: str, config_dir: Path | None = None) -> tuple[Site, dict[str, Region]]:
    """One site and the regions, raising ConfigError if that site is broken (used at run time)."""
    config_dir = Path(config_dir or settings.config_dir())
    regions = load_regions(config_dir / "regions.yaml")
    path = config_dir / "sites" / f"{name}.yaml"
    return load_site(path, regions, compile_selectors=True), regions
