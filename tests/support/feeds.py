"""Generated raw feeds in the spiders' item shapes, with the dirt real sites have: padding,
currency symbols and codes, digit grouping, accounting negatives, JSON numbers, nulls, and about
8% of records with a malformed value. Three shapes (SHAPES): an HTML table (html_table), a JSON
API whose values are JSON numbers, booleans and nulls (json_api) and listing pages with a detail
page per record (listing_detail). Deterministic for a seed; used by the transform tests and
`make bench`."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

# A site with every field type.
SITE_YAML = """\
kind: html_table
base_url_conn_id: site_bench
start_urls: ["/quotes/{region}/{trading_date}"]
regions: [europe]
natural_key: [symbol]
html_table: {rows: "table tr"}
fields:
  symbol:     {type: text,     css: "td.symbol::text"}
  name:       {type: text,     css: "td.name::text", required: true}
  last_price: {type: decimal,  css: "td.last::text", required: true, measure: true}
  change:     {type: decimal,  css: "td.change::text", measure: true}
  change_pct: {type: decimal,  css: "td.pct::text", measure: true}
  volume:     {type: int,      css: "td.volume::text", measure: true}
  listed_on:  {type: date,     css: "td.listed::text"}
  quoted_at:  {type: datetime, css: "td.at::text"}
quality:
  max_reject_ratio: 0.5
  ranges:
    last_price: {min: 0.0001, max: 1000000}
    change_pct: {min: -100, max: 1000}
    volume: {min: 0}
"""

MALFORMED = [
    ("last_price", "n/a"),
    ("last_price", "1,5"),
    ("last_price", "12.3.4"),
    ("last_price", "1.2bn"),
    ("last_price", "  "),
    ("change", "—"),
    ("change_pct", "% Chg"),
    ("volume", "1.5"),
    ("volume", "12,34"),
    ("listed_on", "2019-02-30"),
    ("listed_on", "04/03/2019"),
    ("quoted_at", "2026-11-20T16:59:58"),
    ("name", ""),
]


def _price(rng: random.Random) -> str:
    value = rng.uniform(0.01, 25_000)
    text = f"{value:,.2f}" if rng.random() < 0.6 else f"{value:.{rng.choice((2, 3, 4))}f}"
    form = rng.random()
    if form < 0.35:
        return "$" + text
    if form < 0.5:
        return f"{rng.choice(('CHF', 'EUR', 'USD', 'kr'))} {text}"
    if form < 0.6:
        return f"{text} {rng.choice(('EUR', 'GBP', 'SEK'))}"
    if form < 0.7:
        return "€" + text
    if form < 0.75:
        return text.replace(",", " ")
    return text


def _change(rng: random.Random) -> str:
    value = f"{rng.uniform(0, 40):.2f}"
    form = rng.random()
    if form < 0.3:
        return f"({value})"
    if form < 0.55:
        return "+" + value
    if form < 0.8:
        return "-" + value
    if form < 0.85:
        return "0.00"
    return value


def record(i: int, rng: random.Random) -> dict[str, object]:
    pad = "\n      " if rng.random() < 0.3 else ""
    rec: dict[str, object] = {
        "symbol": f"{pad}S{i:07d}{pad}",
        "name": rng.choice(("Société", "Nestlé  SA", "Apple Inc.", '"Quoted", Ltd', "株式会社"))
        + f" {i}",
        "last_price": pad + _price(rng) + pad,
        "change": _change(rng),
        "change_pct": f"{rng.uniform(-9, 9):.2f}%"
        if rng.random() < 0.7
        else f"({rng.random():.2f}%)",
        "volume": f"{rng.randint(0, 10**9):,}"
        if rng.random() < 0.7
        else str(rng.randint(0, 10**6)),
        "listed_on": f"{rng.randint(1990, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "quoted_at": f"2026-11-20T16:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        + rng.choice(("+01:00", "+00:00", "-05:00", "+05:30")),
        "_url": f"http://127.0.0.1/quotes/europe/2026-11-20?page={i // 50 + 1}",
    }
    if rng.random() < 0.1:
        rec["change"] = None
    if rng.random() < 0.05:
        del rec["quoted_at"]
    if rng.random() < 0.08:
        field, bad = rng.choice(MALFORMED)
        rec[field] = bad
    return rec


# A JSON API of quotes (the demo fx API's shape) whose values arrive as JSON numbers, booleans
# and nulls; its key is S-numbered as the other shapes' are (repeat_feed renames them).
JSON_SITE_YAML = """\
kind: json_api
base_url_conn_id: site_bench_json
start_urls: ["/api/quotes/{region}/{trading_date}"]
regions: [europe]
natural_key: [pair]
json_api: {records: data.rates, pagination: none}
fields:
  pair:      {type: text,     path: pair}
  bid:       {type: decimal,  path: bid, required: true, measure: true}
  ask:       {type: decimal,  path: ask, required: true, measure: true}
  mid:       {type: decimal,  path: mid, measure: true}
  volume:    {type: int,      path: volume, measure: true}
  firm:      {type: boolean,  path: firm}
  quoted_at: {type: datetime, path: quoted_at, required: true}
  venue:     {type: text,     path: venue.name}
