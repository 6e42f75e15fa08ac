"""Deterministic local web server imitating three messy data sites (equities, fx, funds)."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import html
import json
import math
import random
import re
import signal
import socket
import string
import struct
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

# --------------------------------------------------------------------------------------------
# Sizes (public so tests and docs can refer to them)
# --------------------------------------------------------------------------------------------
EQUITY_PAGES = 5
EQUITY_ROWS_PER_PAGE = 20
EQUITY_MALFORMED_PER_PAGE = 2
EQUITY_MALFORMED_KINDS = ("last_na", "last_dash", "empty_symbol", "change_abc")

FX_TOTAL = 60
FX_PAGE_SIZE = 25
FX_MALFORMED_KINDS = ("bid_empty", "bid_na", "quoted_at_invalid")

FUND_PAGES = 3
FUNDS_PER_PAGE = 10
FUND_TOTAL = FUND_PAGES * FUNDS_PER_PAGE
FUND_MALFORMED_KINDS = ("nav_em_dash", "isin_empty")

REGION_RE = re.compile(r"[a-z_]+")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

NAME_BASES = (
    "Société Générale",
    "Nestlé",
    "Müller AG",
    "Ørsted",
    "São Paulo Holdings",
    "株式会社トヨタ",
    "Zürich Insurance",
    "Škoda Works",
    "Çelik Holding",
    "Łódź Energy",
    "Göteborg Shipping",
    "Café Olé Foods",
    "Ñandú Mining",
    "Årdal Aluminium",
    "Kraków Rail",
    "Reykjavík Geothermal",
    "Dvořák Instruments",
    "İstanbul Textiles",
    "Ελληνική Τράπεζα",
    "Москва Телеком",
    "삼성 Heavy",
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Pharma",
    "Procter & Sons",
    "Northwind Traders",
    "Blue Harbor Capital",
    "Pacific Rim Logistics",
    "Granite Peak Resources",
    "Silverline Telecom",
    "Evergreen Utilities",
    "Redwood Semiconductor",
    "Atlas Steel",
    "Meridian Health",
    "Orion Aerospace",
)
NAME_SUFFIXES = (
    "",
    "",
    "",
    " Group",
    " Holdings",
    " SA",
    " plc",
    " Inc.",
    " Ltd",
    " & Co",
)

KNOWN_REGION_CURRENCY = {
    "americas": "$",
    "europe": "€",
    "asia_pacific": "¥",
    "oceania": "A$",
    "india": "₹",
}
CURRENCY_SYMBOLS = ("$", "€", "£", "¥", "₹", "A$", "C$", "HK$", "CHF ", "kr ")

# Value of one unit of each currency in USD (rough, only used to keep rates realistic).
FX_USD_VALUE = {
    "EUR": 1.08,
    "GBP": 1.27,
    "AUD": 0.66,
    "NZD": 0.61,
    "USD": 1.0,
    "CAD": 0.74,
    "CHF": 1.13,
    "SGD": 0.74,
    "HKD": 0.128,
    "CNY": 0.138,
    "SEK": 0.095,
    "NOK": 0.093,
    "DKK": 0.145,
    "PLN": 0.25,
    "ILS": 0.27,
    "BRL": 0.20,
    "ZAR": 0.054,
    "MXN": 0.058,
    "TRY": 0.031,
    "THB": 0.028,
    "CZK": 0.043,
    "INR": 0.012,
    "JPY": 0.0067,
    "HUF": 0.0027,
    "KRW": 0.00075,
}
FX_ORDER = tuple(FX_USD_VALUE)  # earlier currency is the base of a pair
FX_VENUES = (
    ("Zürich FX", "ZFX"),
    ("São Paulo Câmbio", "SPC"),
    ("Tōkyō Forex", "TKF"),
    ("London Spot", "LSP"),
    ("New York Interbank", "NYI"),
    ("Mumbai Rupee Exchange", "MRX"),
    ("Stockholms Valutabörs", "SVB"),
    ("Singapore FX Hub", "SGH"),
)
FX_OFFSETS = ("+00:00", "+01:00", "-05:00", "+05:30", "+09:00")

FUND_STRATEGIES = (
    "Global Equity",
    "Euro Bond",
    "Emerging Markets",
    "Dividend Income",
    "Small Cap Growth",
    "Green Transition",
    "Short Duration",
    "Multi-Asset Balanced",
    "Technology Leaders",
    "Infrastructure",
)
FUND_CURRENCIES = {
    "EUR": "€",
    "USD": "$",
    "GBP": "£",
    "CHF": "CHF ",
    "JPY": "¥",
    "SEK": "kr ",
}
ISIN_ALPHABET = "0123456789" * 3 + "ABCDEFGHJKLMNPQRSTUVWXYZ"  # digit-heavy
ISIN_COUNTRIES = ("LU", "IE", "FR", "DE", "GB", "US", "JP", "CH")
MANAGERS = (
    "José Álvarez",
    "Zoë Brontë",
    "Søren Kierkegaard",
    "Ana Đurić",
    "François Dupré",
    "Jürgen Weiß",
    "山田 太郎",
    "Łukasz Wiśniewski",
    "Mary Smith",
    "John O'Neil",
    "Priya Raghunathan",
    "Chloé Lefèvre",
)


# --------------------------------------------------------------------------------------------
# Deterministic helpers
# --------------------------------------------------------------------------------------------
def rng_for(*parts: object) -> random.Random:
    """A Random seeded only by the given key parts (joined with '|')."""
    key = "|".join(str(p) for p in parts)
    digest = hashlib.sha256(key.encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def short_hash(*parts: object, length: int = 8) -> str:
    key = "|".join(str(p) for p in parts)
    return hashlib.sha256(key.encode()).hexdigest()[:length]


def _distinct_names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = rng.choice(NAME_BASES) + rng.choice(NAME_SUFFIXES)
        if name in seen:
            n = 2
            while f"{name} {n}" in seen:
                n += 1
            name = f"{name} {n}"
        seen.add(name)
        names.append(name)
    return names


def region_currency_symbol(region: str) -> str:
    if region in KNOWN_REGION_CURRENCY:
        return KNOWN_REGION_CURRENCY[region]
    return rng_for("equities", "currency", region).choice(CURRENCY_SYMBOLS)


def _money(symbol: str, value: float, decimals: int = 2) -> str:
    if symbol == "¥":
        return f"¥{round(value):,}"
    return f"{symbol}{value:,.{decimals}f}"


# --------------------------------------------------------------------------------------------
# Equities
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def equities_universe(region: str) -> tuple[tuple[str, str, float, str], ...]:
    """(symbol, name, base_price, listed) for the region's 100 instruments; stable across dates."""
    rng = rng_for("equities", "universe", region)
    total = EQUITY_PAGES * EQUITY_ROWS_PER_PAGE
    symbols: list[str] = []
    seen: set[str] = set()
    while len(symbols) < total:
        length = rng.randint(3, 5)
        sym = "".join(rng.choice(string.ascii_uppercase) for _ in range(length))
        if sym not in seen:
            seen.add(sym)
            symbols.append(sym)
    names = _distinct_names(rng, total)
    lo, hi = math.log(0.6), math.log(20000)
    out = []
    for sym, name in zip(symbols, names, strict=True):
        base = math.exp(rng.uniform(lo, hi))
        listed = dt.date(1980, 1, 1) + dt.timedelta(days=rng.randint(0, 14975))
        out.append((sym, name, base, listed.isoformat()))
    return tuple(out)


