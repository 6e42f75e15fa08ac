"""The section of each spider kind: html_table, json_api (and its pagination), listing_detail."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from offpeak.config.common import _Strict
from offpeak.config.fields import _check_selector, _compiled_regex


class HtmlTable(_Strict):
    """Rows of an HTML table, one record per row, pages followed by a next link."""

    rows: str = Field(description="CSS selector of one table row.")
    next_page: str | None = Field(
        None, description="CSS selector of the next page's href; unset or empty: one page."
    )
    skip_rows: list[str] = Field(
        default_factory=list,
        description="CSS selectors of rows that are not data (a header of td cells, a totals "
        "footer, spacers); a skipped row is counted (offpeak/rows_skipped), never rejected.",
    )
    skip_text: str | None = Field(
        None,
        description="A regular expression searched in a row's whole text: a row it matches is "
        "not data (skipped, counted).",
    )
    header_row: str | None = Field(
        None,
        description="CSS selector of the header row the columns are read from, on every page "
        "(fields with `column`, and `header`). Unset: the first row of <th> cells in the table "
        "of the first data row.",
    )
    header: dict[Annotated[int, Field(ge=1)], str] = Field(
        default_factory=dict,
        description="Column number (1 = first, as :nth-child) -> the header text that column "
        "must have on every page; a page whose header differs is unreadable, naming the "
        "column that moved.",
    )

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
# module, has offpeak.scraping.spiders.pagination.TOP_LEVEL, held equal by
# tests/unit/test_pagination).
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

    style: Literal["none"] = Field(description="none: one page per start URL.")


class PageNumber(_Paged):
    """Pages numbered in a query parameter (``?page=2``), one after the other."""

    style: Literal["page_number"] = Field(description="page_number: ?page=2, ?page=3, ...")
    page_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = Field(
        "page", description="The query parameter of the page number."
    )
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

    style: Literal["offset"] = Field(description="offset: ?offset=50&limit=25, ...")
    limit: Annotated[int, Field(ge=1)] = Field(
        description="Records asked for per page (sent from the first page on); at most the "
        "API's own largest page size, or a page it shortens reads as the last one."
    )
    offset_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = Field(
        "offset", description="The query parameter of the offset."
    )
    limit_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = Field(
        "limit", description="The query parameter of the limit."
    )
    base_offset: Annotated[int, Field(ge=0)] = Field(
        0, description="The offset of the start URL's page when its URL does not give one."
    )
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

    style: Literal["cursor"] = Field(description="cursor: an opaque cursor sent back.")
    cursor_path: str | None = Field(None, description="Dotted path of the cursor in the body.")
    cursor_header: Annotated[str, Field(pattern=_HEADER)] | None = Field(
        None, description="Or the response header that holds the cursor (e.g. X-Next-Cursor)."
    )
    cursor_param: Annotated[str, Field(pattern=_QUERY_PARAM)] = Field(
        "cursor", description="The query parameter the cursor is sent back in."
    )

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

    style: Literal["next_url"] = Field(description="next_url: the next page's URL in the body.")
    next_url_path: str = Field(description="Dotted path of the next page's URL in the body.")

    @field_validator("next_url_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _dotted(value, top_ok=False)


class LinkHeader(_Paged):
    """The next page's URL in the response's ``Link`` header (RFC 8288), the link whose
    relation types include ``rel``; no such link ends the list."""

    style: Literal["link_header"] = Field(description="link_header: RFC 8288 Link header.")
    rel: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9.\-]*$")] = Field(
        "next", description="The relation type of the next page's link."
    )


Pagination = Annotated[
    NoPagination | PageNumber | Offset | Cursor | NextUrl | LinkHeader,
    Field(discriminator="style"),
]
# The keys and values of json_api before pagination became a mapping, still read: each goes
# into the mapping (offpeak.config.JsonApi._older_form).
_OLDER_KEYS = {"cursor": ("cursor_path", "cursor_param"), "page_number": ("page_param",)}
_BODY_PATHS = ("cursor_path", "next_url_path", "total_pages_path", "total_items_path")


class JsonApi(_Strict):
    """Where the records are in each response, and how the next page is found
    (docs/adding-a-site.md, "JSON APIs")."""

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
    """Listing pages that link to detail pages; one record per detail page."""

    links: str = Field(description="CSS selector of each detail page's href.")
    next_page: str | None = Field(
        None, description="CSS selector of the next listing page's href; unset or empty: one page."
    )

    @field_validator("links", "next_page")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_selector("css", value, info, empty_ok=info.field_name == "next_page")


# data_file: a file a site publishes (CSV or XML, maybe zipped or gzipped), read whole.
_CSV_ONLY = ("delimiter", "quotechar", "header_rows", "skip_lines", "comment", "skip_footer",
             "header", "melt")  # fmt: skip
_XML_ONLY = ("records", "namespaces")


class Melt(_Strict):
    """Wide to long, as ``pandas.melt`` reads a file with one instrument per column: each
    row becomes one record per value column, that column's header in ``var_name`` and its
    cell in ``value_name``."""

    id_columns: list[str] = Field(
        min_length=1,
        description="The columns every record keeps (the date column, ...), by header text.",
    )
    value_columns: list[str] = Field(
        default_factory=list,
        description="The columns melted, by header text. Empty (the default): every other "
        "column with a header (a column with an empty header, as a trailing comma makes, is "
        "not data).",
    )
    var_name: str = Field("variable", description="The column name holding a value's header.")
    value_name: str = Field("value", description="The column name holding the value itself.")
    missing_values: list[str] = Field(
        default_factory=lambda: ["", "N/A"],
        description="Cells that hold no value (compared after trimming whitespace).",
    )
    on_missing: Literal["skip", "reject"] = Field(
        "skip",
        description="skip: a missing cell gives no record (counted in offpeak/rows_skipped). "
        "reject: its record is kept with the cell as written, for the field's type and "
        "`required` to reject in the transform, naming the field.",
    )

    @model_validator(mode="after")
    def _names_apart(self) -> Melt:
        named = [self.var_name, self.value_name]
        clash = [n for n in named if n in self.id_columns or n in self.value_columns]
        if self.var_name == self.value_name or clash:
            raise ValueError(
                f"var_name {self.var_name!r} and value_name {self.value_name!r} must differ "
                "from each other and from the file's columns"
            )
        both = sorted(set(self.id_columns) & set(self.value_columns))
        if both:
            raise ValueError(f"column(s) {both} are in both id_columns and value_columns")
        return self


class DataFile(_Strict):
    """A data file a site publishes, read whole: CSV or XML, plain, zipped or gzipped
    (docs/adding-a-site.md, "Data files"). Fields find their value by ``column`` (CSV: the
    header text) or ``xpath`` (XML: relative to a record)."""

    format: Literal["csv", "xml"] = Field(description="csv or xml.")
    compression: Literal["auto", "none", "zip", "gzip"] = Field(
        "auto",
        description="auto (the default): zip or gzip by the file's first bytes, else none.",
    )
    member: str | None = Field(
        None,
        description="zip: the member to read, by its name in the archive. Unset: the archive's "
        "only member (an archive of several is refused, naming them).",
    )
    encoding: str = Field(
        "utf-8",
        description="The file's text encoding (Python codec name); a byte-order mark is "
        "always honoured and never part of the first column's name.",
    )
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = Field(
        ",", description='csv: the delimiter (one character; a tab as "\\t").'
    )
    quotechar: Annotated[str, Field(min_length=1, max_length=1)] = Field(
        '"', description="csv: the quote character."
    )
    header_rows: Annotated[int, Field(ge=1, le=10)] = Field(
        1,
        description="csv: rows that make the header; with more than one, a column's name is "
        "its non-empty header cells joined by one space.",
    )
    skip_lines: Annotated[int, Field(ge=0)] = Field(
        0, description="csv: lines before the header that are not part of the table (a title)."
    )
    comment: str | None = Field(
        None, description='csv: lines starting with this ("#") are skipped anywhere.'
    )
    skip_footer: Annotated[int, Field(ge=0)] = Field(
        0, description="csv: rows at the end that are not data (a total, a source note)."
    )
    header: dict[Annotated[int, Field(ge=1)], str] = Field(
        default_factory=dict,
        description="csv: column number (1 = first) -> the header text it must have; a file "
        "whose header differs is refused (dead letter columns_moved), naming the column.",
    )
    melt: Melt | None = Field(None, description="csv: wide to long (one row per value column).")
    records: str | None = Field(
        None, description="xml: XPath of one record (namespace prefixes from `namespaces`)."
    )
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="xml: prefix -> namespace URI, for every XPath."
    )
    date_field: str | None = Field(
        None,
        description="A date field of the site: a file holding many dates loads only the rows "
        "of the run's trading date (and the history_days before it). Unset: every row.",
    )
    history_days: Annotated[int, Field(ge=0, le=3660)] = Field(
        0,
        description="With date_field: also load the rows of this many calendar days before "
        "the trading date (a backfill of a year reads one cached download per run).",
    )

    @field_validator("encoding")
    @classmethod
    def _codec(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (a Python codec name)") from None
        return value

    @field_validator("records")
    @classmethod
    def _records_compile(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_selector("xpath", value, info, empty_ok=False)

    @model_validator(mode="before")
    @classmethod
    def _options_of_the_format(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        fmt = data.get("format")
        wrong = [k for k in (_XML_ONLY if fmt == "csv" else _CSV_ONLY) if k in data]
        if fmt in ("csv", "xml") and wrong:
            raise ValueError(f"{', '.join(wrong)} do(es) not apply to format {fmt!r}")
        if fmt == "xml" and not data.get("records"):
            raise ValueError("format xml needs `records`: the XPath of one record")
        return data

    def field_problems(self, fields: dict, compiled: bool = False) -> list[tuple[str, str]]:
        """The site's fields against this file: CSV fields by ``column``, XML ones by
        ``xpath`` (and negative_when a column or an XPath the same way), ``date_field`` a
        date field."""
        from offpeak.config.fields import _selector_error

        problems = []
        locator = "column" if self.format == "csv" else "xpath"
        for name, spec in fields.items():
            used = [k for k in ("css", "xpath", "column") if getattr(spec, k)]
            if spec.const is None and used != [locator]:
                problems.append((
                    f"fields.{name}",
                    f"a {self.format} data_file locates fields with `{locator}` (or `const`)",
                ))  # fmt: skip
            if spec.negative_when and self.format == "xml":
                error = _selector_error("xpath", spec.negative_when, compiled)
                if error:
                    problems.append((f"fields.{name}.negative_when", error))
        if self.date_field is not None:
            spec = fields.get(self.date_field)
            if spec is None or spec.type != "date":
                problems.append((
                    "data_file.date_field",
                    f"{self.date_field!r} is not a date field of the site",
                ))  # fmt: skip
        return problems
