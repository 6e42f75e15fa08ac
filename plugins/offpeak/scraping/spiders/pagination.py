"""How a json_api crawl finds its next page: the styles of json_api.pagination, and Link headers."""

# Pure functions of a page (its URL, headers, decoded body, record count) and where it sits in
# its chain of pages: the spider (offpeak.scraping.spiders.JsonApiSpider) turns the answer into
# a request, a dead letter or the end. The crawl process imports this module, so it imports
# neither offpeak.config nor anything heavy.

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from w3lib.url import add_or_replace_parameter

# json_api.records for a response that is itself the list (offpeak.config.TOP_LEVEL).
TOP_LEVEL = "$"
# The dead letter causes of pagination (offpeak.crawl.verdict.CAUSES says them in words).
LOOP = "pagination_loop"
MAX_PAGES = "max_pages"
INCONSISTENT = "pagination"


def dig(data: Any, path: str) -> Any:
    """Follow a dotted path (``data.rates``, ``venue.name``, ``items.0.id``) or return None;
    ``$`` is ``data`` itself."""
    if path == TOP_LEVEL:
        return data
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


# ----------------------------------------------------------------------------- Link (RFC 8288)

# One link-value: <URI-Reference> followed by ;-separated link-params, each a token, optionally
# = a token or a quoted-string (RFC 8288 section 3, RFC 7230 quoted-string with \-escapes).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LINK = re.compile(r"\s*<([^>]*)>\s*")
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\*?\s*(?:=\s*({_QUOTED}|{_TOKEN}))?\s*")
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Link:
    """One link of a Link header: its target as written and its parameters (names lower case;
    a parameter given twice keeps its first value, as RFC 8288 section 3 asks for rel)."""

    target: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def rels(self) -> tuple[str, ...]:
        """The relation types, lower case: ``rel="next last"`` is two of them."""
        return tuple(self.params.get("rel", "").lower().split())


def parse_link_header(values: Iterable[str]) -> list[Link]:
    """Every link of one or more Link header field values, in order. A value that does not
    parse is skipped from the point it stops parsing (what came before it is kept): a server's
    malformed link never hides a well-formed one before it."""
    links: list[Link] = []
    for value in values:
        pos = 0
        while pos < len(value):
            found = _LINK.match(value, pos)
            if found is None:
                break
            target, pos = found[1].strip(), found.end()
            params: dict[str, str] = {}
            while (param := _PARAM.match(value, pos)) is not None:
                name, raw = param[1].lower(), param[2] or ""
                if raw.startswith('"'):
                    raw = _UNESCAPE.sub(r"\1", raw[1:-1])
                params.setdefault(name, raw)
                pos = param.end()
            links.append(Link(target, params))
            if pos < len(value) and value[pos] != ",":
                break  # garbage after a link: stop rather than guess where the next one starts
            pos += 1
    return links


def link_to(values: Iterable[str], rel: str, base_url: str) -> str | None:
    """The absolute URL of the first link whose relation types include ``rel`` (any case),
    resolved against ``base_url``; None when there is none."""
    for link in parse_link_header(values):
        if rel.lower() in link.rels:
            return urljoin(base_url, link.target)
    return None


# ----------------------------------------------------------------------------- next pages


@dataclass(frozen=True)
class Position:
    """Where a page sits in its chain (the pages that follow one start URL): ``index`` counts
    the pages fetched (1 for the start URL), ``number`` and ``offset`` are page_number's and
    offset's, ``read`` the records of the chain read before this page."""

    index: int = 1
    number: int | None = None
    offset: int | None = None
    read: int = 0

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> Position:
        return cls(**meta.get(META, {}))

    def as_meta(self) -> dict[str, Any]:
        return {META: {k: getattr(self, k) for k in ("index", "number", "offset", "read")}}


META = "offpeak_page"  # request meta key of a page's Position


@dataclass(frozen=True)
class Follow:
    """Fetch ``url`` next; ``speculative``: a 404 there is the end of the list."""

    url: str
    position: Position
    how: str  # what gave the URL, for messages: "the Link header's rel=\"next\"", ...
    speculative: bool = False


@dataclass(frozen=True)
class Problem:
    """The page's pagination data cannot be followed or contradicts itself."""

    cause: str
    reason: str


Step = Follow | Problem | None  # None: this page is the last


def _whole(value: Any) -> int | None:
    """A count as JSON gives it (an integer, an integral decimal, digits as text), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float | Decimal) and value == int(value) and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _scalar_text(value: Any) -> str | None:
    """A cursor or URL as text; None for something that is none (a dict, a list, a boolean)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return str(value)


def first_url(cfg: Mapping[str, Any], url: str) -> str:
    """A start URL as the style asks for it: offset sends its offset and limit from page one,
    so every page has the size the short-page rule expects."""
    if cfg["style"] == "offset":
        url = add_or_replace_parameter(url, cfg["offset_param"], str(cfg["base_offset"]))
        return add_or_replace_parameter(url, cfg["limit_param"], str(cfg["limit"]))
    return url