def equities_malformed(region: str, date: str, page: int) -> dict[int, str]:
    """Row index on the page (0-based) -> malformation kind; exactly 2 per page."""
    rng = rng_for("equities", "malformed", region, date, page)
    rows = rng.sample(range(EQUITY_ROWS_PER_PAGE), EQUITY_MALFORMED_PER_PAGE)
    return {row: rng.choice(EQUITY_MALFORMED_KINDS) for row in rows}


EQUITY_TABLE_HEAD = (
    '<table id="quotes"><thead><tr><th>Symbol</th><th>Name</th><th>Last</th><th>Change</th>'
    "<th>Change %</th><th>Volume</th><th>Listed</th></tr></thead><tbody>\n"
)


def _signed(value: float, accounting: bool, suffix: str = "") -> str:
    text = f"{abs(value):,.2f}{suffix}"
    if text.strip("0.,%") == "":
        return text
    if value < 0:
        return f"({text})" if accounting else f"-{text}"
    return f"+{text}" if not accounting else text


def _pad(rng: random.Random, text: str, prob: float) -> str:
    if rng.random() < prob:
        return rng.choice(("\n  {}  \n", " {} ", "\n{}\n", "\t{}")).format(text)
    return text


def render_equities(
    region: str, date: str, page: int, next_prefix: str = "", na_rows: int = 0
) -> str:
    """One quotes page; next_prefix goes before the next link's path, na_rows forces `n/a` prices.

    The defaults give the normal page; fault routes pass the others.
    """
    rng = rng_for("equities", region, date, page)
    symbol = region_currency_symbol(region)
    malformed = equities_malformed(region, date, page)
    start = (page - 1) * EQUITY_ROWS_PER_PAGE
    universe = equities_universe(region)[start : start + EQUITY_ROWS_PER_PAGE]
    title = f"Quotes {html.escape(region)} {date}"
    parts = [
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">',
        f"<title>{title}</title></head><body>\n<h1>{title} — page {page} of {EQUITY_PAGES}</h1>\n",
        EQUITY_TABLE_HEAD,
    ]
    for i, (sym, name, base, listed) in enumerate(universe):
        last = min(25000.0, max(0.5, base * math.exp(rng.gauss(0.0, 0.03))))
        if symbol == "¥":
            last = max(1.0, float(round(last)))
        pct = 0.0 if rng.random() < 0.05 else max(-0.2, min(0.2, rng.gauss(0.0, 0.02)))
        change = last - last / (1.0 + pct)
        accounting = rng.random() < 0.4
        change_s = _signed(change, accounting)
        pct_s = _signed(pct * 100.0, accounting, "%")
        volume_s = "" if rng.random() < 0.06 else f"{rng.randint(100, 25_000_000):,}"
        last_s = _money(symbol, last)
        sym_s = sym
        kind = malformed.get(i)
        if kind == "last_na":
            last_s = "n/a"
        elif kind == "last_dash":
            last_s = "--"
        elif kind == "empty_symbol":
            sym_s = ""
        elif kind == "change_abc":
            change_s = "abc"
        if i < na_rows:
            # The record is rejected but its key stays readable (a blanked symbol is restored).
            last_s, sym_s = "n/a", sym
        name_s = _pad(rng, html.escape(name, quote=False), 0.2)
        last_s = _pad(rng, html.escape(last_s, quote=False), 0.1)
        volume_s = _pad(rng, volume_s, 0.05) if volume_s else ""
        parts.append(
            f'<tr class="quote"><td class="symbol">{sym_s}</td><td class="name">{name_s}</td>'
            f'<td class="last">{last_s}</td><td class="change">{change_s}</td>'
            f'<td class="change-pct">{pct_s}</td><td class="volume">{volume_s}</td>'
            f'<td class="listed">{listed}</td></tr>\n'
        )
    parts.append("</tbody></table>\n")
    if page < EQUITY_PAGES:
        parts.append(
            f'<a class="next" href="{next_prefix}/equities/{region}/{date}/quotes?page={page + 1}">'
            "Next</a>\n"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# FX
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def fx_universe(region: str) -> tuple[str, ...]:
    """The region's 60 distinct currency pairs (e.g. 'EUR/USD'); stable across dates."""
    rng = rng_for("fx", "universe", region)
    combos = [
        (a, b) for i, a in enumerate(FX_ORDER) for b in FX_ORDER[i + 1 :]
    ]  # base precedes quote in FX_ORDER
    return tuple(f"{a}/{b}" for a, b in rng.sample(combos, FX_TOTAL))


def fx_malformed(region: str, date: str) -> dict[int, str]:
    """Record index (0..59) -> malformation kind; exactly 3, one of each kind."""
    rng = rng_for("fx", "malformed", region, date)
    rows = rng.sample(range(FX_TOTAL), len(FX_MALFORMED_KINDS))
    return dict(zip(rows, FX_MALFORMED_KINDS, strict=True))


def _rate_decimals(value: float) -> int:
    if value >= 20:
        return 2
    if value >= 0.01:
        return 4
    return 6


@lru_cache(maxsize=512)
def fx_records(region: str, date: str) -> tuple[dict, ...]:
    rng = rng_for("fx", region, date)
    drift = {c: math.exp(rng.gauss(0.0, 0.004)) for c in FX_ORDER}
    malformed = fx_malformed(region, date)
    records = []
    for i, pair in enumerate(fx_universe(region)):
        base, quote = pair.split("/")
        mid = FX_USD_VALUE[base] * drift[base] / (FX_USD_VALUE[quote] * drift[quote])
        mid *= math.exp(rng.gauss(0.0, 0.002))
        dp = _rate_decimals(mid)
        unit = 10.0**-dp
        half = mid * rng.uniform(0.00003, 0.0004)
        bid = math.floor((mid - half) / unit) * unit
        ask = math.ceil((mid + half) / unit) * unit
        if ask <= bid:
            ask = bid + unit
        mid_v = round((bid + ask) / 2.0, dp + 1)
        offset = rng.choice(FX_OFFSETS)
        secs = rng.randint(8 * 3600, 17 * 3600 + 3599)
        hh, mm, ss = secs // 3600, secs // 60 % 60, secs % 60
        venue_name, venue_code = rng.choice(FX_VENUES)
        record = {
            "pair": pair,
            "bid": f"{bid:,.{dp}f}",
            "ask": f"{ask:,.{dp}f}",
            "mid": mid_v,
            "volume": f"{rng.randint(1, 400) * 25_000:,}",
            "quoted_at": f"{date}T{hh:02d}:{mm:02d}:{ss:02d}{offset}",
            "venue": {"name": venue_name, "code": venue_code},
        }
        kind = malformed.get(i)
        if kind == "bid_empty":
            record["bid"] = ""
        elif kind == "bid_na":
            record["bid"] = "N/A"
        elif kind == "quoted_at_invalid":
            record["quoted_at"] = "not-a-date"
        records.append(record)
    return tuple(records)


def fx_cursor(region: str, date: str, offset: int) -> str:
    raw = f"{offset}:{short_hash('fx', 'cursor', region, date, offset)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def fx_parse_cursor(region: str, date: str, token: str) -> int | None:
    """Offset for a valid cursor of this region/date, else None."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset = int(raw.split(":", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return None
    valid_offset = 0 < offset < FX_TOTAL and offset % FX_PAGE_SIZE == 0
    if valid_offset and fx_cursor(region, date, offset) == token:
        return offset
    return None


def render_fx(region: str, date: str, offset: int) -> str:
    records = fx_records(region, date)
    page = list(records[offset : offset + FX_PAGE_SIZE])
    nxt = offset + FX_PAGE_SIZE
    body = {
        "data": {"rates": page},
        "meta": {
            "next_cursor": fx_cursor(region, date, nxt) if nxt < FX_TOTAL else None,
            "region": region,
            "date": date,
        },
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


# --------------------------------------------------------------------------------------------
# Funds
# --------------------------------------------------------------------------------------------
def _isin(rng: random.Random) -> str:
    country = rng.choice(ISIN_COUNTRIES)
    body = "".join(rng.choice(ISIN_ALPHABET) for _ in range(9))
    digits = "".join(str(int(c, 36)) for c in country + body)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return f"{country}{body}{(10 - total % 10) % 10}"


@lru_cache(maxsize=256)
def funds_universe(region: str) -> tuple[dict, ...]:
    """The region's 30 funds (id, name, isin, currency, base nav, aum); stable across dates."""
    rng = rng_for("funds", "universe", region)
    houses = _distinct_names(rng, FUND_TOTAL)
    isins: set[str] = set()
    funds = []
    for i, house in enumerate(houses, start=1):
        isin = _isin(rng)
        while isin in isins:
            isin = _isin(rng)
        isins.add(isin)
        funds.append(
            {
                "id": f"f-{i:04d}-{short_hash('funds', region, i, length=4)}",
                "name": f"{house} {rng.choice(FUND_STRATEGIES)} Fund",
                "isin": isin,
                "currency": rng.choice(tuple(FUND_CURRENCIES)),
                "nav": math.exp(rng.uniform(math.log(5), math.log(900))),
                "aum": math.exp(rng.uniform(math.log(5e6), math.log(5e10))),
                "manager": rng.choice(MANAGERS),
            }
        )
    return tuple(funds)


def funds_malformed(region: str, date: str) -> dict[int, str]:
    """Fund index (0..29) -> malformation kind; exactly 2, one of each kind."""
    rng = rng_for("funds", "malformed", region, date)
    rows = rng.sample(range(FUND_TOTAL), len(FUND_MALFORMED_KINDS))
    return dict(zip(rows, FUND_MALFORMED_KINDS, strict=True))


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body>\n{body}</body></html>\n"
    )


