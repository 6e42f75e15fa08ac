"""The site and region config: typed models, the spider-kind registry, and the loader."""

# The package's modules: common (what every model shares), regions (regions.yaml), fields
# (fields.<name> and its selector checks), sections (each kind's section), kinds (the registry),
# sites (a site file), loading (reading the folder), schema (the JSON Schemas and the docs'
# reference, generated). Everything else imports its names from here.

from __future__ import annotations

from offpeak.config.common import IDENTIFIER
from offpeak.config.fields import RESERVED_COLUMNS, FieldSpec, FieldType
from offpeak.config.kinds import KINDS, SpiderKind
from offpeak.config.loading import (
    ConfigError,
    Project,
    YamlDumper,
    YamlLoader,
    get_site,
    load_project,
    load_regions,
    load_regions_file,
    load_site,
)
from offpeak.config.regions import Alerts, OffPeakWindow, Region, RegionName, RegionsFile, Rollups
from offpeak.config.sections import (
    TOP_LEVEL,
    Cursor,
    HtmlTable,
    JsonApi,
    LinkHeader,
    ListingDetail,
    NextUrl,
    NoPagination,
    Offset,
    PageNumber,
    Pagination,
)
from offpeak.config.sites import (
    CircuitBreaker,
    DagSettings,
    Politeness,
    Quality,
    Range,
    Site,
    SiteName,
    register_kind,
    unregister_kind,
)

__all__ = [
    "IDENTIFIER",
    "KINDS",
    "RESERVED_COLUMNS",
    "TOP_LEVEL",
    "Alerts",
    "CircuitBreaker",
    "ConfigError",
    "Cursor",
    "DagSettings",
    "FieldSpec",
    "FieldType",
    "HtmlTable",
    "JsonApi",
    "LinkHeader",
    "ListingDetail",
    "NextUrl",
    "NoPagination",
    "OffPeakWindow",
    "Offset",
    "PageNumber",
    "Pagination",
    "Politeness",
    "Project",
    "Quality",
    "Range",
    "Region",
    "RegionName",
    "RegionsFile",
    "Rollups",
    "Site",
    "SiteName",
    "SpiderKind",
    "YamlDumper",
    "YamlLoader",
    "get_site",
    "load_project",
    "load_regions",
    "load_regions_file",
    "load_site",
    "register_kind",
    "unregister_kind",
]
