"""Typed models for regions.yaml and sites/*.yaml, and the loader that reports every error."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from offpeak import naming, settings

IDENTIFIER = r"^[a-z][a-z0-9_]{0,47}$"
_T = TypeVar("_T")


def _id_part(what: str) -> AfterValidator:
    """A validator for a name that becomes part of DAG ids (see offpeak.naming)."""
    # Looked up at each call, not bound here: a test may stand in for the rule.
    return AfterValidator(lambda value: naming.check_name(value, what))


# A site or region name: an identifier that is also part of DAG ids.
SiteName = Annotated[str, Field(pattern=IDENTIFIER), _id_part("site name")]
RegionName = Annotated[str, Field(pattern=IDENTIFIER), _id_part("region name")]
# Columns the warehouse adds to every site table; a site field may not shadow them.
RESERVED_COLUMNS = frozenset({"region", "trading_date", "run_id", "loaded_at", "source_url"})
FieldType = Literal["text", "int", "decimal", "date", "datetime", "boolean", "json"]
SpiderKind = Literal["html_table", "json_api", "listing_detail"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- regions


class OffPeakWindow(_Strict):
    """Local wall-clock window; ``end <= start`` means the window crosses midnight."""

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 18:30 as the base-60 integer 1110.
        if isinstance(value, int):
            raise ValueError('write times as quoted strings, e.g. "18:30"')
        return value

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        from offpeak.schedule.tradingtime import window_text

        return window_text(self.start, self.end)


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _dated_reasons(value: object, field: str) -> dict[date, str]:
    """``{"2026-01-15": "why"}`` (a date YAML read unquoted too) as {date: reason}, sorted;
    ValueError naming the entry at fault."""
    example = f'e.g. {field}: {{"2026-01-15": "municipal elections"}}'
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of quoted dates to the reason, {example}")
    days: dict[date, str] = {}
    for key, reason in value.items():
        if isinstance(key, datetime):
            raise ValueError(f"{key}: a date without a time, {example}")
        if isinstance(key, date):
            day = key
        elif isinstance(key, str) and _ISO_DAY.fullmatch(key.strip()):
            try:
                day = date.fromisoformat(key.strip())
            except ValueError as exc:
                raise ValueError(f"{key!r} is not a date: {exc}") from None
        else:
            raise ValueError(f"{key!r} is not a date in the form YYYY-MM-DD, {example}")
        if day in days:
            raise ValueError(f"{day} is listed twice")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{day}: give the reason as text after the date, {example}")
        days[day] = reason.strip()
    return dict(sorted(days.items()))


class Region(_Strict):
    name: str = ""
    timezone: str
    exchange: Annotated[str, Field(pattern=r"^[A-Z0-9]{4}$")]  # an ISO 10383 MIC
    off_peak: OffPeakWindow
    # Days the exchange calendar gets wrong, each with its reason: closed at short notice
    # (elections, mourning), or trading on a day the calendar closes (a special session).
    closures: dict[date, str] = Field(default_factory=dict)
    extra_sessions: dict[date, str] = Field(default_factory=dict)

    @field_validator("closures", "extra_sessions", mode="before")
    @classmethod
    def _dated(cls, value: object, info: ValidationInfo) -> dict[date, str]:
        return _dated_reasons(value, str(info.field_name))

    @field_validator("extra_sessions")
    @classmethod
    def _not_also_closed(cls, value: dict[date, str], info: ValidationInfo) -> dict[date, str]:
        both = sorted(set(value) & set(info.data.get("closures", {})))
        if both:
            raise ValueError(
                f"{', '.join(map(str, both))} also listed in closures: a day is either "
                "closed or trades; keep it in one of the two"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @field_validator("exchange")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        from offpeak.schedule.calendars import check_exchange

        return check_exchange(value)  # UnknownExchange is a ValueError: pydantic reports it


class Rollups(_Strict):
    """How rollup__<region> and rollup__global wait for their inputs."""

    # The sensors defer: the triggerer checks their upstream this often; no worker slot is held.
    poke_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    # true: a failed or timed-out input skips the rollup instead of failing it.
    soft_fail: bool = False
    # rollup__global runs this long after the last region's window of the date has closed
    # and waits at most global_timeout_minutes for the region rollups.
    global_delay_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 30
    global_timeout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 120


class Alerts(_Strict):
    """Where failures and missed deadlines are posted (Slack-compatible JSON)."""

    # An Airflow HTTP connection whose host is the webhook URL; without it no alert is sent.
    http_conn_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = "offpeak_alerts"
    # Alert when a scrape run has not finished this long after its off-peak window closed.
    deadline_grace_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 0


class RegionsFile(_Strict):
    regions: dict[RegionName, Region]
    rollups: Rollups = Rollups()
    alerts: Alerts = Alerts()

    @model_validator(mode="after")
    def _name_regions(self) -> RegionsFile:
        if naming.GLOBAL in self.regions:
            raise ValueError(
                f"region name {naming.GLOBAL!r} is reserved "
                f"({naming.rollup_dag_id(naming.GLOBAL)} spans all regions)"
            )
        for name, region in self.regions.items():
            object.__setattr__(region, "name", name)
        return self


# --------------------------------------------------------------------------- sites


@lru_cache(maxsize=1024)
def _selector_error(kind: Literal["css", "xpath"], expr: str, compiled: bool) -> str | None:
    """Why ``expr`` is not a valid parsel CSS selector or XPath, or None if it is.

    ``compiled``: compile it as the crawl will, CSS through parsel's translator (its
    pseudo-elements ``::text`` and ``::attr(name)`` allowed) and the XPath with lxml. Else a
    pure-Python check cheap enough for every DAG file parse (lxml and parsel cost ~140 ms to
    import): cssselect parses and translates the CSS, and an XPath's brackets and quotes must
    balance. Run time (``get_site``: each task and the crawl itself) always compiles.
    Cached: the config is read on every parse."""
    from cssselect import SelectorError

    what = "CSS selector" if kind == "css" else "XPath"
    try:
        if compiled:
            from lxml import etree
            from parsel.csstranslator import HTMLTranslator

            try:
                etree.XPath(HTMLTranslator().css_to_xpath(expr) if kind == "css" else expr)
            except etree.XPathError as exc:
                raise ValueError(str(exc)) from None
        elif kind == "css":
            _css_syntax(expr)
        else:
            _xpath_balanced(expr)
    except (SelectorError, ValueError) as exc:
        return f"invalid {what} {expr!r}: {exc}"
    return None


def _css_syntax(expr: str) -> None:
    """Parse and translate a CSS selector with cssselect alone; parsel's pseudo-elements."""
    from cssselect import ExpressionError, GenericTranslator, Selector, parse
    from cssselect.parser import FunctionalPseudoElement

    for selector in parse(expr):
        pseudo = selector.pseudo_element
        if isinstance(pseudo, FunctionalPseudoElement):
            if pseudo.name != "attr" or len(pseudo.arguments) != 1:
                raise ExpressionError(f"The functional pseudo-element ::{pseudo.name}() is unknown")
        elif pseudo not in (None, "text"):
            raise ExpressionError(f"The pseudo-element ::{pseudo} is unknown")
        GenericTranslator().selector_to_xpath(Selector(selector.parsed_tree))


