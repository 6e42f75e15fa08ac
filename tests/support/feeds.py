"""Generated raw feeds in the spiders' item shape, with the dirt real boards have: padding,
currency symbols and codes, digit grouping, accounting negatives, and about 8% of records with a
malformed value. Deterministic for a seed; used by the transform tests and `make bench`."""

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


def lines(count: int, seed: int = 7) -> Iterator[str]:
    rng = random.Random(seed)
    for i in range(count):
        yield json.dumps(record(i, rng), ensure_ascii=False)


def write_feed(path: Path, count: int, seed: int = 7) -> Path:
    """``count`` records as JSON Lines at ``path``, written a line at a time."""
    with open(path, "w", encoding="utf-8") as out:
        for line in lines(count, seed):
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