quality:
  max_reject_ratio: 0.5
  ranges:
    bid: {min: 0.000001, max: 100000}
    volume: {min: 0}
"""

JSON_MALFORMED = [
    ("bid", "N/A"),
    ("bid", None),
    ("ask", ""),
    ("volume", "1.5"),
    ("volume", 2.5),
    ("volume", 12345678901234567890123),
    ("firm", "maybe"),
    ("firm", 1),
    ("quoted_at", "not-a-date"),
    ("quoted_at", None),
]


def _json_number(value: float, places: int) -> str:
    """A JSON number token as an API writes it: positional, every place kept."""
    return f"{value:.{places}f}"


def json_record(i: int, rng: random.Random) -> str:
    """One quote as the JSON API's record comes into the feed: a JSON Lines line whose numbers
    are JSON numbers (written as the API sent them), booleans JSON booleans, gaps nulls."""
    mid = rng.uniform(0.05, 2_000)
    places = rng.choice((2, 4, 4, 6)) if mid >= 20 else rng.choice((4, 6))
    half = mid * rng.uniform(0.00003, 0.0004)
    rec: dict[str, object] = {
        "pair": json.dumps(f"S{i:07d}/{rng.choice(('USD', 'EUR', 'JPY', 'CHF'))}"),
        "bid": _json_number(mid - half, places),
        "ask": _json_number(mid + half, places),
        "mid": _json_number(mid, places + 1) if rng.random() < 0.9 else "null",
        "volume": str(rng.randint(1, 400) * 25_000) if rng.random() < 0.95 else "null",
        "firm": rng.choice(("true", "false", "null")),
        "quoted_at": json.dumps(
            f"2026-11-20T{rng.randint(8, 17):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d}{rng.choice(('+01:00', '+00:00', '-05:00', '+09:00'))}"
        ),
        "venue": json.dumps(rng.choice(("EBS", "Reuters Matching", "Currenex", "Hotspot")))
        if rng.random() < 0.9
        else "null",
        "_url": json.dumps(f"http://127.0.0.1/api/quotes/europe/2026-11-20?page={i // 50 + 1}"),
    }
    if rng.random() < 0.02:  # rarer shapes: -0, a long exact decimal, a whole decimal
        rec["mid"] = rng.choice(("-0", "-0.0", "12345678901234567890.123456789", "7"))
    if rng.random() < 0.08:
        field, bad = rng.choice(JSON_MALFORMED)
        rec[field] = json.dumps(bad)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in rec.items()) + "}"


# Listing pages whose rows link to one detail page per record (the funds' shape): every value
# text read by CSS, and each record's own page URL.
DETAIL_SITE_YAML = """\
kind: listing_detail
base_url_conn_id: site_bench_detail
start_urls: ["/funds/{region}/{trading_date}/?page=1"]
regions: [europe]
natural_key: [isin]
listing_detail:
  links: "ul.funds li.fund a::attr(href)"
  next_page: "a.next::attr(href)"
