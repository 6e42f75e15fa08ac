"""The spider-kind registry: each kind's name, section model and spider class, in one entry."""

# A site names its kind (`kind: html_table`) and configures it in the top-level section of the
# same name. offpeak.config.sites builds Site's `kind` choices and one optional section field per
# entry from this registry, so a new kind is an entry here plus its spider class
# (docs/adding-a-spider-kind.md).

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Literal

from pydantic import BaseModel

from offpeak.config.sections import DataFile, HtmlTable, JsonApi, ListingDetail


@dataclass(frozen=True)
class SpiderKind:
    """One kind of spider a site can pick with ``kind:``.

    :param name: the value of ``kind:``, the name of the site's section, and the Scrapy name of
        the spider (``scrapy crawl <name>``)
    :param section: the pydantic model of the section (extra keys forbidden, frozen)
    :param spider: the spider class as ``"module:Class"``, imported only when asked for
        (:meth:`spider_class`): the config is read on every DAG parse, Scrapy is not
    :param page: what the spider reads: ``"html"`` (fields located by ``css`` / ``xpath``),
        ``"json"`` (fields located by a dotted ``path``) or ``"file"`` (the section's
        ``field_problems`` says how fields locate their value)
    :param columns: fields may locate a table cell by its header text (``column``)
    :param summary: one line for the config reference
    """

    name: str
    section: type[BaseModel]
    spider: str
    page: Literal["html", "json", "file"] = "html"
    columns: bool = False
    summary: str = ""

    def spider_class(self) -> type:
        """The spider class ``spider`` names (imports Scrapy)."""
        module, _, attr = self.spider.partition(":")
        return getattr(import_module(module), attr)


SPIDERS_MODULE = "offpeak.scraping.spiders"
BUILT_IN = (
    SpiderKind(
        "html_table",
        HtmlTable,
        f"{SPIDERS_MODULE}:HtmlTableSpider",
        columns=True,
        summary="(a) rows of an HTML table, pages followed by a next link",
    ),
    SpiderKind(
        "json_api",
        JsonApi,
        f"{SPIDERS_MODULE}:JsonApiSpider",
        page="json",
        summary="(b) records of a JSON API, pages followed as `pagination` says",
    ),
    SpiderKind(
        "listing_detail",
        ListingDetail,
        f"{SPIDERS_MODULE}:ListingDetailSpider",
        summary="(c) one record per detail page, linked from listing pages",
    ),
    SpiderKind(
        "data_file",
        DataFile,
        f"{SPIDERS_MODULE}:DataFileSpider",
        page="file",
        columns=True,
        summary="(d) rows of a CSV or records of an XML file, plain, zipped or gzipped",
    ),
)
# The registered kinds by name, in registration order (the order errors list them in).
KINDS: dict[str, SpiderKind] = {kind.name: kind for kind in BUILT_IN}