def render_funds_listing(region: str, date: str, page: int) -> str:
    rng = rng_for("funds", "listing", region, date, page)
    start = (page - 1) * FUNDS_PER_PAGE
    items = []
    for fund in funds_universe(region)[start : start + FUNDS_PER_PAGE]:
        name = _pad(rng, html.escape(fund["name"], quote=False), 0.15)
        items.append(
            f'<li class="fund"><a href="/funds/{region}/{date}/{fund["id"]}">{name}</a></li>\n'
        )
    listing = "".join(items)
    body = f'<h1>Funds {region} {date}</h1>\n<ul class="funds">\n{listing}</ul>\n'
    if page < FUND_PAGES:
        nxt = f"/funds/{region}/{date}/?page={page + 1}"
        body += f'<a class="next" href="{nxt}">Next</a>\n'
    return _page(f"Funds {region} {date} page {page}", body)


def render_fund_detail(region: str, date: str, fund_id: str) -> str | None:
    funds = funds_universe(region)
    index = next((i for i, f in enumerate(funds) if f["id"] == fund_id), None)
    if index is None:
        return None
    fund = funds[index]
    rng = rng_for("funds", region, date, fund_id)
    sym = FUND_CURRENCIES[fund["currency"]]
    nav = fund["nav"] * math.exp(rng.gauss(0.0, 0.01))
    nav_s = f"{sym}{nav:,.4f}" if rng.random() < 0.5 else f"{nav:,.4f}"
    aum = int(fund["aum"] * math.exp(rng.gauss(0.0, 0.005)))
    aum_s = f"{sym}{aum:,}" if rng.random() < 0.4 else f"{aum:,}"
    manager = "" if rng.random() < 0.15 else fund["manager"]
    isin = fund["isin"]
    kind = funds_malformed(region, date).get(index)
    if kind == "nav_em_dash":
        nav_s = "—"
    elif kind == "isin_empty":
        isin = ""
    name = html.escape(fund["name"], quote=False)
    body = (
        f'<div class="fund"><h1 class="name">{_pad(rng, name, 0.2)}</h1><dl>\n'
        f'<dt>ISIN</dt><dd class="isin">{isin}</dd>\n'
        f'<dt>NAV</dt><dd class="nav">{_pad(rng, html.escape(nav_s), 0.15)}</dd>\n'
        f'<dt>Currency</dt><dd class="currency">{fund["currency"]}</dd>\n'
        f'<dt>AUM</dt><dd class="aum">{_pad(rng, html.escape(aum_s), 0.1)}</dd>\n'
        f'<dt>NAV date</dt><dd class="nav-date">{date}</dd>\n'
        f'<dt>Manager</dt><dd class="manager">{html.escape(manager)}</dd>\n'
        "</dl></div>\n"
    )
    return _page(name, body)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------
ROBOTS = "User-agent: *\nDisallow: /private/\nDisallow: /faults/robots/\n"
INDEX = (
    "demo sites\n"
    "/robots.txt\n"
    "/equities/{region}/{date}/quotes?page=1..5\n"
    "/api/fx/{region}/{date}[?cursor=...]\n"
    "/api/typed/{region}/{date}\n"
    "/funds/{region}/{date}/?page=1..3\n"
    "/funds/{region}/{date}/{fund_id}\n"
    "/faults/{fault}/equities/{region}/{date}/quotes?page=1..5\n"
    "/api/paged/{pages,offset,cursor,next,link}[?...]\n"
)
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

