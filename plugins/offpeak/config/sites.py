"""The model of a site file (sites/<name>.yaml): its kind's section, fields, quality, DAG."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo

from offpeak import naming
from offpeak.config.common import IDENTIFIER, FieldProblems, _id_part, _Strict
from offpeak.config.fields import RESERVED_COLUMNS, FieldSpec, _selector_error
from offpeak.config.kinds import KINDS, SpiderKind

# A site name: an identifier that is also part of DAG ids.
SiteName = Annotated[str, Field(pattern=IDENTIFIER), _id_part("site name")]


class Politeness(_Strict):
    """How hard a crawl may press the site: Scrapy's politeness settings, and the site's pool."""

    robotstxt_obey: bool = Field(True, description="Obey the site's robots.txt.")
    concurrent_requests_per_domain: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="Scrapy's CONCURRENT_REQUESTS_PER_DOMAIN."
    )
    download_delay: Annotated[float, Field(ge=0)] = Field(
        0.0, description="Seconds between requests to the site (Scrapy's DOWNLOAD_DELAY)."
    )
    autothrottle: bool = Field(True, description="Scrapy's AutoThrottle on.")
    autothrottle_target_concurrency: Annotated[float, Field(gt=0)] = Field(
        4.0, description="Scrapy's AUTOTHROTTLE_TARGET_CONCURRENCY."
    )
    download_maxsize: Annotated[int, Field(ge=1024)] = Field(
        10 * 1024 * 1024, description="Largest response in bytes (10 MiB)."
    )
    closespider_timeout: Annotated[int, Field(ge=0)] = Field(
        1800,
        description="Seconds a crawl may run (shorter when less of the window is left).",
    )
    user_agent: str = Field(
        "offpeak-scraper (+data-engineering)", description="The User-Agent header sent."
    )
    max_concurrent_crawls: Annotated[int, Field(ge=1, le=64)] = Field(
        2,
        description="Size of the Airflow pool site_<name>: at most this many crawls of the "
        "site run at once, across its regions, scheduled runs and backfills (a crawl waiting "
        "for its window is not counted).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names a crawl may fetch from besides the host of base_url_conn_id "
        "(a CDN, an API host): each a bare lower-case host name or IPv4 address, no scheme, "
        "port or path.",
    )
    max_retry_after_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        60,
        description="The longest Retry-After (429/503) a crawl waits for; a site asking "
        "longer ends the crawl rather than holding its window and pool slot.",
    )
    max_retry_after_times: Annotated[int, Field(ge=0, le=20)] = Field(
        3, description="How many times one request is retried after a 429/503 with Retry-After."
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _bare_hosts(cls, hosts: list[str]) -> list[str]:
        bad = [h for h in hosts if not re.fullmatch(r"[a-z0-9.-]+", h)]
        if bad:
            raise ValueError(
                f"allowed_hosts: {', '.join(map(repr, bad))} must be bare lower-case host "
                "names or IPv4 addresses (no scheme, port or path), e.g. 'cdn.example.com'"
            )
        return hosts


class Range(_Strict):
    """Inclusive bounds for a numeric field's loaded values; give min, max or both."""

    min: float | None = Field(None, description="Least value allowed.")
    max: float | None = Field(None, description="Greatest value allowed.")

    @model_validator(mode="after")
    def _bounded(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class Quality(_Strict):
    """Checks that fail a run: on the crawl's stats (offpeak.crawl.checks.check_crawl) and
    on the loaded partition, inside the load's transaction
    (offpeak.warehouse.checks.check_partition)."""

    max_reject_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.2, description="The transform fails the run when more of the records are rejected."
    )
    min_items: Annotated[int, Field(ge=0)] = Field(
        1, description="The scrape fails the run when it scraped fewer items."
    )
    on_window_end: Literal["fail", "partial"] = Field(
        "fail",
        description="A crawl still running when the off-peak window closes is stopped there; "
        'then the run fails ("fail") or loads what was crawled, deleting nothing, flagged '
        'incomplete in the audit ("partial").',
    )
    min_field_coverage: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="Field -> least share (0..1) of scraped items in which it has a "
        "non-empty value.",
    )
    max_error_count: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Most of Scrapy's log_count/ERROR: spider exceptions, failed downloads "
        "after their retries.",
    )
    max_http_errors: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Most responses with status >= 400 except 404 (a missing robots.txt, a "
        "page past the last), retried ones included: a site that answered 503 before 200 is "
        "counted.",
    )
    finish_reasons: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["finished"],
        description="Scrapy finish reasons that count as a clean end (a window-end stop is "
        "judged by on_window_end instead).",
    )
    row_count_tolerance: Annotated[float, Field(ge=0)] | None = Field(
        0.5,
        description="Largest |rows - previous trading day's rows| / previous rows of a loaded "
        "partition; null switches the check off.",
    )
    ranges: dict[str, Range] = Field(
        default_factory=dict,
        description="Numeric field -> inclusive {min, max} every loaded value must lie in.",
    )
    max_delete_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.1,
        description="Largest share of an existing partition's keys a complete load may delete "
        "(keys the new crawl no longer has): a site that suddenly lists far fewer rows must "
        "not wipe the table.",
    )
    on_excess_delete: Literal["fail", "warn"] = Field(
        "fail",
        description='A load that would delete more: "fail" fails it (nothing changes), "warn" '
        "loads the new rows without deleting anything and alerts.",
    )