fields:
  isin:     {type: text,    css: "dd.isin::text"}
  name:     {type: text,    css: "h1.name::text", required: true}
  nav:      {type: decimal, css: "dd.nav::text", required: true, measure: true}
  currency: {type: text,    css: "dd.currency::text"}
  aum:      {type: int,     css: "dd.aum::text", measure: true}
  nav_date: {type: date,    css: "dd.nav-date::text", required: true}
  manager:  {type: text,    css: "dd.manager::text"}
quality:
  max_reject_ratio: 0.5
  ranges:
    nav: {min: 0.0001, max: 1000000}
    aum: {min: 0}
"""

DETAIL_MALFORMED = [
    ("nav", "n/a"),
    ("nav", "1,5"),
    ("aum", "1.2bn"),
    ("nav_date", "20/11/2026"),
    ("name", ""),
]


def detail_record(i: int, rng: random.Random) -> dict[str, object]:
    pad = "\n    " if rng.random() < 0.2 else ""
    rec: dict[str, object] = {
        "isin": f"S{i:07d}XX{rng.randint(0, 9)}",
        "name": f"{pad}{rng.choice(('Global Equity', 'Obligations  Euro', 'Asia Pacific'))} "
        f"Fund {i}{pad}",
        "nav": rng.choice(("", "€", "EUR ", "$")) + f"{rng.uniform(1, 5_000):,.4f}",
        "currency": rng.choice(("EUR", "USD", "GBP", "CHF")),
        "aum": f"{rng.randint(10**5, 10**10):,}",
        "nav_date": f"2026-11-{rng.randint(18, 20):02d}",
        "manager": rng.choice(("Amundi", "BlackRock", "Vanguard", "DWS", "Nordea", None)),
        "_url": f"http://127.0.0.1/funds/europe/2026-11-20/S{i:07d}",
    }
    if rec["manager"] is None:
        del rec["manager"]
    if rng.random() < 0.08:
        field, bad = rng.choice(DETAIL_MALFORMED)
        rec[field] = bad
    return rec


def lines(count: int, seed: int = 7, shape: str = "html_table") -> Iterator[str]:
    """``count`` records of ``shape`` (SHAPES), one JSON Lines line each."""
    rng = random.Random(seed)
    if shape == "json_api":
        for i in range(count):
            yield json_record(i, rng)
        return
    make = detail_record if shape == "listing_detail" else record
    for i in range(count):
        yield json.dumps(make(i, rng), ensure_ascii=False)


# Each shape's site (YAML), by kind.
SHAPES = {
    "html_table": SITE_YAML,
    "json_api": JSON_SITE_YAML,
    "listing_detail": DETAIL_SITE_YAML,
}


def write_feed(path: Path, count: int, seed: int = 7, shape: str = "html_table") -> Path:
    """``count`` records of ``shape`` as JSON Lines at ``path``, written a line at a time."""
    with open(path, "w", encoding="utf-8") as out:
        for line in lines(count, seed, shape):
            out.write(line + "\n")
    return path


def repeat_feed(source: Path, path: Path, times: int) -> Path:
    """``source`` (at most a million records) ``times`` over, its symbols renamed in each copy
    (S0... becomes A0..., B0..., ...) so that every key stays unique. Much faster than
    generating the records again."""
    with open(path, "wb") as out:
        for copy in range(times):
            with open(source, "rb") as src:
                while block := src.read(8 << 20):
                    block += src.readline()  # whole lines: no symbol cut in two
                    out.write(block.replace(b"S0", b"ABCDEFGHIJ"[copy : copy + 1] + b"0"))
    return path