EQUITIES_PATH = re.compile(r"/equities/([^/]+)/([^/]+)/quotes")
FX_PATH = re.compile(r"/api/fx/([^/]+)/([^/]+)")
# JSON values as a real API sends them (issue 22): booleans, nested objects and arrays,
# multi-line strings, numbers a float cannot hold. Served as written, the same every date.
TYPED_PATH = re.compile(r"/api/typed/([^/]+)/([^/]+)")
TYPED_BODY = r"""{"data": {"records": [
  {"id": 9007199254740993, "active": true, "listed": "\u2713",
   "price": 0.1000000000000000055511151231257827,
   "meta": {"venue": {"mic": "XLON", "open": true}, "levels": [1, 2.50, null, "x\ny"],
            "ratio": 12345678901234567890.123456789, "none": null},
   "tags": ["a", "b", "c"],
   "message": "Line one\n  indented line two\r\n\ttabbed, trailing spaces  "},
  {"id": 2, "active": false, "listed": "\u2717",
   "price": 12345678901234567890.123456789,
   "meta": [], "tags": [],
   "message": "  leading and double  spaces "},
  {"id": 3, "active": false, "listed": "no",
   "price": -0.000000012345678901234567890123456789,
   "meta": {"nested": {"deeper": {"deepest": [true, false, {"e": 1E+2}]}}},
   "tags": "not a list",
   "message": "caf\u00e9 \u682a \ud83d\ude00 \"quoted\", comma"}
]}}
"""
FUNDS_LIST_PATH = re.compile(r"/funds/([^/]+)/([^/]+)/?")
FUNDS_DETAIL_PATH = re.compile(r"/funds/([^/]+)/([^/]+)/([^/]+)")

Response = tuple[int, str, str]


class HttpError(Exception):
    def __init__(self, status: int, message: str, content_type: str = TEXT) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.content_type = content_type


def _check_region_date(region: str, date: str, json_errors: bool = False) -> str:
    if not REGION_RE.fullmatch(region):
        raise _error(404, "unknown region", json_errors)
    if not DATE_RE.fullmatch(date):
        raise _error(400, "bad date", json_errors)
    try:
        return dt.date.fromisoformat(date).isoformat()
    except ValueError:
        raise _error(400, "bad date", json_errors) from None


def _error(status: int, message: str, json_errors: bool) -> HttpError:
    if json_errors:
        return HttpError(status, json.dumps({"error": message}), JSON)
    return HttpError(status, message + "\n")


def _page_param(query: dict[str, list[str]], last: int) -> int:
    raw = query.get("page", ["1"])[0]
    if not re.fullmatch(r"-?\d{1,6}", raw.strip()):
        raise HttpError(400, "bad page\n")
    page = int(raw)
    if not 1 <= page <= last:
        raise HttpError(404, "no such page\n")
    return page


# Equities whose rows a script writes after load: /js/equities/... (50 ms after load) and
# /js-hang/equities/... (page 3's script never writes them). Only a browser reads their rows.
SCRIPTED_PATH = re.compile(r"/(js|js-hang)(/equities/[^/]+/[^/]+/quotes)")
SCRIPTED_HANG_PAGE = 3


def scripted(text: str, hang: bool) -> str:
    """An equities page with its rows taken out of the HTML and written into the table by a
    script, 50 ms after load; with ``hang`` the script waits for a promise that never settles,
    so the rows never appear."""
    start = text.index(EQUITY_TABLE_HEAD) + len(EQUITY_TABLE_HEAD)
    end = text.index("</tbody>", start)
    rows = json.dumps(text[start:end]).replace("</", "<\\/")
    later = "new Promise(function () {}).then(fill);" if hang else "setTimeout(fill, 50);"
    script = (
        f"<script>var ROWS = {rows};\nfunction fill() "
        "{ document.querySelector('table#quotes tbody').innerHTML = ROWS; }\n"
        f"window.addEventListener('load', function () {{ {later} }});</script>\n"
    )
    return text[:start] + text[end:].replace("</body>", script + "</body>", 1)


def route(raw_path: str) -> Response:
    """Map a request path (with query) to (status, content_type, body)."""
    parts = urlsplit(raw_path)
    path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
    if path == "/":
        return 200, TEXT, INDEX
    if path == "/robots.txt":
        return 200, TEXT, ROBOTS
    if path.startswith("/private/") or path == "/private":
        return 403, TEXT, "forbidden\n"
    if m := EQUITIES_PATH.fullmatch(path):
        date = _check_region_date(m[1], m[2])
        return 200, HTML, render_equities(m[1], date, _page_param(query, EQUITY_PAGES))
    if (m := SCRIPTED_PATH.fullmatch(path)) and (e := EQUITIES_PATH.fullmatch(m[2])):
        date = _check_region_date(e[1], e[2])
        page = _page_param(query, EQUITY_PAGES)
        text = render_equities(e[1], date, page, next_prefix=f"/{m[1]}")
        return 200, HTML, scripted(text, hang=m[1] == "js-hang" and page == SCRIPTED_HANG_PAGE)
    if m := TYPED_PATH.fullmatch(path):
        _check_region_date(m[1], m[2], json_errors=True)
        return 200, JSON, TYPED_BODY
    if m := FX_PATH.fullmatch(path):
        date = _check_region_date(m[1], m[2], json_errors=True)
        offset = 0
        if "cursor" in query:
            parsed = fx_parse_cursor(m[1], date, query["cursor"][0])
            if parsed is None:
                raise _error(400, "invalid cursor", True)
            offset = parsed
        return 200, JSON, render_fx(m[1], date, offset)
    if m := FUNDS_LIST_PATH.fullmatch(path):
        date = _check_region_date(m[1], m[2])
        page = _page_param(query, FUND_PAGES)
        return 200, HTML, render_funds_listing(m[1], date, page)
    if m := FUNDS_DETAIL_PATH.fullmatch(path):
        date = _check_region_date(m[1], m[2])
        body = render_fund_detail(m[1], date, m[3])
        if body is None:
            raise HttpError(404, "unknown fund\n")
        return 200, HTML, body
    raise HttpError(404, "not found\n")