class CircuitBreaker(_Strict):
    """Stops crawling a site that keeps failing, so a broken or blocking site is not hammered
    by every region's runs; it closes again after the cooldown."""

    failures: Annotated[int, Field(ge=0, le=100)] = Field(
        3,
        description="Consecutive failed crawls of the site, in any region, that open the "
        "breaker (0: never).",
    )
    cooldown_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = Field(
        60,
        description="How long an open breaker skips the site's crawls before it lets one "
        "through again.",
    )


BROWSER_KINDS = ("html_table", "listing_detail")


class Browser(_Strict):
    """Render the site's pages in headless Chromium before reading them (scrapy-playwright,
    with Debian's chromium: never a browser download), for pages whose rows a script writes.
    The same field options read the rendered page. A page that does not settle in time, or a
    browser that crashes, is a dead letter of cause ``browser``, and the crawl is partial."""

    pages: Literal["all", "listing", "detail"] = Field(
        "all",
        description='Which pages are rendered: "all", or for a listing_detail site only its '
        '"listing" or only its "detail" pages (the others are fetched plainly).',
    )
    wait_for: str | None = Field(
        None,
        description="A CSS selector the rendered page must show before it is read (its rows, "
        "or a mark its script adds when done). Unset: the page is read at wait_until.",
    )
    wait_until: Literal["load", "domcontentloaded", "networkidle"] = Field(
        "load",
        description="When navigation counts as done: the load event, DOMContentLoaded, or "
        '"networkidle" (no request for 500 ms).',
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        20, description="Seconds a page may take to load and show wait_for."
    )
    block: list[Literal["image", "font", "media", "stylesheet"]] = Field(
        ["image", "font", "media"],
        description="Resource types the browser does not load (faster, less memory, less load "
        "on the site).",
    )
    max_pages: Annotated[int, Field(ge=1, le=32)] = Field(
        4, description="Pages open at once in the crawl's browser: its memory's bound."
    )


class DagSettings(_Strict):
    """The settings of the site's scrape DAGs."""

    owner: str = Field("data-engineering", description="The DAGs' owner.")
    retries: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="Retries of a task whose failure may pass (a final one fails at once)."
    )
    retry_delay_seconds: Annotated[int, Field(ge=1)] = Field(
        60, description="The first retry's delay, doubling each try."
    )
    max_retry_delay_seconds: Annotated[int, Field(ge=1)] = Field(
        1800, description="The longest retry delay."
    )
    catchup: bool = Field(False, description="The scheduler runs missed trading days.")
    catchup_days: Annotated[int, Field(ge=1, le=366)] = Field(
        5, description="With catchup on, the scheduler catches up at most this many trading days."
    )
    max_active_runs: Annotated[int, Field(ge=1, le=16)] = Field(
        1, description="Runs of one DAG at once."
    )
    max_consecutive_failed_runs: Annotated[int, Field(ge=0, le=100)] = Field(
        3,
        description="The scheduler pauses the DAG after this many failed runs in a row (0: never).",
    )


