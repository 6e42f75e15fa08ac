"""json_api pagination without a crawl: the config's errors, Link headers (RFC 8288), and each
style's next page and stop rule (offpeak.scraping.spiders.pagination)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from offpeak import config
from offpeak.config import ConfigError, JsonApi, load_site
from offpeak.scraping.spiders import pagination
from offpeak.scraping.spiders.pagination import (
    Follow,
    Position,
    Problem,
    link_to,
    next_step,
    parse_link_header,
)

REGIONS = {"europe": None}
SITE = {
    "kind": "json_api",
    "base_url_conn_id": "site_paged",
    "start_urls": ["/api/paged/{region}"],
    "regions": ["europe"],
    "natural_key": ["code"],
    "fields": {"code": {"type": "text", "path": "code"}},
}


def site_error(tmp_path: Path, json_api: dict) -> str:
    path = tmp_path / "paged.yaml"
    path.write_text(yaml.safe_dump({**SITE, "json_api": json_api}))
    with pytest.raises(ConfigError) as caught:
        load_site(path, REGIONS)
    message = str(caught.value)
    assert str(path) in message and "site 'paged'" in message
    return message


def paging(json_api: dict) -> dict:
    """The pagination mapping as the crawl receives it (model_dump(mode="json"))."""
    return JsonApi.model_validate(json_api).model_dump(mode="json")["pagination"]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("json_api", "words"),
    [
        ({"records": "", "pagination": "none"}, ["json_api.records", "the path is empty", '"$"']),
        ({"records": "data..items", "pagination": "none"}, ["an empty step"]),
        ({"records": ".items", "pagination": "none"}, ["an empty step"]),
        ({"records": "data[0]", "pagination": "none"}, ["brackets", "items.0.rows"]),
        ({"records": "$..items", "pagination": "none"}, ["recursive descent `..` is not"]),
        ({"records": "data.*", "pagination": "none"}, ["wildcards"]),
        ({"records": " data", "pagination": "none"}, ["whitespace"]),
        # A response that is the list itself has no body path to read a next page from.
        (
            {"records": "$", "pagination": {"style": "next_url", "next_url_path": "next"}},
            ['records is "$"', "pagination.next_url_path 'next'", "link_header"],
        ),
        ({"records": "$"}, ["pagination.cursor_path 'meta.next_cursor'", "not given"]),
        (
            {"records": "d", "pagination": {"style": "offset"}},
            ["json_api.pagination.offset.limit", "Field required"],
        ),
        (
            {"records": "d", "pagination": {"style": "cursor"}},
            ["cursor_path (in the body) or cursor_header, exactly one"],
        ),
        (
            {
                "records": "d",
                "pagination": {"style": "cursor", "cursor_path": "n", "cursor_header": "X-Next"},
            },
            ["exactly one"],
        ),
        (
            {
                "records": "d",
                "pagination": {
                    "style": "page_number",
                    "total_pages_path": "a",
                    "total_items_path": "b",
                },
            },
            ["not both"],
        ),
        (
            {"records": "d", "pagination": {"style": "page_number", "limit": 5}},
            ["json_api.pagination.page_number.limit", "Extra inputs are not permitted"],
        ),
        (
            {
                "records": "d",
                "pagination": {
                    "style": "offset",
                    "limit": 5,
                    "limit_param": "o",
                    "offset_param": "o",
                },
            },
            ["offset_param and limit_param are both 'o'"],
        ),
        (
            {"records": "d", "pagination": {"style": "link_header", "max_pages": 0}},
            ["json_api.pagination.link_header.max_pages", "greater than or equal to 1"],
        ),
        ({"records": "d", "pagination": "scroll"}, ["json_api.pagination", "'scroll'"]),
        (
            {"records": "d", "pagination": {"style": "none", "max_pages": 3}},
            ["json_api.pagination.none.max_pages", "Extra inputs"],
        ),
        # The first form: its keys must fit the style they sit beside.
        (
            {"records": "d", "pagination": "page", "cursor_path": "next"},
            ["cursor_path do(es) not apply to pagination 'page'", "page_param"],
        ),
        (
            {
                "records": "d",
                "pagination": {"style": "cursor", "cursor_path": "n"},
                "cursor_param": "c",
            },
            ["move cursor_param into the pagination mapping"],
        ),
        (
            {
                "records": "d",
                "pagination": {"style": "cursor", "cursor_path": "n", "cursor_param": "a&b"},
            },
            ["json_api.pagination.cursor.cursor_param", "pattern"],
        ),
    ],
)
def test_a_json_api_that_can_never_work_is_a_config_error(tmp_path, json_api, words):
    message = site_error(tmp_path, json_api)
    for word in words:
        assert word in message, f"{word!r} not in:\n{message}"


def test_the_first_form_of_pagination_still_reads_as_before():
    older = {"records": "data.rates", "pagination": "cursor", "cursor_path": "meta.next_cursor",
             "cursor_param": "cursor"}  # fmt: skip
    assert paging(older) == paging({"records": "data.rates"}) == {
        "style": "cursor", "cursor_path": "meta.next_cursor", "cursor_header": None,
        "cursor_param": "cursor", "max_pages": 1000, "on_max_pages": "partial",
    }  # fmt: skip
    pages = paging({"records": "d", "pagination": "page", "page_param": "p"})
    assert (pages["style"], pages["page_param"], pages["base_page"]) == ("page_number", "p", 1)
    assert pages["stop_on_not_found"] is True
    assert paging({"records": "d", "pagination": "none"}) == {"style": "none"}


def test_records_at_the_top_level_or_a_jsonpath_style_dotted_path():
    assert JsonApi.model_validate({"pagination": "link_header"}).records == "$"
    assert JsonApi.model_validate({"records": "$", "pagination": "none"}).records == "$"
    assert JsonApi.model_validate({"records": "$.data.items", "pagination": "none"}).records == (
        "data.items"
    )
    # A cursor from a header, or page numbers without a total, work with a top-level list.
    JsonApi.model_validate(
        {"records": "$", "pagination": {"style": "cursor", "cursor_header": "X-Next-Cursor"}}
    )
    JsonApi.model_validate({"records": "$", "pagination": "page_number"})


def test_the_config_and_the_crawl_agree_on_the_top_level():
    assert config.TOP_LEVEL == pagination.TOP_LEVEL == "$"


def test_the_shipped_fx_rates_site_reads_a_cursor_from_the_body():
    shipped = Path(__file__).resolve().parents[2] / "include/config/sites/fx_rates.yaml"
    json_api = yaml.safe_load(shipped.read_text())["json_api"]
    assert paging(json_api)["style"] == "cursor"
    assert paging(json_api)["cursor_path"] == "meta.next_cursor"


# --------------------------------------------------------------------------- Link header

BASE = "https://api.example.com/v1/items?page=2"


def test_link_header_with_several_links_quoted_params_and_two_field_lines():
    values = [
        '<https://api.example.com/v1/items?page=1>; rel="first", '
        '<https://api.example.com/v1/items?page=9>; title="last, \\"final\\""; rel=last',
        '<?page=3>; type="application/json"; REL="Next nofollow"',
    ]
    links = parse_link_header(values)
    assert [link.target for link in links] == [
        "https://api.example.com/v1/items?page=1",
        "https://api.example.com/v1/items?page=9",
        "?page=3",
    ]
    # A comma and escaped quotes inside a quoted string belong to the value.
    assert links[1].params == {"title": 'last, "final"', "rel": "last"}
    assert links[2].rels == ("next", "nofollow")
    assert link_to(values, "next", BASE) == "https://api.example.com/v1/items?page=3"
    assert link_to(values, "last", BASE) == "https://api.example.com/v1/items?page=9"
    assert link_to(values, "prev", BASE) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Relative references resolve against the page's URL (RFC 3986).
        ('</v1/items?page=3>; rel="next"', "https://api.example.com/v1/items?page=3"),
        ("<items?page=3>; rel=next", "https://api.example.com/v1/items?page=3"),
        ("<//cdn.example.com/p3>; rel=next", "https://cdn.example.com/p3"),
        # rel is the first one given; other params may come first; spaces around = and ;.
        ('<p3> ; anchor="#x" ; rel = "next" ; rel="prev"', "https://api.example.com/v1/p3"),
        # "next-archive" is not "next"; a malformed link after a good one keeps the good one.
        ('<a>; rel="next-archive", <b>; rel="next"', "https://api.example.com/v1/b"),
        ('<b>; rel="next", garbage <c>; rel="next"', "https://api.example.com/v1/b"),
        ('<a>; rel="prev"', None),
        ("", None),
        ("not a link", None),
    ],
)
def test_link_header_next(value, expected):
    assert link_to([value], "next", BASE) == expected


# --------------------------------------------------------------------------- styles

PAGE_ONE = "https://api.example.com/items"


def step(json_api: dict, data, records: int, at: Position | None = None, headers=None):
    cfg = paging({"records": "items", **json_api})
    header = (headers or {}).get
    return next_step(cfg, PAGE_ONE, data, records, at or Position(), lambda n: header(n) or [])


def test_page_number_stops_at_an_empty_page_and_marks_404s_as_the_end():
    nxt = step({"pagination": "page_number"}, {}, 5)
    assert nxt == Follow(f"{PAGE_ONE}?page=2", Position(2, number=2, read=5), "page=2", True)
    assert step({"pagination": "page_number"}, {}, 0, nxt.position) is None
    # A start URL that gives its page number counts from there.
    started = next_step(paging({"records": "i", "pagination": "page_number"}),
                        f"{PAGE_ONE}?page=7&size=5", {}, 5, Position(), lambda n: [])  # fmt: skip
    assert started.url == f"{PAGE_ONE}?page=8&size=5"
    strict = {"pagination": {"style": "page_number", "stop_on_not_found": False}}
    assert step(strict, {}, 5).speculative is False


def test_page_number_with_a_total_stops_there_and_names_a_list_that_ends_early():
    by_pages = {"pagination": {"style": "page_number", "total_pages_path": "meta.pages"}}
    assert step(by_pages, {"meta": {"pages": 2}}, 5, Position(2, number=2)) is None
    nxt = step(by_pages, {"meta": {"pages": "3"}}, 5, Position(2, number=2, read=5))
    assert (nxt.url, nxt.speculative) == (f"{PAGE_ONE}?page=3", False)
    early = step(by_pages, {"meta": {"pages": 3}}, 0, Position(2, number=2))
    assert isinstance(early, Problem) and early.cause == "pagination"
    assert "has no records but its total_pages_path 'meta.pages' says 3 page(s)" in early.reason
    bad = step(by_pages, {"meta": {"pages": "many"}}, 5)
    assert "total_pages_path 'meta.pages' of https://api.example.com/items is 'many'" in bad.reason
    by_items = {"pagination": {"style": "page_number", "base_page": 0, "total_items_path": "n"}}
    assert step(by_items, {"n": 12}, 5).url == f"{PAGE_ONE}?page=1"
    assert step(by_items, {"n": 12}, 2, Position(3, number=2, read=10)) is None


def test_offset_advances_by_the_records_read_and_stops_on_a_short_page():
    offset = {"pagination": {"style": "offset", "limit": 5}}
    nxt = step(offset, {}, 5)
    assert nxt.url == f"{PAGE_ONE}?offset=5&limit=5"
    assert step(offset, {}, 4, nxt.position) is None
    # With a total, a short page (the API's own cap) does not end the list.
    capped = {"pagination": {"style": "offset", "limit": 20, "total_items_path": "count"}}
    nxt = step(capped, {"count": 23}, 10)
    assert (nxt.url, nxt.position.read) == (f"{PAGE_ONE}?offset=10&limit=20", 10)
    assert step(capped, {"count": 23}, 3, Position(3, offset=20, read=20)) is None


def test_cursor_from_the_body_or_a_header_and_next_urls():
    body = {"pagination": {"style": "cursor", "cursor_path": "meta.next"}}
    assert step(body, {"meta": {"next": "abc=="}}, 5).url == f"{PAGE_ONE}?cursor=abc%3D%3D"
    assert step(body, {"meta": {"next": ""}}, 5) is None
    assert step(body, {"meta": {}}, 5) is None
    assert "not a text or number" in step(body, {"meta": {"next": {"id": 1}}}, 5).reason
    header = {"pagination": {"style": "cursor", "cursor_header": "X-Next-Cursor",
                             "cursor_param": "after"}}  # fmt: skip
    nxt = step(header, {}, 5, headers={"X-Next-Cursor": ["c5"]})
    assert (nxt.url, nxt.how) == (f"{PAGE_ONE}?after=c5", "the cursor at header X-Next-Cursor")
    assert step(header, {}, 5) is None
    url = {"pagination": {"style": "next_url", "next_url_path": "links.next"}}
    assert step(url, {"links": {"next": "/items?after=5"}}, 5).url == (
        "https://api.example.com/items?after=5"
    )
    assert step(url, {"links": {"next": None}}, 5) is None