# --------------------------------------------------------------------------------------------
# Fault routes: /faults/<fault>/equities/... is the whole equities site with one misbehaviour
# --------------------------------------------------------------------------------------------
FAULT_DOCS: dict[str, str] = {
    "truncated": "page 3 announces its whole length (Content-Length), then the connection "
    "closes mid-tag inside its 8th row: 7 whole rows, no `</table>`, no next link, no `</html>`",
    "last_page_500": "page 5 always answers 500 (text/plain)",
    "offsite_next": "page 2's next link is an absolute URL of page 3 on another host name of "
    "this server (`localhost` <-> `127.0.0.1`)",
    "offsite_redirect": "page 2 answers 302 to the normal `/equities/...?page=2` on another host "
    "name of this server (`localhost` <-> `127.0.0.1`)",
    "malformed_keys": "page 1 rows 0-7 have `last` = `n/a` but a normal symbol (rejected records "
    "with readable keys); all else as normal",
    "latin1_as_utf8": "body encoded latin-1 (other characters as `&#N;`) while Content-Type says "
    "`charset=utf-8`",
    "utf8_as_latin1": "body is UTF-8 but Content-Type and `<meta charset>` say `iso-8859-1`",
    "retry_after": "the first request of each page N >= 2 answers 429 with `Retry-After: 2`; "
    "later ones succeed",
    "retry_after_date": "the first request of each page N >= 2 answers 503 with an HTTP-date "
    "`Retry-After` 2 s ahead; later ones succeed",
    "retry_after_long": "page 2 always answers 429 with `Retry-After: 3600`",
    "flaky_503": "the first 2 requests of each page N >= 2 answer 503 without `Retry-After`; "
    "later ones succeed",
    "reset": "page 3 resets the TCP connection (RST, no response) on every request",
    "flaky_reset": "the first request of page 3 resets the TCP connection; later ones succeed",
    "redirect_loop": "page 2 answers 302 to itself with `hop=<n+1>`, forever",
    "huge": "page 2 answers 200 with `Content-Length: 62914560` (60 MiB) and streams filler HTML",
    "slow": "every page waits 2 s before answering",
    "robots": "normal pages, but `/robots.txt` disallows `/faults/robots/`",
}
FAULTS = tuple(FAULT_DOCS)

FAULT_PATH = re.compile(r"/faults/([^/]*)(/.*)?")
FAULT_ROW_START = '<tr class="quote">'
TRUNCATED_ROWS = 7
MALFORMED_KEY_ROWS = 8
RETRY_AFTER_SECONDS = 2
RETRY_AFTER_LONG_SECONDS = 3600
FLAKY_503_FAILURES = 2
SLOW_SECONDS = 2.0
HUGE_BYTES = 60 * 1024 * 1024
HUGE_FILLER = (b"<p>" + b"filler " * 8 + b"</p>\n") * 1024  # 64 KiB of 64-byte lines
HUGE_HEAD = b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>huge</title></head><body>\n'
LATIN1_HTML = "text/html; charset=iso-8859-1"


# A NamedTuple, not a dataclass: tests load this file without registering it in sys.modules.
class Reply(NamedTuple):
    """A whole response to send, or (action) a special way to answer instead."""

    status: int
    content_type: str = TEXT
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # "reset": RST the connection, no response; "huge": stream HUGE_BYTES; "truncated": send
    # part of the body announced, then close
    action: str = ""


def _text_reply(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, TEXT, message.encode(), headers)


def _without_hop(query: str) -> str:
    return "&".join(p for p in query.split("&") if p and p.split("=", 1)[0] != "hop")


def _truncate(text: str) -> str:
    start = -1
    for _ in range(TRUNCATED_ROWS + 1):
        start = text.index(FAULT_ROW_START, start + 1)
    # Stop inside the first tag of the next row, like a template that crashed mid-render.
    return text[: start + len(FAULT_ROW_START) + len("<td cla")]