class Site(_Strict):
    """A site file, sites/<name>.yaml: one scrape DAG per region it lists."""

    # Built once, by _sync_kinds, when the kinds' fields are in.
    model_config = ConfigDict(defer_build=True)

    name: SiteName = Field(description="The file's name; may be written only as that.")
    description: str = Field("", description="One line shown in the DAGs' descriptions.")
    # The registered kinds' names (offpeak.config.kinds), set by _sync_kinds, which also adds
    # the sections: one optional field per kind, named after it, after `fields`.
    kind: str = Field(description="The spider kind; its section (named after it) is required.")
    base_url_conn_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = Field(
        description="The Airflow connection of the site: its host is the base URL, its "
        "password the {api_key}."
    )
    start_urls: Annotated[list[str], Field(min_length=1)] = Field(
        description="URL templates relative to the base URL; {region}, {trading_date} and "
        "{api_key} are filled in."
    )
    regions: Annotated[list[str], Field(min_length=1)] = Field(
        description="The regions (of regions.yaml) crawled: one DAG each."
    )
    natural_key: Annotated[list[str], Field(min_length=1)] = Field(
        description="Field names that identify a record in a partition; always required."
    )
    fields: dict[Annotated[str, Field(pattern=IDENTIFIER)], FieldSpec] = Field(
        description="Field name -> where its value is and how it is read; the table's columns."
    )
    politeness: Politeness = Field(Politeness(), description=Politeness.__doc__)
    quality: Quality = Field(Quality(), description="Checks that fail a run.")
    dag: DagSettings = Field(DagSettings(), description=DagSettings.__doc__)
    circuit_breaker: CircuitBreaker = Field(
        CircuitBreaker(), description="Stops crawling a site that keeps failing."
    )
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = Field(
        None,
        description="The Celery queue of the site's crawl (its scrape task): sites that need a "
        "worker of their own (an egress address, a proxy, a licence) share a queue, served by "
        "`airflow celery worker --queues <name>`. Transform and load stay on the default "
        "queue. Unset: default.",
    )
    browser: Browser | None = Field(
        None, description=Browser.__doc__.split("\n\n")[0] + " html_table and listing_detail."
    )
    proxy_conn_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] | None = Field(
        None,
        description="An Airflow connection of the proxy every request of the site goes "
        "through (robots.txt included): its host and port, its login and password when it "
        "asks for them (in the connection only: masked in every log, never in a stored URL "
        "or XCom). A proxy that is down or refuses gives dead letters naming it. Unset: "
        "direct.",
    )
    resume: bool = Field(
        True,
        description="Keep the pages a crawl fetches on the data root while it runs "
        "(crawl-state/), so that a retry of a try that was killed or whose worker was lost "
        "reads them there instead of fetching them again, in the same off-peak window and "
        "with the same config; removed when the crawl ends. false: every try starts from the "
        "first page.",
    )
    on_duplicate_key: Literal["reject", "first", "last"] = Field(
        "reject",
        description='Records of one crawl with the same natural key: "reject" every copy (a '
        "reason naming the key and the pages it came from; the key's earlier row stays), or "
        'load only the "first" or the "last" (in feed order); each is counted '
        "(load_audit.duplicate_keys) and logged.",
    )

    @field_validator("start_urls")
    @classmethod
    def _templates_known(cls, urls: list[str]) -> list[str]:
        for url in urls:
            unknown = set(re.findall(r"{(\w+)}", url)) - {"region", "trading_date", "api_key"}
            if unknown:
                raise ValueError(
                    f"{url!r} uses unknown placeholder(s) {sorted(unknown)}; only {{region}}, "
                    "{trading_date} and {api_key} (the connection's password) are filled in"
                )
        return urls

    @field_validator("regions")
    @classmethod
    def _regions_once(cls, regions: list[str]) -> list[str]:
        twice = sorted({r for r in regions if regions.count(r) > 1})
        if twice:
            raise ValueError(
                f"region(s) {twice} listed more than once; each region of a site is one DAG "
                f"({naming.scrape_dag_id('<site>', '<region>')})"
            )
        return regions

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Site:
        """Every cross-field mistake at once, each on its own field (FieldProblems)."""
        compiled = bool((info.context or {}).get("compile_selectors"))
        problems = (
            self._section_problems() + self._field_problems(compiled) + self._quality_problems()
        )
        if problems:
            raise FieldProblems(problems)
        return self

    def _section_problems(self) -> list[tuple[str, str]]:
        problems = []
        if getattr(self, self.kind) is None:
            problems.append((self.kind, f"kind {self.kind!r} needs a {self.kind!r} section"))
        for other in (k for k in KINDS if k != self.kind):
            if getattr(self, other, None) is not None:
                problems.append((other, f"kind {self.kind!r} does not use this section"))
        if self.browser is not None:
            if self.kind not in BROWSER_KINDS:
                problems.append(("browser", f"kind {self.kind!r} reads no HTML a browser could "
                                 f"render; browser is for {', '.join(BROWSER_KINDS)}"))  # fmt: skip
            elif self.browser.pages != "all" and self.kind != "listing_detail":
                problems.append(("browser.pages", f"{self.browser.pages!r} is for listing_detail "
                                 'sites; this one has one kind of page: use "all"'))  # fmt: skip
        return problems

    def _field_problems(self, compiled: bool = False) -> list[tuple[str, str]]:
        kind, problems = KINDS[self.kind], []
        shadowed = RESERVED_COLUMNS & set(self.fields)
        if shadowed:
            problems.append(
                ("fields", f"field name(s) {sorted(shadowed)} are reserved warehouse columns")
            )
        missing = [k for k in self.natural_key if k not in self.fields]
        if missing:
            problems.append((
                "natural_key",
                f"names unknown field(s) {missing}; the site's fields are {sorted(self.fields)}",
            ))  # fmt: skip
        known = [k for k in self.natural_key if k in self.fields]
        as_json = [k for k in known if self.fields[k].type == "json"]
        if as_json:
            problems.append((
                "natural_key",
                f"field(s) {as_json} are type json: jsonb compares values, not their text "
                "({'a': 1, 'b': 2} equals {'b': 2, 'a': 1}), so a key of them cannot be checked "
                "for duplicates exactly; key on a text or number field instead",
            ))  # fmt: skip
        for name, spec in self.fields.items():
            if kind.page == "json" and (spec.css or spec.xpath or spec.negative_when):
                why = f"a {kind.name} site locates fields with `path` (or `const`)"
                problems.append((f"fields.{name}", why))
            if spec.column is not None and not kind.columns:
                why = "`column` (a header text) locates a cell of an html_table or a CSV data_file"
                problems.append((f"fields.{name}", why))
            if kind.page == "html" and spec.path is not None:
                why = "an HTML site locates fields with `css` or `xpath` (or `const`)"
                problems.append((f"fields.{name}", why))
            if kind.page == "html" and spec.negative_when:
                error = _selector_error("css", spec.negative_when, compiled)
                if error:
                    problems.append((f"fields.{name}.negative_when", error))
        section = getattr(self, self.kind, None)
        if kind.page == "file" and section is not None:  # the file's format says how
            problems += section.field_problems(self.fields, compiled)
        return problems

    def _quality_problems(self) -> list[tuple[str, str]]:
        problems = []
        for key in ("min_field_coverage", "ranges"):
            unknown = [f for f in getattr(self.quality, key) if f not in self.fields]
            if unknown:
                problems.append((
                    f"quality.{key}",
                    f"names unknown field(s) {unknown}; "
                    f"the site's fields are {sorted(self.fields)}",
                ))  # fmt: skip
        not_numeric = [
            f
            for f in self.quality.ranges
            if f in self.fields and self.fields[f].type not in ("int", "decimal")
        ]
        if not_numeric:
            problems.append((
                "quality.ranges",
                f"field(s) {not_numeric} are not numeric; ranges apply to fields of type int or "
                "decimal",
            ))  # fmt: skip
        return problems

    def required_fields(self) -> set[str]:
        return {n for n, f in self.fields.items() if f.required} | set(self.natural_key)


