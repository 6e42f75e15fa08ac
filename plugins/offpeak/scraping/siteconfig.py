"""The site config a crawl runs with: validated once by ScrapeOperator, then handed over."""

# ScrapeOperator validates the site (offpeak.config.get_site, selectors compiled) and passes
# the result to the crawl as JSON in OFFPEAK_SITE_CONFIG. The crawl reads it with the standard
# library: reading the YAML again would cost it ~0.25 s of start-up (building offpeak.config's
# pydantic models, parsing, the regions' trading calendars) for no new check.

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from offpeak.crawl import contract


@dataclass(frozen=True)
class Locator:
    """Where a field's value is (a CSS selector or an XPath in HTML, a dotted path in JSON, or
    a constant), and how its text is taken from what was found (offpeak.config.FieldSpec).
    ``type`` is the field's: a json field's JSON value travels in the feed as its exact JSON
    text (offpeak.jsonvalues)."""

    type: str = "text"
    css: str | None = None
    xpath: str | None = None
    path: str | None = None
    const: bool | str | int | float | None = None
    column: str | None = None  # html_table: the header text of the field's column
    join: str = " "
    re: str | None = None
    default: bool | str | int | float | None = None
    negative_when: str | None = None
    whitespace: str | None = None  # text: "collapse" or "keep"; None: the kind's default
    formats: tuple[str, ...] | list[str] = ()  # date, datetime: data_file reads date_field

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> Locator:
        return cls(**{k: spec[k] for k in cls.__dataclass_fields__ if k in spec})


@dataclass(frozen=True)
class CrawlSite:
    """What the spiders read of a site: its name, spider kind, start URL templates, field
    locators, and its kind's section (``html_table``, ``json_api`` or ``listing_detail``, with
    every setting of offpeak.config's model, defaults included)."""

    name: str
    kind: str
    start_urls: tuple[str, ...]
    fields: dict[str, Locator]
    section: SimpleNamespace
    browser: SimpleNamespace | None = None  # offpeak.config.Browser, when pages are rendered

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> CrawlSite:
        """From a validated site's ``model_dump(mode="json")``."""
        return cls(
            name=data["name"],
            kind=data["kind"],
            start_urls=tuple(data["start_urls"]),
            fields={name: Locator.from_config(spec) for name, spec in data["fields"].items()},
            section=SimpleNamespace(**data[data["kind"]]),
            browser=SimpleNamespace(**data["browser"]) if data.get("browser") else None,
        )


def crawl_site(name: str) -> CrawlSite:
    """The site ``name`` as ScrapeOperator validated and handed it over; without that (a
    ``scrapy crawl`` by hand) read and validated from its YAML file, where a broken file
    raises offpeak.config.ConfigError naming the file, the site and the field."""
    text = os.environ.get(contract.SITE_CONFIG_ENV)
    if not text:
        # Only here: a crawl handed its site never loads offpeak.config (pydantic, calendars).
        from offpeak.config import get_site

        return CrawlSite.from_config(get_site(name)[0].model_dump(mode="json"))
    data = json.loads(text)
    if data.get("name") != name:
        raise ValueError(
            f"{contract.SITE_CONFIG_ENV} holds the config of site {data.get('name')!r}, "
            f"not of site {name!r} that this crawl was asked for"
        )
    return CrawlSite.from_config(data)