def fault_reply(raw_path: str, count: Callable[[str], int], host_header: str, port: int) -> Reply:
    """Answer a /faults/<fault>/equities/... request; count(key) returns the key's request number.

    The key is the path and query without `hop`, so stateful faults progress per page.
    """
    parts = urlsplit(raw_path)
    m = FAULT_PATH.fullmatch(parts.path)
    if m is None or m[1] not in FAULT_DOCS:
        raise HttpError(404, "unknown fault\n")
    fault = m[1]
    equities = EQUITIES_PATH.fullmatch(m[2] or "")
    if equities is None:
        raise HttpError(404, "not found\n")
    region = equities[1]
    date = _check_region_date(region, equities[2])
    query = parse_qs(parts.query, keep_blank_values=True)
    page = _page_param(query, EQUITY_PAGES)
    n = count(f"{parts.path}?{_without_hop(parts.query)}")
    # Another name for this very server, so "offsite" tests never leave the machine.
    other = "127.0.0.1" if host_header.lower().startswith("localhost") else "localhost"
    other_origin = f"http://{other}:{port}"

    if fault == "slow":
        time.sleep(SLOW_SECONDS)
    if fault == "last_page_500" and page == EQUITY_PAGES:
        return _text_reply(500, "internal server error\n")
    if fault == "offsite_redirect" and page == 2:
        location = f"{other_origin}/equities/{region}/{date}/quotes?page=2"
        return _text_reply(302, "found\n", ("Location", location))
    if fault == "retry_after" and page >= 2 and n == 1:
        retry = ("Retry-After", str(RETRY_AFTER_SECONDS))
        return _text_reply(429, "too many requests\n", retry)
    if fault == "retry_after_date" and page >= 2 and n == 1:
        retry = ("Retry-After", formatdate(time.time() + RETRY_AFTER_SECONDS, usegmt=True))
        return _text_reply(503, "service unavailable\n", retry)
    if fault == "retry_after_long" and page == 2:
        retry = ("Retry-After", str(RETRY_AFTER_LONG_SECONDS))
        return _text_reply(429, "too many requests\n", retry)
    if fault == "flaky_503" and page >= 2 and n <= FLAKY_503_FAILURES:
        return _text_reply(503, "service unavailable\n")
    if page == 3 and (fault == "reset" or (fault == "flaky_reset" and n == 1)):
        return Reply(0, action="reset")
    if fault == "redirect_loop" and page == 2:
        raw_hop = query.get("hop", ["0"])[0]
        hop = int(raw_hop) if re.fullmatch(r"[0-9]{1,9}", raw_hop) else 0
        kept = _without_hop(parts.query)
        location = f"{parts.path}?{kept + '&' if kept else ''}hop={hop + 1}"
        return _text_reply(302, "found\n", ("Location", location))
    if fault == "huge" and page == 2:
        return Reply(200, HTML, action="huge")

    prefix = f"/faults/{fault}"
    next_prefix = other_origin + prefix if fault == "offsite_next" and page == 2 else prefix
    na_rows = MALFORMED_KEY_ROWS if fault == "malformed_keys" and page == 1 else 0
    text = render_equities(region, date, page, next_prefix, na_rows)
    if fault == "truncated" and page == 3:
        return Reply(200, HTML, text.encode("utf-8"), action="truncated")
    if fault == "latin1_as_utf8":
        return Reply(200, HTML, text.encode("latin-1", errors="xmlcharrefreplace"))
    if fault == "utf8_as_latin1":
        text = text.replace('<meta charset="utf-8">', '<meta charset="iso-8859-1">', 1)
        return Reply(200, LATIN1_HTML, text.encode("utf-8"))
    return Reply(200, HTML, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Paged APIs: /api/paged/<style> serves PAGED_TOTAL records in pages of PAGED_SIZE, one route
# per pagination style a json_api site can follow (docs/adding-a-site.md "JSON APIs"). `loop=1`
# makes the last page point back to an earlier one (not for pages/offset, whose next page is
# computed).
# --------------------------------------------------------------------------------------------
PAGED_TOTAL = 23
PAGED_SIZE = 5
PAGED_MAX_LIMIT = 10  # the offset route's largest page, whatever limit is asked for
PAGED_DOCS: dict[str, str] = {
    "pages": "`?page=N` (from 1): `{items, meta: {page, total_pages, total_items}}`; past the "
    "last page an empty `items`, or 404 with `past=404`",
    "offset": "`?offset=O&limit=L` (L at most 10, default 5): `{results, count}`",
    "cursor": "`?cursor=C`: `{data, next_cursor}`, the cursor also in header `X-Next-Cursor`; "
    "none on the last page; with `loop=1` the last page's cursor is the second page's",
    "next": "`?after=K`: `{items, links: {next}}`, next a relative URL, null on the last page; "
    "with `loop=1` the last page's next is the second page",
    "link": "`?page=N`: the body is the list itself; `Link` header with first/prev/next/last "
    '(relative, quoted and bare `rel`, `rel="next nofollow"`, a quoted comma, two header '
    "lines); with `loop=1` the last page's next is page 1",
}


def paged_records() -> tuple[dict, ...]:
    return tuple(
        {"code": f"P{i:03d}", "price": f"{i * 1.25:.2f}", "name": f"Paged item {i}"}
        for i in range(1, PAGED_TOTAL + 1)
    )


def _paged_int(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not re.fullmatch(r"\d{1,6}", raw):
        raise _error(400, f"bad {name}", True)
    return int(raw)


def _paged_json(body: object, *headers: tuple[str, str]) -> Reply:
    return Reply(200, JSON, json.dumps(body).encode("utf-8"), headers)


def paged_reply(raw_path: str) -> Reply:
    """Answer a /api/paged/<style> request (PAGED_DOCS)."""
    parts = urlsplit(raw_path)
    style = parts.path.removeprefix("/api/paged/")
    query = parse_qs(parts.query, keep_blank_values=True)
    records, size, loop = paged_records(), PAGED_SIZE, query.get("loop") == ["1"]
    pages = math.ceil(PAGED_TOTAL / size)
    if style == "pages":
        page = _paged_int(query, "page", 1)
        if page < 1 or (page > pages and query.get("past") == ["404"]):
            raise _error(404, "no such page", True)
        items = records[(page - 1) * size : page * size]
        meta = {"page": page, "total_pages": pages, "total_items": PAGED_TOTAL}
        return _paged_json({"items": items, "meta": meta})
    if style == "offset":
        offset = _paged_int(query, "offset", 0)
        limit = min(_paged_int(query, "limit", size), PAGED_MAX_LIMIT)
        return _paged_json({"results": records[offset : offset + limit], "count": PAGED_TOTAL})
    if style in ("cursor", "next"):
        param = "cursor" if style == "cursor" else "after"
        raw = query.get(param, ["c0" if style == "cursor" else "0"])[0]
        start = _paged_int({param: [raw.removeprefix("c")]}, param, 0)
        nxt: int | None = start + size if start + size < PAGED_TOTAL else None
        if nxt is None and loop:
            nxt = size  # back to the second page, already fetched
        items = records[start : start + size]
        if style == "next":
            again = "&loop=1" if loop else ""
            link = None if nxt is None else f"/api/paged/next?after={nxt}{again}"
            return _paged_json({"items": items, "links": {"next": link}})
        cursor = None if nxt is None else f"c{nxt}"
        headers = () if cursor is None else (("X-Next-Cursor", cursor),)
        return _paged_json({"data": items, "next_cursor": cursor}, *headers)
    if style == "link":
        page = _paged_int(query, "page", 1)
        if not 1 <= page <= pages:
            raise _error(404, "no such page", True)
        keep = "&loop=1" if loop else ""
        nxt = page + 1 if page < pages else (1 if loop else None)
        first = f'</api/paged/link?page=1{keep}>; rel="first"'
        # RFC 8288 allows: a token or a quoted rel, several relation types, any order of params.
        links = [first + f', <link?page={pages}{keep}>; title="last, \\"final\\""; rel=last']
        if nxt is not None:
            links.append(f'<?page={nxt}{keep}>; type="application/json"; rel="next nofollow"')
        if page > 1:
            links[-1] += f', </api/paged/link?page={page - 1}{keep}>; rel="prev"'
        items = records[(page - 1) * size : page * size]
        return _paged_json(list(items), *(("Link", value) for value in links))
    raise _error(404, f"unknown paged style {style!r}; known: {', '.join(PAGED_DOCS)}", True)


# --------------------------------------------------------------------------------------------
# Silent choices: /choices/<case>/... is the equities (or funds) site with one thing a crawl must
# name rather than choose silently: a key on two pages, columns that moved, a redirect back to
# a page already requested, a detail page linked twice (harmless).
# --------------------------------------------------------------------------------------------
CHOICE_DOCS: dict[str, str] = {
    "duplicate_keys": "equities; page 2's first 3 valid rows carry the symbols of page 1's "
    "first 3 valid rows (one key on two pages, with page 2's values)",
    "swapped_columns": "equities with the `Last` and `Change` columns swapped on every page, "
    "header cells and classes included",
    "redirect_back": "equities; page 2 answers 302 to `page=2&via=b`, which answers 302 back "
    "to `page=2` (A -> B -> A)",
    "linked_twice": "funds; listing pages 2 and 3 also link page 1's first fund again",
    "next_loop": "equities; the last page (5) has a next link back to page 1",
}
CHOICE_PATH = re.compile(r"/choices/([^/]+)(/.*)?")
CHOICE_DUPLICATES = 3
SYMBOL_CELL = re.compile(r'<td class="symbol">([^<]*)</td>')


def _valid_symbols(region: str, date: str, page: int) -> list[tuple[int, str]]:
    """(row index, symbol) of the page's rows that are not malformed."""
    start = (page - 1) * EQUITY_ROWS_PER_PAGE
    universe = equities_universe(region)[start : start + EQUITY_ROWS_PER_PAGE]
    bad = equities_malformed(region, date, page)
    return [(i, row[0]) for i, row in enumerate(universe) if i not in bad]


def _swap_last_and_change(text: str) -> str:
    last, change = "<th>Last</th>", "<th>Change</th>"
    head = EQUITY_TABLE_HEAD.replace(last + change, change + last)
    text = text.replace(EQUITY_TABLE_HEAD, head)
    cells = re.compile(r'(<td class="last">.*?</td>)(<td class="change">.*?</td>)', re.DOTALL)
    return cells.sub(r"\2\1", text)


def choice_reply(raw_path: str) -> Reply:
    """Answer a /choices/<case>/... request (CHOICE_DOCS)."""
    parts = urlsplit(raw_path)
    m = CHOICE_PATH.fullmatch(parts.path)
    if m is None or m[1] not in CHOICE_DOCS:
        raise HttpError(404, "unknown choice\n")
    case, rest, prefix = m[1], m[2] or "", f"/choices/{m[1]}"
    query = parse_qs(parts.query, keep_blank_values=True)
    if case == "linked_twice":
        if fm := FUNDS_DETAIL_PATH.fullmatch(rest):
            body = render_fund_detail(fm[1], _check_region_date(fm[1], fm[2]), fm[3])
            if body is None:
                raise HttpError(404, "unknown fund\n")
            return Reply(200, HTML, body.encode("utf-8"))
        if not (fm := FUNDS_LIST_PATH.fullmatch(rest)):
            raise HttpError(404, "not found\n")
        region, date = fm[1], _check_region_date(fm[1], fm[2])
        page = _page_param(query, FUND_PAGES)
        text = render_funds_listing(region, date, page)
        if page > 1:
            first = funds_universe(region)[0]["id"]
            again = f'<li class="fund"><a href="/funds/{region}/{date}/{first}">again</a></li>\n'
            text = text.replace("</ul>", again + "</ul>", 1)
        text = text.replace('href="/funds/', f'href="{prefix}/funds/')
        return Reply(200, HTML, text.encode("utf-8"))
    equities = EQUITIES_PATH.fullmatch(rest)
    if equities is None:
        raise HttpError(404, "not found\n")
    region, date = equities[1], _check_region_date(equities[1], equities[2])
    page = _page_param(query, EQUITY_PAGES)
    if case == "redirect_back" and page == 2:
        back = f"{parts.path}?page=2"
        target = back if query.get("via") == ["b"] else f"{back}&via=b"
        return _text_reply(302, "found\n", ("Location", target))
    text = render_equities(region, date, page, prefix)
    if case == "duplicate_keys" and page == 2:
        taken = [s for _, s in _valid_symbols(region, date, 1)[:CHOICE_DUPLICATES]]
        rows = [i for i, _ in _valid_symbols(region, date, 2)[:CHOICE_DUPLICATES]]
        found = list(SYMBOL_CELL.finditer(text))
        for i, symbol in sorted(zip(rows, taken, strict=True), reverse=True):
            cell = found[i]
            text = text[: cell.start(1)] + symbol + text[cell.end(1) :]
    if case == "swapped_columns":
        text = _swap_last_and_change(text)
    if case == "next_loop" and page == EQUITY_PAGES:
        first = f"{prefix}/equities/{region}/{date}/quotes?page=1"
        text = text.replace("</body>", f'<a class="next" href="{first}">Next</a>\n</body>', 1)
    return Reply(200, HTML, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Data files: /files/... publishes the fx site's reference rates as files (the data_file
# kind): a wide CSV (one column per currency, a trailing comma, "N/A" where no rate was
# fixed) zipped and gzipped, and an XML feed in the European Central Bank's eurofxref
# layout (namespaces, records as attributes). They hold every fixing day of FILE_FIRST to
# FILE_LAST, never change, and answer a conditional request (If-None-Match,
# If-Modified-Since) with 304. /hostile/<case>/files/... are hostile files. Each request is counted
# under "files <path> <full|conditional> <status>" (DemoServer.fault_counts).
# --------------------------------------------------------------------------------------------
FILE_FIRST, FILE_LAST = dt.date(2025, 1, 2), dt.date(2026, 11, 30)
FILE_CLOSED = {(1, 1), (5, 1), (12, 25), (12, 26), (4, 18), (4, 21), (4, 3), (4, 6)}
FILE_CURRENCIES = tuple(c for c in FX_ORDER if c != "EUR")
FILE_MODIFIED = "Mon, 30 Nov 2026 16:00:00 GMT"
ECB_GESMES = "http://www.gesmes.org/xml/2002-08-01"
ECB_REF = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
FILE_MEMBER = "rates-wide.csv"
FILE_BOMB_BYTES = 12 * 1024 * 1024  # the bomb's member inflates past the 10 MiB default cap


def file_days() -> list[dt.date]:
    """The fixing days the files hold: weekdays but the closing days above."""
    days, day = [], FILE_FIRST
    while day <= FILE_LAST:
        if day.weekday() < 5 and (day.month, day.day) not in FILE_CLOSED:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


@lru_cache(maxsize=1)
def file_rates() -> dict[str, dict[str, str]]:
    """ISO date -> currency -> the rate of one euro as the files print it, or "N/A"."""
    rates: dict[str, dict[str, str]] = {}
    for day in file_days():
        rng = rng_for("fxfile", day.isoformat())
        row = {}
        for currency in FILE_CURRENCIES:
            value = FX_USD_VALUE["EUR"] / FX_USD_VALUE[currency] * math.exp(rng.gauss(0, 0.01))
            row[currency] = "N/A" if rng.random() < 0.02 else f"{value:.{_rate_decimals(value)}f}"
        rates[day.isoformat()] = row
    return rates


@lru_cache(maxsize=2)
def file_csv(moved: bool = False) -> bytes:
    """The wide CSV, newest day first as the ECB's; ``moved``: its Date column moved last."""
    currencies, rates = list(FILE_CURRENCIES), sorted(file_rates().items(), reverse=True)
    if moved:
        lines = [",".join(currencies) + ",Date"]
        lines += [",".join(row[c] for c in currencies) + f",{day}" for day, row in rates]
    else:
        lines = ["Date," + ",".join(currencies) + ","]
        lines += [day + "," + ",".join(row[c] for c in currencies) + "," for day, row in rates]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _zipped(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():  # stamped FILE_MODIFIED: the same bytes each time
            member = zipfile.ZipInfo(name, date_time=(2026, 11, 30, 16, 0, 0))
            archive.writestr(member, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


@lru_cache(maxsize=1)
def file_xml() -> bytes:
    days = [
        f"<Cube time='{day}'>"
        + "".join(f"<Cube currency='{c}' rate='{r}'/>" for c, r in row.items() if r != "N/A")
        + "</Cube>"
        for day, row in sorted(file_rates().items(), reverse=True)
    ]
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<gesmes:Envelope xmlns:gesmes='{ECB_GESMES}' xmlns='{ECB_REF}'>"
        "<gesmes:subject>Reference rates</gesmes:subject>"
        "<gesmes:Sender><gesmes:name>Demo Central Bank</gesmes:name></gesmes:Sender>"
        "<Cube>" + "\n".join(days) + "</Cube></gesmes:Envelope>\n"
    ).encode("utf-8")


def _file(name: str) -> tuple[str, bytes] | None:
    """A published file by its name under /files/fx/: (content type, bytes)."""
    if name == "rates-wide.csv.zip":
        return "application/zip", _zipped({FILE_MEMBER: file_csv()})
    if name == "rates-wide.csv.gz":
        return "application/gzip", gzip.compress(file_csv(), mtime=0)
    if name == "rates-wide.csv":
        return "text/csv; charset=utf-8", file_csv()
    if name == "rates.xml":
        return "application/xml", file_xml()
    return None


def _hostile(case: str, name: str) -> tuple[str, bytes] | None:
    """/hostile/<case>/files/fx/<name>: the file ``name`` made hostile: zip-slip (its
    member's path leaves the folder), bomb (its member inflates to FILE_BOMB_BYTES), moved
    (the Date column moved from first to last), entity (an XML external entity)."""
    if name.endswith(".zip") and case == "zip-slip":
        return "application/zip", _zipped({"../../outside/" + FILE_MEMBER: file_csv()})
    if name.endswith(".zip") and case == "bomb":
        return "application/zip", _bomb()
    if name.endswith(".zip") and case == "moved":
        return "application/zip", _zipped({FILE_MEMBER: file_csv(moved=True)})
    if name.endswith(".xml") and case == "entity":
        text = file_xml().decode()
        text = text.replace(
            "<gesmes:Envelope",
            "<!DOCTYPE gesmes:Envelope [<!ENTITY leak SYSTEM 'file:///etc/hostname'>]>\n"
            "<gesmes:Envelope",
            1,
        ).replace("<gesmes:subject>Reference rates", "<gesmes:subject>&leak;", 1)
        return "application/xml", text.encode()
    return None


@lru_cache(maxsize=1)
def _bomb() -> bytes:
    return _zipped({FILE_MEMBER: b"0" * FILE_BOMB_BYTES})


FILE_PATH = re.compile(r"(?:/hostile/([a-z-]+))?/files/fx/([^/]+)")


def file_reply(raw_path: str, headers: object, count: Callable[[str], int]) -> Reply:
    path = urlsplit(raw_path).path
    match = FILE_PATH.fullmatch(path)
    found = None
    if match:
        case, name = match.groups()
        found = _hostile(case, name) if case else _file(name)
    if found is None:
        return _text_reply(404, f"no file at {path}\n")
    ctype, body = found
    etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
    validators = (("ETag", etag), ("Last-Modified", FILE_MODIFIED))
    asked_etag, asked_since = headers.get("If-None-Match"), headers.get("If-Modified-Since")
    how = "conditional" if asked_etag or asked_since else "full"
    # If-None-Match compares weakly (RFC 9110 13.1.2): a proxy that compressed the body on
    # its way (nginx's gzip) sent the tag back as W/"...".
    tags = {t.strip().removeprefix("W/") for t in (asked_etag or "").split(",")}
    fresh = etag in tags or "*" in tags if asked_etag else asked_since == FILE_MODIFIED
    status = 304 if how == "conditional" and fresh else 200
    count(f"files {path} {how} {status}")
    return Reply(status, ctype, b"" if status == 304 else body, validators)


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DemoSites/1.0"
    timeout = 60  # seconds an idle keep-alive connection is held open
    # Send headers and body in one segment (flushed by handle_one_request) and without Nagle;
    # otherwise keep-alive clients stall ~40 ms per request on delayed ACKs.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: DemoServer

    def _reply(self) -> Reply:
        try:
            if urlsplit(self.path).path.startswith("/faults/"):
                host = self.headers.get("Host", "")
                port = self.server.server_address[1]
                return fault_reply(self.path, self.server.count_fault_request, host, port)
            if urlsplit(self.path).path.startswith("/api/paged/"):
                return paged_reply(self.path)
            if urlsplit(self.path).path.startswith("/choices/"):
                return choice_reply(self.path)
            if urlsplit(self.path).path.startswith(("/files/", "/hostile/")):
                return file_reply(self.path, self.headers, self.server.count_fault_request)
            status, ctype, text = route(self.path)
            return Reply(status, ctype, text.encode("utf-8"))
        except HttpError as exc:
            return Reply(exc.status, exc.content_type, exc.message.encode("utf-8"))

    def _respond(self, with_body: bool) -> None:
        reply = self._reply()
        if reply.action == "reset":
            self._reset_connection()
            return
        huge = reply.action == "huge"
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(HUGE_BYTES if huge else len(reply.body)))
        if reply.status == 200 and not huge and not any(n == "ETag" for n, _ in reply.headers):
            self.send_header("ETag", f'"{hashlib.sha256(reply.body).hexdigest()[:16]}"')
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if with_body and huge:
            self._stream_huge()
        elif with_body and reply.action == "truncated":
            # The headers announced the whole body; the connection closes after part of it.
            self.wfile.write(_truncate(reply.body.decode("utf-8")).encode("utf-8"))
            self.close_connection = True
        elif with_body:
            self.wfile.write(reply.body)

    def _reset_connection(self) -> None:
        # Linger on with a 0 s timeout makes close() send RST, so the client gets ECONNRESET.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        # rfile/wfile still hold the socket: the descriptor really closes when finish() closes
        # them, before the server's shutdown_request() could send a FIN. Nothing is written.
        self.connection.close()

    def _stream_huge(self) -> None:
        sent, chunk = 0, HUGE_HEAD + HUGE_FILLER[len(HUGE_HEAD) :]
        try:
            # Headers first; the body bypasses wfile so a failed send leaves nothing buffered
            # for handle_one_request's final flush to trip over.
            self.wfile.flush()
            while sent < HUGE_BYTES:
                piece = chunk[: HUGE_BYTES - sent]
                self.connection.sendall(piece)
                sent += len(piece)
                chunk = HUGE_FILLER
        except (ConnectionError, TimeoutError):
            # Clients are expected to give up on this body; that is not a server error.
            self.close_connection = True

    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def log_message(self, format: str, *args: object) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    verbose = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._fault_lock = threading.Lock()
        self.fault_counts: dict[str, int] = {}
        # key -> time.monotonic() of each request: tests measure how long a client waited.
        self.fault_times: dict[str, list[float]] = {}

    def count_fault_request(self, key: str) -> int:
        """Count one more request of key (path and query without `hop`); return the new count."""
        with self._fault_lock:
            self.fault_counts[key] = self.fault_counts.get(key, 0) + 1
            self.fault_times.setdefault(key, []).append(time.monotonic())
            return self.fault_counts[key]

    def reset_faults(self) -> None:
        """Forget all fault request counts, so stateful faults start over."""
        with self._fault_lock:
            self.fault_counts.clear()
            self.fault_times.clear()

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients dropping keep-alive connections is normal; only report other errors.
        if self.verbose or not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(host: str = "127.0.0.1", port: int = 0) -> DemoServer:
    server = DemoServer((host, port), DemoHandler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8808)
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    server.verbose = args.verbose
    host, port = server.server_address[:2]

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"demo sites listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
