"""The vectorised transform writes exactly what the per-record reference writes.

The reference is offpeak.pipeline.transform.reference_line: the per-record transform the
pipeline had before the fast path (normalize_record per record, transform.CsvRows per row),
line by line. The fast path may decline a value (the reference then reads it) but must never write a
different row, reject, reason or kept key.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from offpeak import jsonvalues
from offpeak.config import load_project, load_site
from offpeak.pipeline import transform
from offpeak.pipeline.transform import reference_line, transform_file
from support import feeds

# Lines no spider writes but a damaged or hostile feed can hold.
HOSTILE = [
    "",
    "   ",
    "\u00a0",
    "\x1c",
    '{"symbol": "TRUNC", "name": "cut',
    "[1, 2]",
    '"just a string"',
    '{"symbol": "DUP", "name": "first", "name": "second", "last_price": "1"}',
    '{"symbol": "NUM", "name": "n", "last_price": 12.5, "volume": 7}',
    '{"symbol": "EXTRA", "name": "x", "last_price": "1", "page": "2"}',
    '{"symbol":"TIGHT","name":"x","last_price":"1","name":null}',
    '{"symbol" : "SPACED", "name": "x", "last_price": "1", "symbol": "OTHER"}',
    '{"symbol": "BOOL", "name": true, "last_price": "1"}',
    '{"symbol": "NEST", "name": "x", "last_price": {"v": 1}}',
    '{"symbol": "NAN", "name": "x", "last_price": NaN}',
    '{"_url": "http://127.0.0.1/p3", "_error": "HTTP 500 after 3 retries"}',
    '{"_url": "", "_error": "", "symbol": "EMPTYERR", "name": "e", "last_price": "2"}',
    '{"symbol": "CR", "name": "a",\r"last_price": "3"}',
    '{"symbol": "URLNUM", "name": "u", "last_price": "4", "_url": 5}',
    '{"symbol": "ESC\\u0041", "name": "\\u00e9t\\u00e9", "last_price": "\\u00245"}',
    '{"symbol": "ODD", "name": "x", "last_price": "\u2212 5", "change": "$-1.37"}',
]

# Raw values of every shape the fast path reads, and of many it must leave to the reference.
NUMBERS = [
    "0", "00", "007", "0.00", "-0", "-0.00", "(0.00)", "+0", "1", "-1", "+1", "(1)", "( 1 )",
    "1,234", "1,234,567.891", "12,34,567.89", "1 234 567", "1'234", "1_234", "1,23", "1,2345",
    "1.", ".5", "0.5", "0.000001", "0.0000001", "0.00000010", "0.000000", "0.0000000",
    "$1", "$-1.37", "-$1.37", "(-$1.37)", "($1.37)", "US$ 5", "A$1.20", "CHF 12.50",
    "12.50 EUR", "kr. 26.54", "Rs. 9", "1.2bn", "2.5 Cr", "5%", "(5%)", "(5)%", "5 %",
    "- 5", "\u22125", "\u20135", "١٢٣", "1e5", "NaN", "", " ", "n/a", "—", "% Chg",
    "12345678901234567890123456789", "-12345678901234567890123456789",
    "123456789012345678", "1234567890123456789", "-9223372036854775808", "9223372036854775808",
    "5.000", "5.10", "1,234.00", "¥500", "£3", "€ 4", "(USD 5)", "USD 5 USD", "S5", "5 A",
    "\n  12.5  \n", "1\u00a0234", "1\u202f234.5", "12.3.4", "1,5", "1,,234", "+-5", "(5",
]  # fmt: skip
DATES = [
    "2019-03-04", " 2019-03-04 ", "2019-02-29", "2020-02-29", "2019-13-01", "0000-01-01",
    "0001-01-01", "9999-12-31", "20190304", "2019-3-4", "2019-W10-1", "04/03/2019", "",
]  # fmt: skip
DATETIMES = [
    "2026-11-20T16:59:58+05:30", "2026-11-20T16:59:58+00:00", "2026-11-20T16:59:58-00:00",
    "2026-11-20T16:59:58Z", "2026-11-20T16:59:58", "2026-11-20T16:59:58.5+01:00",
    "2026-11-20 16:59:58+01:00", "2026-11-20T24:00:00+01:00", "2026-11-20T16:60:00+01:00",
    "2026-11-20T16:59:58+24:00", "2026-11-20T16:59:58+23:59", "2026-02-30T10:00:00+01:00",
    "0000-11-20T16:59:58+01:00", "2026-11-20T16:59:58+0100",
]  # fmt: skip
TEXTS = [
    "plain", "  padded  ", "two  spaces", "tab\tin", "line\nbreak", "nbsp\u00a0x",
    "\x1cfs", "sep\x1fx", '"quoted", comma', "é 株", "\u2028ls", "   ", "",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _repeated_keys_left_as_written(monkeypatch):
    """The hostile lines repeat (so their keys do): what on_duplicate_key makes of repeated
    keys is a step after both ways of writing rows, so it is left out here and tested in
    test_duplicate_keys.py, on rows written either way."""
    from offpeak.pipeline.duplicates import Settled

    monkeypatch.setattr(
        transform, "settle_duplicates", lambda site, *_: (Settled(site.on_duplicate_key), [])
    )


@pytest.fixture
def site(tmp_path: Path):
    path = tmp_path / "bench.yaml"
    path.write_text(feeds.SITE_YAML, encoding="utf-8")
    return load_site(path, load_project().regions)


def reference(site, raw: Path) -> tuple[str, list[dict], str]:
    """What the per-record transform writes for ``raw``: clean CSV, rejects, kept-keys CSV."""
    clean, keys = io.StringIO(), io.StringIO()
    rows, kept = transform.CsvRows(clean), transform.CsvRows(keys)
    rejects = []
    with open(raw, encoding="utf-8") as src:
        for line_no, line in enumerate(src, start=1):
            if (out := reference_line(site, line_no, line)) is None:
                continue
            if out.row is not None:
                rows.writerow([*out.row, line_no])
                continue
            rejects.append({"line": line_no, "reason": out.reason, "record": out.record})
            if out.key is not None:
                kept.writerow(out.key)
    return clean.getvalue(), rejects, keys.getvalue()


def fast(site, raw: Path, tmp_path: Path) -> tuple[str, list[dict], str, dict]:
    paths = [tmp_path / "clean.csv", tmp_path / "rejects.jsonl"]
    result = transform_file(site, *(ObjectStoragePath(p.as_uri()) for p in [raw, *paths]))
    text = paths[1].read_text(encoding="utf-8")
    rejects = [jsonvalues.loads(line) for line in text.splitlines()]  # numbers as Decimal
    keys = Path(ObjectStoragePath(result["rejected_keys_uri"]).path).read_text(encoding="utf-8")
    clean = paths[0].read_bytes().decode("utf-8")  # as COPY reads it: a \r is kept
    return clean, rejects, keys, result


def test_generated_feed_matches_the_reference(site, tmp_path, monkeypatch):
    """20,000 generated records (about 8% with a malformed value) and every hostile line, in
    several blocks: the same clean rows byte for byte, the same rejects and reasons."""
    monkeypatch.setattr(transform, "BLOCK_BYTES", 1 << 20)  # several blocks, lines cut across
    raw = tmp_path / "raw.jsonl"
    with open(raw, "w", encoding="utf-8", newline="") as out:
        for i, line in enumerate(feeds.lines(20_000)):
            out.write(line + ("\r\n" if i % 997 == 0 else "\n"))
            if i % 1000 == 500:
                out.write("\n".join(HOSTILE) + "\n")
    expected_clean, expected_rejects, expected_keys = reference(site, raw)
    by_reference = spy(monkeypatch, transform, "reference_line")
    clean, rejects, keys, result = fast(site, raw, tmp_path)
    # The fast path read the generated records: only the hostile lines went the slow way.
    assert len(by_reference) <= 20 * len(HOSTILE)
    assert clean == expected_clean
    assert rejects == expected_rejects
    assert keys == expected_keys
    assert result["clean"] == expected_clean.count("\n") > 18_000
    assert result["rejected"] == len(expected_rejects) > 1_500
    assert result["records"] == result["clean"] + result["rejected"]


def test_a_block_the_reader_refuses_goes_line_by_line(site, tmp_path, monkeypatch):
    """A line that looks like an object but is not JSON (a missing comma) makes polars refuse
    its block: that block goes through the reference, with the same output."""
    raw = tmp_path / "raw.jsonl"
    lines = list(feeds.lines(300))
    lines[150] = '{"symbol": "X" "name": "no comma", "last_price": "1"}'
    raw.write_text("\n".join(lines), encoding="utf-8")  # and no newline at the end
    expected_clean, expected_rejects, expected_keys = reference(site, raw)
    blocks = spy(monkeypatch, transform._Batch, "_reference")
    clean, rejects, keys, _ = fast(site, raw, tmp_path)
    assert len(blocks) == 1
    assert (clean, rejects, keys) == (expected_clean, expected_rejects, expected_keys)
    (no_comma,) = [r for r in rejects if r["line"] == 151]
    assert no_comma["reason"].startswith("malformed JSON line: Expecting ',' delimiter")


def spy(monkeypatch, owner, name: str) -> list:
    """Record each call of ``owner.name`` (still calling it)."""
    calls, real = [], getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("last_price", NUMBERS),
        ("change", NUMBERS),
        ("volume", NUMBERS),
        ("listed_on", DATES),
        ("quoted_at", DATETIMES),
        ("symbol", TEXTS),
        ("name", TEXTS),
    ],
)
def test_edge_values_match_the_reference(site, tmp_path, field, values):
    """Each edge value in a record of its own: read the same, or rejected for the same reason."""
    raw = tmp_path / "raw.jsonl"
    with open(raw, "w", encoding="utf-8") as out:
        for i, value in enumerate(values):
            rec = {"symbol": f"E{i}", "name": "edge", "last_price": "1", field: value}
            out.write(json.dumps(rec, ensure_ascii=i % 2 == 0) + "\n")
    expected_clean, expected_rejects, _ = reference(site, raw)
    clean, rejects, _, _ = fast(site, raw, tmp_path)
    assert clean.splitlines() == expected_clean.splitlines()
    assert rejects == expected_rejects


# A json_api site with the types the fast path leaves to the reference (boolean, json) and
# text kept verbatim (json_api's default) beside collapsed text.
TYPED_SITE_YAML = """\
kind: json_api
base_url_conn_id: site_typed
start_urls: ["/api/{region}/{trading_date}"]
regions: [europe]
natural_key: [id]
json_api: {records: items, pagination: none}
fields:
  id:       {type: text, path: id}
  flag:     {type: boolean, path: flag}
  tick:
    type: boolean
    path: tick
    true_values: ["yes", "\\u2713"]
    false_values: ["no", "\\u2717"]
  doc:      {type: json, path: doc}
  note:     {type: text, path: note}
  squeezed: {type: text, path: squeezed, whitespace: collapse}
  amount:   {type: decimal, path: amount}