# The fields Site declares itself, in order; the kind sections go in after SECTIONS_AFTER.
_DECLARED = dict(Site.__pydantic_fields__)
SECTIONS_AFTER = "fields"


def _section_description(kind: SpiderKind) -> str:
    return f"The {kind.name} section" + (f": {kind.summary}." if kind.summary else ".")


def _sync_kinds() -> None:
    """Make Site's ``kind`` the registered kinds' names and give it one optional section per
    kind, named after it (the YAML format: a site's top-level section named after its kind)."""
    names = tuple(KINDS)
    synced: dict[str, FieldInfo] = {}
    for key, info in _DECLARED.items():
        if key == "kind":
            info = FieldInfo.from_annotated_attribute(
                Literal[names],  # type: ignore[valid-type]
                Field(description=info.description),
            )
        synced[key] = info
        if key == SECTIONS_AFTER:
            for kind in KINDS.values():
                synced[kind.name] = FieldInfo.from_annotated_attribute(
                    kind.section | None,  # type: ignore[operator]
                    Field(None, description=_section_description(kind)),
                )
    Site.__pydantic_fields__ = synced
    Site.model_rebuild(force=True)


def register_kind(kind: SpiderKind) -> SpiderKind:
    """Add ``kind`` to the registry (replacing one of the same name) and to Site; the config
    files read from here on may use it. Returns ``kind``."""
    if kind.name in _DECLARED or not re.fullmatch(IDENTIFIER, kind.name):
        raise ValueError(
            f"spider kind {kind.name!r}: a kind's name is its section's key in a site file, so "
            f"an identifier that is no other key ({', '.join(_DECLARED)})"
        )
    KINDS[kind.name] = kind
    _sync_kinds()
    return kind


def unregister_kind(name: str) -> None:
    """Remove the kind ``name`` (a test's toy kind) from the registry and from Site."""
    del KINDS[name]
    _sync_kinds()


_sync_kinds()