def _xpath_balanced(expr: str) -> None:
    """Brackets, parentheses and quotes of an XPath balance (outside string literals)."""
    closing = {"(": ")", "[": "]"}
    stack: list[str] = []
    quote = None
    for char in expr:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in closing:
            stack.append(closing[char])
        elif char in ")]" and (not stack or stack.pop() != char):
            raise ValueError(f"unexpected {char!r}")
    if quote:
        raise ValueError(f"unclosed string literal {quote}")
    if stack:
        raise ValueError(f"unclosed {'(' if stack[-1] == ')' else '['!r}")
    if not expr.strip():
        raise ValueError("empty")


def _check_selector(
    kind: Literal["css", "xpath"],
    expr: str | None,
    info: ValidationInfo,
    *,
    empty_ok: bool = True,
) -> str | None:
    """Raise ValueError (pydantic reports it with the field's location) if ``expr`` does not
    compile. None, and "" where ``empty_ok`` (an empty next_page means none, an empty field
    locator counts as not given), are left to the model's own checks. The validation
    context's ``compile_selectors`` (load_site's) chooses lxml or the cheap parse-time check."""
    if expr or (expr is not None and not empty_ok):
        compiled = bool((info.context or {}).get("compile_selectors"))
        error = _selector_error(kind, expr, compiled)
        if error:
            raise ValueError(error)
    return expr