quality: {max_reject_ratio: 1}
"""
# Each a JSON value as the feed carries it (literal JSON text, so numbers keep every digit).
TYPED_EDGES = {
    "flag": [
        "true", "false", '"true"', '"FALSE"', '" Yes "', '"no"', '"maybe"', '"1"', "0", "1",
        '""', '"  "', "null", '"\\u2713"', '{"a": 1}',
    ],
    "tick": ["true", "false", '"YES"', '"\\u2713"', '"\\u2717"', '"no"', '"true"', '"x"'],
    "doc": [
        '"{\\"a\\": [1, 2.50, {\\"b\\": null}], \\"c\\": \\"x\\\\ny\\"}"', '"[1, 2"', '"NaN"',
        '"\\"x\\""', '"  "', '""', '"{\\"a\\": 1, \\"a\\": 2}"', '"\\"\\\\u0000\\""',
        '"12345678901234567890.123456789"', '"true"', '"null"', '{"a": [1, 2.5]}', "[]",
        "0.1000000000000000055511151231257827", "false",
    ],
    "note": [
        '"  two  spaces\\n"', '"line\\r\\nbreak"', '"a\\rb"', '"\\t"', '""', '" "',
        '"x\\u0000y"', '"\\"q\\", c"', '"\\u00e9 \\u682a"', "12", "true", '{"k": [1, 2.50]}',
        '"\\u00a0"', '"\\u2028ls"', '"\\u001cfs"', "1e5", "0.1000000000000000055511151231257827",
    ],
    "squeezed": ['"  two  spaces\\n"', '"a\\rb"', '"x\\u0000y"', '""', "false", '"\\t"'],
    "amount": [
        "0.1000000000000000055511151231257827", "12345678901234567890.123456789",
        "123456789012345678901234567890", "-12345678901234567890.123456789", "1e5", "1E-7",
        '"1E-7"', "2.50", "-0.0", "true", "NaN", "Infinity",
        '"0.1000000000000000055511151231257827"',
    ],
}  # fmt: skip


@pytest.fixture
def typed_site(tmp_path: Path):
    path = tmp_path / "typed.yaml"
    path.write_text(TYPED_SITE_YAML, encoding="utf-8")
    return load_site(path, load_project().regions)


@pytest.mark.parametrize("field", sorted(TYPED_EDGES))
def test_booleans_json_and_kept_text_match_the_reference(typed_site, tmp_path, field):
    """Each edge value of the new types in a record of its own, amid ordinary records the
    fast path reads: the same rows, byte for byte, and the same rejects."""
    raw = tmp_path / "raw.jsonl"
    with open(raw, "w", encoding="utf-8") as out:
        for i, value in enumerate(TYPED_EDGES[field]):
            out.write(f'{{"id": "P{i}", "note": "plain {i}", "amount": "{i}.5"}}\n')
            out.write(f'{{"id": "E{i}", "{field}": {value}}}\n')
    expected_clean, expected_rejects, _ = reference(typed_site, raw)
    clean, rejects, _, _ = fast(typed_site, raw, tmp_path)
    assert clean == expected_clean
    assert rejects == expected_rejects
    assert len(rejects) < len(TYPED_EDGES[field])  # some of each read, some refused


def test_the_new_types_are_written_as_postgresql_reads_them(typed_site, tmp_path):
    """Booleans as true/false, json as its exact JSON text, kept text with its newlines and
    carriage returns quoted for COPY, decimals digit for digit."""
    raw = tmp_path / "raw.jsonl"
    raw.write_text(
        '{"id": "A", "flag": false, "tick": "\\u2713", "doc": "{\\"n\\": [1, 2.50], '
        '\\"s\\": \\"a\\\\nb\\"}", "note": " one\\r\\ntwo ", "squeezed": " one\\r\\ntwo ", '
        '"amount": 0.1000000000000000055511151231257827}\n'
        '{"id": "B", "flag": "yes", "tick": "no", "doc": "[]", "note": "x", "amount": '
        '"12345678901234567890.123456789"}\n',
        encoding="utf-8",
    )
    clean, rejects, _, _ = fast(typed_site, raw, tmp_path)
    assert rejects == []
    assert clean == (
        'A,false,true,"{""n"": [1, 2.50], ""s"": ""a\\nb""}"," one\r\ntwo ",one two,'
        "0.1000000000000000055511151231257827,,1\n"
        "B,true,false,[],x,,12345678901234567890.123456789,,2\n"
    )
    assert (clean, rejects) == reference(typed_site, raw)[:2]


def test_a_boolean_reject_names_the_value_and_the_spellings(typed_site, tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": "A", "tick": "maybe", "doc": "{\\"a\\": 1"}\n', encoding="utf-8")
    _, rejects, _, _ = fast(typed_site, raw, tmp_path)
    (reject,) = rejects
    assert reject["reason"] == (
        "tick: 'maybe' is not a boolean: it reads 'yes', '\u2713' as true and 'no', '\u2717' "
        "as false; doc: '{\"a\": 1' is not JSON: Expecting ',' delimiter: line 1 column 8 "
        "(char 7)"
    )


# JSON tokens as a JSON API sends them, each written into every field of a site: numbers
# (positional, exponent, signed zero, beyond a float's and a 64-bit int's digits), booleans,
# null, objects and arrays, and the non-JSON constants Python writes.
JSON_TOKENS = [
    "0", "-0", "7", "-7", "0.1", "-0.0", "0.10", "1.50", "1.5e20", "1.5E+20", "1E-7", "-1e-7",
    "0.0000001", "0.000001", "12345678901234567890.123456789", "-12345678901234567890.123456789",
    "12345678901234567890", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "123456789012345678901234567890", "1" + "0" * 999, "1" + "0" * 1200, "1" + "0" * 5000,
    "0." + "1" * 1500, "true", "false", "null", '{"a": [1, 2.50, {"b": null}], "c": true}',
    '{"a": 1, "a": 2}', "[]", "[1, -0, 1e2]", "NaN", "Infinity", "-Infinity", "01", "1.",
    ".5", "+1", "1 2", '"1.5e20"', '"-0"', '"\\u0001-0"', '"true"',
]  # fmt: skip


def _json_site(tmp_path: Path, yaml: str, name: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml, encoding="utf-8")
    return load_site(path, load_project().regions)


def _lenient_quotes(tmp_path: Path):
    """The JSON shape's site with nothing required and no reject limit: each odd line is read
    for all it holds."""
    yaml = feeds.JSON_SITE_YAML.replace("max_reject_ratio: 0.5", "max_reject_ratio: 1")
    yaml = yaml.replace(", required: true", "")
    return _json_site(tmp_path, yaml, "quotes")


@pytest.mark.parametrize("shape", sorted(feeds.SHAPES))
def test_each_feed_shape_matches_the_reference(tmp_path, monkeypatch, shape):
    """Each bench shape (an HTML table's strings; a JSON API's numbers, booleans and nulls;
    listing/detail pages, a URL each), 20,000 records in several blocks: the fast path reads
    nearly every record, and writes what the reference writes."""
    the_site = _json_site(tmp_path, feeds.SHAPES[shape], "shape")
    monkeypatch.setattr(transform, "BLOCK_BYTES", 1 << 20)
    raw = feeds.write_feed(tmp_path / "raw.jsonl", 20_000, shape=shape)
    expected = reference(the_site, raw)
    by_reference = spy(monkeypatch, transform, "reference_line")
    blocks = spy(monkeypatch, transform._Batch, "_reference")
    clean, rejects, keys, result = fast(the_site, raw, tmp_path)
    assert not blocks
    assert len(by_reference) < 20_000 * 0.03  # the rare exponents and odd tokens
    assert (clean, rejects, keys) == expected
    assert result["clean"] > 18_000
    assert 800 < result["rejected"] < 2_000


@pytest.mark.parametrize("token", JSON_TOKENS)
def test_json_tokens_in_every_field_match_the_reference(tmp_path, typed_site, token):
    """A JSON token in each field of two sites (text kept and collapsed, decimal, int,
    boolean with its own spellings and without, json, datetime, the page URL), amid records
    the fast path reads: the same rows byte for byte, the same rejects and reasons."""
    sites = [typed_site, _lenient_quotes(tmp_path)]
    for the_site in sites:
        raw = tmp_path / "raw.jsonl"
        key = the_site.natural_key[0]
        with open(raw, "w", encoding="utf-8") as out:
            for i, name in enumerate([*the_site.fields, "_url"]):
                plain = dict.fromkeys(the_site.fields, "1") | {key: f"P{i}", "_url": "u"}
                out.write(json.dumps(plain) + "\n")
                values = dict.fromkeys(the_site.fields, '"1"') | {"_url": '"u"', name: token}
                if name != key:
                    values[key] = f'"K{i}"'
                out.write("{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}\n")
        expected = reference(the_site, raw)
        assert fast(the_site, raw, tmp_path)[:3] == expected, the_site.name


# Lines on which a rewrite of number tokens could go wrong: a number after a colon inside a
# string, a string that starts with a colon, escaped quotes and backslashes, the tag itself.
TOKEN_TRAPS = [
    '{"pair": "K1", "bid": 1.5, "venue": "x\\": 5, \\"y"}',
    '{"pair": "K2", "bid": 1.5, "venue": ": 5}"}',
    '{"pair": "K3", "bid": 1.5, "venue": ": 5, "}',
    '{"pair": "K4", "bid": 1.5, "venue": "a\\\\", "ask": 2}',
    '{"pair": "K5", "bid": "\\u00011.5", "ask": 2}',
    '{"pair": "K6", "bid":1.5,"ask":2,"mid":-0,"volume":10,"firm":false}',
    '{"pair": "K7", "bid": 1.5 , "ask" : 2}',
    '{"pair": "K8", "bid": 1.5, "ask": 2,}',
    '{"pair": "K9", "bid": 1.5, "bid": 2.5}',
    '{"pair": "K10", "bid": 1.5, "firm": true, "firm": null}',
    '{"pair": "K11", "bid": 1.5, "extra": 3}',
    '{"pair": "K12", "bid": 1.5, "_url": 5}',
    '{"pair": "K13", "bid": 1.5, "_url": true}',
    '{"pair": "K14", "bid": 1.5, "_error": false}',
    '{"pair": "K15", "bid": -01.5}',
    '{"pair": "K16", "bid": 1.5 2}',
    '{"pair": "K17", "bid": 1.5, "venue": "\\u00e9 \\": 7"}',
]


def test_number_tokens_are_rewritten_only_where_they_are_values(tmp_path, monkeypatch):
    """Lines that could fool a rewrite of number tokens, each among ordinary JSON records: the
    same output as the reference (a block polars refuses after the rewrite goes line by line)."""
    the_site = _lenient_quotes(tmp_path)
    raw = tmp_path / "raw.jsonl"
    plain = list(feeds.lines(len(TOKEN_TRAPS), shape="json_api"))
    mixed = [x for pair in zip(plain, TOKEN_TRAPS, strict=True) for x in pair]
    raw.write_text("\n".join(mixed) + "\n")
    expected = reference(the_site, raw)
    assert fast(the_site, raw, tmp_path)[:3] == expected
    for trap in TOKEN_TRAPS:  # and each alone, so no one trap's block hides another's
        raw.write_text(plain[0] + "\n" + trap + "\n" + plain[1] + "\n")
        assert fast(the_site, raw, tmp_path)[:3] == reference(the_site, raw), trap


def test_a_string_that_starts_like_a_tagged_token_is_read_as_a_string(site, tmp_path):
    """A string written with the tag's own escape (\\u0001), in a feed without a single number
    token: read as the string it is, as the reference reads it."""
    raw = tmp_path / "raw.jsonl"
    lines = list(feeds.lines(12))
    lines[2] = '{"symbol": "TAG", "name": "\\u0001x", "last_price": "\\u0001-0"}'
    lines[3] = '{"symbol": "TAG2", "name": "n", "last_price": "1", "change": "\\u00011.5"}'
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = reference(site, raw)
    assert fast(site, raw, tmp_path)[:3] == expected
    assert {r["line"] for r in expected[1]} >= {3, 4}  # both refused: the tag is not a number's