def next_step(
    cfg: Mapping[str, Any],
    url: str,
    data: Any,
    records: int,
    at: Position,
    header: Callable[[str], list[str]],
) -> Step:
    """What follows the page at ``url`` (decoded body ``data``, ``records`` records, position
    ``at`` in its chain; ``header(name)`` its header values) under json_api.pagination ``cfg``.
    ``max_pages`` and loops are the spider's to judge: it knows what was fetched."""
    style = cfg["style"]
    if style == "none":
        return None
    if style in ("page_number", "offset"):
        return _numbered(cfg, url, data, records, at)
    if style == "cursor":
        if cfg.get("cursor_header"):
            where = f"header {cfg['cursor_header']}"
            values = header(cfg["cursor_header"])
            value: Any = values[0] if values else None
        else:
            where = f"cursor_path {cfg['cursor_path']!r}"
            value = dig(data, cfg["cursor_path"])
        if value is None or value == "":
            return None
        cursor = _scalar_text(value)
        if cursor is None:
            return Problem(INCONSISTENT, f"the cursor at {where} of {url} is {value!r}, not a "
                           "text or number: the pages after it are not fetched")  # fmt: skip
        if not cursor:
            return None
        next_url = add_or_replace_parameter(url, cfg["cursor_param"], cursor)
        return Follow(next_url, Position(at.index + 1), f"the cursor at {where}")
    if style == "next_url":
        where = f"next_url_path {cfg['next_url_path']!r}"
        value = dig(data, cfg["next_url_path"])
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            return Problem(INCONSISTENT, f"{where} of {url} is {value!r}, not a URL: the pages "
                           "after it are not fetched")  # fmt: skip
        return Follow(urljoin(url, value.strip()), Position(at.index + 1), f"its {where}")
    if style == "link_header":
        rel = cfg["rel"]
        found = link_to(header("Link"), rel, url)
        how = f'its Link header\'s rel="{rel}"'
        return None if found is None else Follow(found, Position(at.index + 1), how)
    raise ValueError(f"unknown json_api pagination style {style!r}")


def _total(cfg: Mapping[str, Any], data: Any, url: str) -> tuple[str, int] | Problem | None:
    """``(key, count)`` of the page's total (``total_pages_path`` or ``total_items_path``)."""
    for key in ("total_pages_path", "total_items_path"):
        path = cfg.get(key)
        if path:
            value = dig(data, path)
            count = _whole(value)
            if count is None:
                return Problem(INCONSISTENT, f"{key} {path!r} of {url} is {value!r}, not a "
                               "whole number: the pages after it are not fetched")  # fmt: skip
            return key, count
    return None


def _start_number(cfg: Mapping[str, Any], url: str) -> int:
    """The start URL's page number: its ``page_param`` when it gives one, else ``base_page``."""
    given = parse_qs(urlsplit(url).query).get(cfg["page_param"], [""])[0]
    return int(given) if given.isdigit() else cfg["base_page"]


def _numbered(cfg: Mapping[str, Any], url: str, data: Any, records: int, at: Position) -> Step:
    """page_number and offset: the stop rule written in offpeak.config.PageNumber / Offset."""
    total = _total(cfg, data, url)
    if isinstance(total, Problem):
        return total
    read = at.read + records
    if cfg["style"] == "page_number":
        number = _start_number(cfg, url) if at.number is None else at.number
        done = f"page {number}"
    else:
        number = cfg["base_offset"] if at.offset is None else at.offset
        done = f"offset {number}"
    if total is not None:
        key, count = total
        if key == "total_pages_path":
            reached = number - cfg["base_page"] + 1 >= count
            want = f"{count} page(s)"
        else:
            reached = read >= count
            want = f"{count} record(s), {read} read"
        if reached:
            return None
        if records == 0:
            return Problem(INCONSISTENT, f"{url} ({done}) has no records but its {key} "
                           f"{cfg[key]!r} says {want}: the list ended early")  # fmt: skip
    elif records == 0:
        return None  # an empty page is the end
    elif cfg["style"] == "offset" and cfg["stop_after_short_page"] and records < cfg["limit"]:
        return None  # a short page is the last
    if cfg["style"] == "page_number":
        next_url = add_or_replace_parameter(url, cfg["page_param"], str(number + 1))
        speculative = total is None and cfg["stop_on_not_found"]
        how = f"{cfg['page_param']}={number + 1}"
        return Follow(next_url, Position(at.index + 1, number=number + 1, read=read), how,
                      speculative)  # fmt: skip
    offset = number + records
    next_url = add_or_replace_parameter(url, cfg["offset_param"], str(offset))
    next_url = add_or_replace_parameter(next_url, cfg["limit_param"], str(cfg["limit"]))
    how = f"{cfg['offset_param']}={offset}"
    return Follow(next_url, Position(at.index + 1, offset=offset, read=read), how)