def _compiled_regex(value: str) -> re.Pattern:
    """``value`` compiled; ValueError naming it and the problem when it is no regex."""
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


class FieldSpec(_Strict):
    """One typed output field: where to find it on the page or in the JSON record, and how to
    take its value from what was found (README "Fields")."""

    type: FieldType
    css: str | None = None
    xpath: str | None = None
    path: str | None = None
    # A fixed value for every row (no locator): the board's currency, its market segment.
    const: bool | str | int | float | None = None  # bool first: YAML's true stays true
    # html_table: the text of the column's header cell; the field is that column's cell in
    # each row, the column found anew on every page (README "Tables: columns by header").
    column: str | None = None
    required: bool = False
    measure: bool = False
    # Several matches of the locator are joined by this (one space by default).
    join: str = " "
    # A regular expression searched in the located text; the field is its first group (the
    # whole match without a group), as Scrapy's re_first. No match: nothing found.
    re: str | None = None
    # The value when nothing was found (no match, a blank text or no regex match).
    default: bool | str | int | float | None = None
    # A CSS selector, matched in the row (or detail page): where it matches, the number is
    # negative (a board that shows the sign only as a class: <td class="chg nnum">1.20</td>).
    negative_when: str | None = None
    # date and datetime: the strptime formats the site prints, tried in order ("%b %d, %Y",
    # "%d.%m.%Y", "%m/%d/%y"); none: ISO 8601 only.
    formats: list[str] = Field(default_factory=list)
    # datetime: the zone of a time printed without an offset. "region" is the region's own
    # timezone (DST-correct); none: an offset is required.
    timezone: str | None = None
    # text: "collapse" turns each run of whitespace into one space and trims (what a browser
    # shows); "keep" stores the text exactly. Unset: keep on a json_api site, else collapse.
    whitespace: Literal["collapse", "keep"] | None = None
    # boolean: the texts read as true and as false, compared case-insensitively (a JSON
    # true/false is read as it is). Unset: true/yes and false/no.
    true_values: list[str] | None = None
    false_values: list[str] | None = None

    # An invalid selector would otherwise pass the config check and fail every crawl.
    @field_validator("css", "xpath", "negative_when")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_selector("css" if info.field_name != "xpath" else "xpath", value, info)

    @field_validator("re")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            compiled = _compiled_regex(value)
            if compiled.groups > 1:
                raise ValueError(
                    f"regular expression {value!r} has {compiled.groups} groups; the value is "
                    "its first group, so give one group, and (?:...) for the others"
                )
        return value

    @field_validator("formats")
    @classmethod
    def _formats(cls, formats: list[str]) -> list[str]:
        for fmt in formats:
            if "%" not in fmt:
                raise ValueError(f"format {fmt!r} has no strptime directive such as %Y or %d")
            if "%z" in fmt or "%Z" in fmt:
                raise ValueError(
                    f"format {fmt!r}: %z/%Z are not supported; read the offset in ISO form "
                    "or set `timezone`"
                )
        return formats

    @field_validator("true_values", "false_values", mode="before")
    @classmethod
    def _quoted_spellings(cls, values: object) -> object:
        # YAML 1.1 reads an unquoted yes, no, on, off, true or false as a boolean: which of
        # them was written is lost, so it is refused rather than guessed.
        if isinstance(values, list) and any(isinstance(v, bool) for v in values):
            raise ValueError(
                "quote yes, no, on, off, true and false here: YAML reads them unquoted as "
                'booleans, e.g. true_values: ["yes", "\u2713"]'
            )
        return values

    @field_validator("true_values", "false_values")
    @classmethod
    def _spellings(cls, values: list[str] | None) -> list[str] | None:
        if values is not None:
            if not values:
                raise ValueError('give at least one spelling, e.g. ["yes", "\u2713"]')
            blank = [v for v in values if not " ".join(v.split())]
            if blank:
                raise ValueError("a blank spelling is nothing found, not a boolean; remove it")
        return values

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and value != "region":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f'unknown IANA timezone {value!r} (or "region": the region\'s)'
                ) from None
        return value

    @model_validator(mode="after")
    def _one_locator(self) -> FieldSpec:
        given = [k for k in ("css", "xpath", "path", "column") if getattr(self, k)]
        given += ["const"] if self.const is not None else []
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of css, xpath, path, column or const (got {given or 'none'})"
            )
        if self.measure and self.type not in ("int", "decimal"):
            raise ValueError("measure: true needs type int or decimal")
        if self.negative_when and self.type not in ("int", "decimal"):
            raise ValueError("negative_when needs type int or decimal")
        if self.negative_when and not (self.css or self.xpath or self.column):
            raise ValueError("negative_when needs a css or xpath locator (it is matched there)")
        if self.formats and self.type not in ("date", "datetime"):
            raise ValueError("formats needs type date or datetime")
        if self.timezone and self.type != "datetime":
            raise ValueError("timezone needs type datetime")
        if self.whitespace and self.type != "text":
            raise ValueError(
                "whitespace needs type text (other types trim the whitespace around a value)"
            )
        given = [k for k in ("true_values", "false_values") if getattr(self, k) is not None]
        if given and self.type != "boolean":
            raise ValueError(f"{' and '.join(given)} need(s) type boolean")
        if self.type == "boolean":
            self._spellings_apart()
        if self.const is not None and (self.re or self.default is not None):
            raise ValueError("const is the value itself: re and default do not apply to it")
        return self

    def _spellings_apart(self) -> None:
        """A spelling in both lists (compared as the transform compares them: whitespace
        collapsed, case-insensitive) would make the value a guess."""
        from offpeak.pipeline.normalize import FALSE_VALUES, TRUE_VALUES

        def folded(values: list[str] | tuple[str, ...]) -> dict[str, str]:
            return {" ".join(v.split()).casefold(): v for v in values}

        true = folded(self.true_values or TRUE_VALUES)
        false = folded(self.false_values or FALSE_VALUES)
        both = sorted(true[k] for k in true.keys() & false.keys())
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} is read as both true and false (true_values "
                f"{list(true.values())}, false_values {list(false.values())}); "
                "give each spelling once"
            )


class HtmlTable(_Strict):
    rows: str = Field(description="CSS selector of one table row")
    next_page: str | None = Field(None, description="CSS selector of the next page's href")
    # Rows that are not data (a header made of td cells, a totals footer, spacers): CSS
    # selectors matched on the page, and a regular expression searched in a row's whole text.
    # A skipped row is counted (offpeak/rows_skipped), never rejected.
    skip_rows: list[str] = Field(default_factory=list)
    skip_text: str | None = None
    # The header row the columns are read from, on every page: fields with `column` find
    # their cell by its header text, and `header` checks columns located by position. Unset:
    # the first row of <th> cells in the table of the first data row.
    header_row: str | None = None
    # Column number (1 = first, as :nth-child) -> the header text that column must have on
    # every page; a page whose header differs is unreadable, naming the column that moved.
    header: dict[Annotated[int, Field(ge=1)], str] = Field(default_factory=dict)

    @field_validator("header_row")
    @classmethod
    def _header_row_compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_selector("css", value, info, empty_ok=False)

    @field_validator("header")
    @classmethod
    def _header_texts(cls, value: dict[int, str]) -> dict[int, str]:
        blank = [n for n, text in value.items() if not text.strip()]
        if blank:
            raise ValueError(f"column(s) {blank}: give the header text each must have")
        return value

    @field_validator("rows", "next_page")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_selector("css", value, info, empty_ok=info.field_name == "next_page")

    @field_validator("skip_rows")
    @classmethod
    def _skips_compile(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for value in values:
            _check_selector("css", value, info, empty_ok=False)
        return values

    @field_validator("skip_text")
    @classmethod
    def _skip_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            _compiled_regex(value)
        return value


# json_api: where the records are in a response, and how the next page is found.
# json_api.records for a response that is itself the list (the crawl, which does not import this
# module, has offpeak.scraping.pagination.TOP_LEVEL, held equal by tests/unit/test_pagination).
TOP_LEVEL = "$"
_JSON_STEP_HINT = "a dotted path such as data.items (list positions as numbers: items.0.rows)"


def _dotted(value: str, *, top_ok: bool) -> str:
    """A dotted path into a JSON document, ``$.`` prefix dropped; ``$`` (the document itself)
    where ``top_ok``. ValueError for what can never select anything: an empty step, JSONPath's
    brackets, wildcards, filters and recursive descent (one list is selected, never a union)."""
    if value == TOP_LEVEL:
        if top_ok:
            return value
        raise ValueError(f'"$" is the whole response, not a value in it; give {_JSON_STEP_HINT}')
    path = value.removeprefix("$.")
    if not path.strip():
        top = ', or "$" for a response that is itself the list' if top_ok else ""
        raise ValueError(f"the path is empty; give {_JSON_STEP_HINT}{top}")
    if path != path.strip():
        raise ValueError(f"{value!r} starts or ends with whitespace; give {_JSON_STEP_HINT}")
    if any(ch in path for ch in "[]*?@") or path.startswith("$"):
        raise ValueError(
            f"{value!r}: JSONPath brackets, wildcards and filters are not supported; give "
            f"{_JSON_STEP_HINT}"
        )
    if "" in path.split("."):
        raise ValueError(
            f"{value!r} has an empty step (a dot too many; JSONPath's recursive descent `..` is "
            f"not supported); give {_JSON_STEP_HINT}"
        )
    return path


_QUERY_PARAM = r"^[^\s&=#?]+$"  # a query parameter name the next page's URL is given
_HEADER = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"  # an HTTP field name (RFC 9110 token)


class _Paged(_Strict):
    """What every pagination style but ``none`` has: a page limit per start URL."""

    max_pages: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        1000,
        description="Most pages fetched from one start URL (the first included). A page past "
        "it that the API still offers is not fetched: the crawl is partial, with a dead letter "
        "(cause max_pages) naming the limit and the URL not fetched, unless on_max_pages is "
        "'complete'.",
    )
    on_max_pages: Literal["partial", "complete"] = Field(
        "partial",
        description="'partial' (default): reaching max_pages with more pages offered makes the "
        "crawl partial (its load deletes nothing). 'complete': the API is known to offer more "
        "pages than are wanted (a top-N list), so the cap is the end; counted in "
        "offpeak/pagination/capped and logged, never a dead letter.",
    )


class NoPagination(_Strict):
    """One page per start URL."""

    style: Literal["none"]


class PageNumber(_Paged):
    """Pages numbered in a query parameter (``?page=2``), one after the other."""

    style: Literal["page_number"]
    page_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = "page"
    base_page: Annotated[int, Field(ge=0)] = Field(
        1,
        description="The number of the start URL's page when its URL does not give page_param "
        "(0 for APIs that count from 0).",
    )
    total_pages_path: str | None = Field(
        None,
        description="Dotted path of the number of pages in the body: the crawl stops after "
        "that many pages; an empty page before them is a dead letter (cause pagination).",
    )
    total_items_path: str | None = Field(
        None,
        description="Dotted path of the number of records in the body: the crawl stops once it "
        "read that many; an empty page before them is a dead letter (cause pagination).",
    )
    stop_on_not_found: bool = Field(
        True,
        description="Without a total: a 404 for a page after the first is the end of the list "
        "(an empty page always is). false: such a 404 is an HTTP error and a dead letter.",
    )

    @field_validator("total_pages_path", "total_items_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _dotted(value, top_ok=False)

    @model_validator(mode="after")
    def _one_total(self) -> PageNumber:
        if self.total_pages_path and self.total_items_path:
            raise ValueError("give total_pages_path or total_items_path, not both")
        return self


class Offset(_Paged):
    """Records addressed by offset and limit in query parameters (``?offset=50&limit=25``)."""

    style: Literal["offset"]
    limit: Annotated[int, Field(ge=1)] = Field(
        description="Records asked for per page (sent from the first page on); at most the "
        "API's own largest page size, or a page it shortens reads as the last one."
    )
    offset_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = "offset"
    limit_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = "limit"
    base_offset: Annotated[int, Field(ge=0)] = 0
    total_items_path: str | None = Field(
        None,
        description="Dotted path of the number of records in the body: the crawl stops once it "
        "read that many (short pages do not stop it); an empty page before them is a dead "
        "letter (cause pagination).",
    )
    stop_after_short_page: bool = Field(
        True,
        description="Without a total: a page with fewer than `limit` records is the last (an "
        "empty page always is). false: only an empty page ends the list. The next offset is "
        "the last one plus the records the page held.",
    )

    @field_validator("total_items_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _dotted(value, top_ok=False)

    @model_validator(mode="after")
    def _two_params(self) -> Offset:
        if self.offset_param == self.limit_param:
            raise ValueError(f"offset_param and limit_param are both {self.limit_param!r}")
        return self


class Cursor(_Paged):
    """An opaque cursor from the body or a response header, sent back as a query parameter;
    no cursor (absent, null or "") ends the list."""

    style: Literal["cursor"]
    cursor_path: str | None = Field(None, description="Dotted path of the cursor in the body.")
    cursor_header: Annotated[str, Field(pattern=_HEADER)] | None = Field(
        None, description="Or the response header that holds the cursor (e.g. X-Next-Cursor)."
    )
    cursor_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = "cursor"

    @field_validator("cursor_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _dotted(value, top_ok=False)

    @model_validator(mode="after")
    def _one_source(self) -> Cursor:
        if bool(self.cursor_path) == bool(self.cursor_header):
            raise ValueError("give cursor_path (in the body) or cursor_header, exactly one")
        return self


class NextUrl(_Paged):
    """The next page's URL (absolute or relative to the page's) at a path in the body; none
    there (absent, null or "") ends the list."""

    style: Literal["next_url"]
    next_url_path: str

    @field_validator("next_url_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _dotted(value, top_ok=False)


class LinkHeader(_Paged):
    """The next page's URL in the response's ``Link`` header (RFC 8288), the link whose
    relation types include ``rel``; no such link ends the list."""

    style: Literal["link_header"]
    rel: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9.\-]*$")] = "next"


Pagination = Annotated[
    NoPagination | PageNumber | Offset | Cursor | NextUrl | LinkHeader,
    Field(discriminator="style"),
]
# The keys and values of json_api before pagination became a mapping, still read: each goes
# into the mapping (offpeak.config.JsonApi._older_form).
_OLDER_KEYS = {"cursor": ("cursor_path", "cursor_param"), "page_number": ("page_param",)}
_BODY_PATHS = ("cursor_path", "next_url_path", "total_pages_path", "total_items_path")


class JsonApi(_Strict):
    """Where the records are in each response, and how the next page is found (README
    "JSON APIs")."""

    records: str = Field(
        TOP_LEVEL,
        description='Dotted path of the list of records (data.items); "$" (the default) for a '
        "response that is itself the list.",
    )
    pagination: Pagination = Field(
        default_factory=lambda: Cursor(style="cursor", cursor_path="meta.next_cursor"),
        description="A style (none, page_number, offset, cursor, next_url, link_header) and its "
        "settings. Not given: a cursor at meta.next_cursor sent as `cursor`, the original "
        "default.",
    )

    @model_validator(mode="before")
    @classmethod
    def _older_form(cls, data: object) -> object:
        """``pagination: cursor | page | none`` with ``cursor_path``, ``cursor_param`` and
        ``page_param`` beside it, as the first json_api sites were written (and not given: a
        cursor at meta.next_cursor); any style's name alone is its mapping with defaults."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        older = {k: data.pop(k) for k in ("cursor_path", "cursor_param", "page_param") if k in data}
        paging = data.get("pagination", "cursor")
        if isinstance(paging, str):
            style = "page_number" if paging == "page" else paging
            known = _OLDER_KEYS.get(style, ())
            wrong = sorted(set(older) - set(known))
            if wrong:
                raise ValueError(
                    f"{', '.join(wrong)} do(es) not apply to pagination {paging!r}"
                    + (f" (it reads {', '.join(known)})" if known else "")
                )
            start = {"cursor_path": "meta.next_cursor"} if style == "cursor" else {}
            data["pagination"] = {"style": style, **start, **older}
        elif older:
            raise ValueError(f"move {', '.join(sorted(older))} into the pagination mapping")
        return data

    @field_validator("records")
    @classmethod
    def _records_path(cls, value: str) -> str:
        return _dotted(value, top_ok=True)

    @model_validator(mode="after")
    def _body_paths_exist(self) -> JsonApi:
        if self.records != TOP_LEVEL:
            return self
        for key in _BODY_PATHS:
            path = getattr(self.pagination, key, None)
            if path:
                raise ValueError(
                    f'records is "$": each response is the list of records itself, so it has '
                    f"no pagination.{key} {path!r}. Read the next page from a header "
                    "(style link_header, or cursor with cursor_header), or count pages without "
                    "a total; pagination not given is a cursor at meta.next_cursor"
                )
        return self


class ListingDetail(_Strict):
    links: str = Field(description="CSS selector of each detail page's href")
    next_page: str | None = None

    @field_validator("links", "next_page")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_selector("css", value, info, empty_ok=info.field_name == "next_page")


class Politeness(_Strict):
    robotstxt_obey: bool = True
    concurrent_requests_per_domain: Annotated[int, Field(ge=1, le=64)] = 4
    download_delay: Annotated[float, Field(ge=0)] = 0.0
    autothrottle: bool = True
    autothrottle_target_concurrency: Annotated[float, Field(gt=0)] = 4.0
    download_maxsize: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    closespider_timeout: Annotated[int, Field(ge=0)] = 1800
    user_agent: str = "offpeak-scraper (+data-engineering)"
    # Size of the Airflow pool site_<name>: at most this many crawls of the site run at once,
    # across its regions, scheduled runs and backfills (a crawl waiting for its window is not
    # counted).
    max_concurrent_crawls: Annotated[int, Field(ge=1, le=64)] = 2
    # Host names a crawl may fetch from besides the host of base_url_conn_id (a CDN, an API
    # host): each a bare lower-case host name or IPv4 address, no scheme, port or path.
    allowed_hosts: list[str] = Field(default_factory=list)
    # The longest Retry-After (429/503) a crawl waits for; a site asking longer ends the crawl
    # rather than holding its window and pool slot.
    max_retry_after_seconds: Annotated[int, Field(ge=0, le=86400)] = 60
    # How many times one request is retried after a 429/503 with Retry-After.
    max_retry_after_times: Annotated[int, Field(ge=0, le=20)] = 3

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

    min: float | None = None
    max: float | None = None

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

    max_reject_ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_items: Annotated[int, Field(ge=0)] = 1
    # A crawl still running when the off-peak window closes is stopped there; then the run
    # fails ("fail") or loads what was crawled, flagged incomplete in the audit ("partial").
    on_window_end: Literal["fail", "partial"] = "fail"
    # Field -> least share (0..1) of scraped items in which it has a non-empty value.
    min_field_coverage: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    # Scrapy's log_count/ERROR: spider exceptions, failed downloads after their retries.
    max_error_count: Annotated[int, Field(ge=0)] = 0
    # Responses with status >= 400 except 404 (a missing robots.txt, a page past the last),
    # retried ones included: a site that answered 503 before 200 is counted.
    max_http_errors: Annotated[int, Field(ge=0)] = 0
    # Scrapy finish reasons that count as a clean end (a window-end stop is judged by
    # on_window_end instead).
    finish_reasons: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["finished"]
    )
    # Largest |rows - previous trading day's rows| / previous rows of a loaded partition;
    # null switches the check off.
    row_count_tolerance: Annotated[float, Field(ge=0)] | None = 0.5
    # Numeric field -> inclusive {min, max} every loaded value must lie in.
    ranges: dict[str, Range] = Field(default_factory=dict)
    # Largest share of an existing partition's keys a complete load may delete (keys the new
    # crawl no longer has): a site that suddenly lists far fewer rows must not wipe the table.
    max_delete_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    # A load that would delete more: "fail" fails it (nothing changes), "warn" loads the new
    # rows without deleting anything and alerts.
    on_excess_delete: Literal["fail", "warn"] = "fail"


class CircuitBreaker(_Strict):
    """Stops crawling a site that keeps failing, so a broken or blocking site is not hammered
    by every region's runs; it closes again after the cooldown."""

    # Consecutive failed crawls of the site, in any region, that open the breaker (0: never).
    failures: Annotated[int, Field(ge=0, le=100)] = 3
    # How long an open breaker skips the site's crawls before it lets one through again.
    cooldown_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60


class DagSettings(_Strict):
    owner: str = "data-engineering"
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay_seconds: Annotated[int, Field(ge=1)] = 60
    max_retry_delay_seconds: Annotated[int, Field(ge=1)] = 1800
    catchup: bool = False
    # With catchup on, the scheduler catches up at most this many trading days.
    catchup_days: Annotated[int, Field(ge=1, le=366)] = 5
    max_active_runs: Annotated[int, Field(ge=1, le=16)] = 1
    # The scheduler pauses the DAG after this many failed runs in a row (0: never).
    max_consecutive_failed_runs: Annotated[int, Field(ge=0, le=100)] = 3


class Site(_Strict):
    name: SiteName
    description: str = ""
    kind: SpiderKind
    base_url_conn_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    start_urls: Annotated[list[str], Field(min_length=1)]
    regions: Annotated[list[str], Field(min_length=1)]
    natural_key: Annotated[list[str], Field(min_length=1)]
    fields: dict[Annotated[str, Field(pattern=IDENTIFIER)], FieldSpec]
    html_table: HtmlTable | None = None
    json_api: JsonApi | None = None
    listing_detail: ListingDetail | None = None
    politeness: Politeness = Politeness()
    quality: Quality = Quality()
    dag: DagSettings = DagSettings()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    # The Celery queue of the site's crawl (its scrape task): sites that need a worker of their
    # own (an egress address, a proxy, a licence) share a queue, and `airflow celery worker
    # --queues <name>` serves it. Transform and load stay on the default queue. Unset: default.
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None
    # Records of one crawl with the same natural key: "reject" every copy (a reason naming the
    # key and the pages it came from; the key's earlier row stays), or load only the "first"
    # or the "last" (in feed order); each is counted (load_audit.duplicate_keys) and logged.
    on_duplicate_key: Literal["reject", "first", "last"] = "reject"

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
    def _consistent(self) -> Site:
        section = getattr(self, self.kind)
        if section is None:
            raise ValueError(f"kind {self.kind!r} needs a {self.kind!r} section")
        others = [k for k in ("html_table", "json_api", "listing_detail") if k != self.kind]
        extra = [k for k in others if getattr(self, k) is not None]
        if extra:
            raise ValueError(f"kind {self.kind!r} does not use section(s) {extra}")
        shadowed = RESERVED_COLUMNS & set(self.fields)
        if shadowed:
            raise ValueError(f"field name(s) {sorted(shadowed)} are reserved warehouse columns")
        missing = [k for k in self.natural_key if k not in self.fields]
        if missing:
            raise ValueError(f"natural_key names unknown field(s) {missing}")
        as_json = [k for k in self.natural_key if self.fields[k].type == "json"]
        if as_json:
            raise ValueError(
                f"natural_key field(s) {as_json} are type json: jsonb compares values, not "
                "their text ({'a': 1, 'b': 2} equals {'b': 2, 'a': 1}), so a key of them cannot "
                "be checked for duplicates exactly; key on a text or number field instead"
            )
        for name, spec in self.fields.items():
            if self.kind == "json_api" and (spec.css or spec.xpath or spec.negative_when):
                raise ValueError(
                    f"fields.{name}: a json_api site locates fields with `path` (or `const`)"
                )
            if spec.column is not None and self.kind != "html_table":
                raise ValueError(
                    f"fields.{name}: `column` (a header text) locates a cell of an html_table"
                )
            if self.kind != "json_api" and spec.path is not None:
                raise ValueError(
                    f"fields.{name}: an HTML site locates fields with `css` or `xpath` (or `const`)"
                )
        return self

    @model_validator(mode="after")
    def _quality_fields_known(self) -> Site:
        for key in ("min_field_coverage", "ranges"):
            unknown = [f for f in getattr(self.quality, key) if f not in self.fields]
            if unknown:
                raise ValueError(
                    f"quality.{key} names unknown field(s) {unknown}; "
                    f"the site's fields are {sorted(self.fields)}"
                )
        not_numeric = [
            f for f in self.quality.ranges if self.fields[f].type not in ("int", "decimal")
        ]
        if not_numeric:
            raise ValueError(
                f"quality.ranges: field(s) {not_numeric} are not numeric; "
                "ranges apply to fields of type int or decimal"
            )
        return self

    def required_fields(self) -> set[str]:
        return {n for n, f in self.fields.items() if f.required} | set(self.natural_key)


# --------------------------------------------------------------------------- loading


class ConfigError(Exception):
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
    # The result depends on the file, the region names (no other part of regions.yaml) and
    # how selectors are checked.
    key = ("site", str(path), frozenset(regions), compile_selectors)
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


def load_project(config_dir: Path | None = None, *, only_site: str | None = None) -> Project:
    """Read every config file. Broken site files are collected in ``errors``, never raised,
    so one bad file cannot hide the other sites; a broken regions.yaml leaves no sites.

    ``only_site``: read regions.yaml and that site's file alone (a worker building the one
    DAG it runs); a site without a file gives a project without sites."""
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
