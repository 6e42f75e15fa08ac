"""The transform's vectorised fast path: whole columns of raw strings to clean CSV text at once.

It reads only the common shapes of each type (see the patterns below) and gives, per field, the
clean text of every value it read or null, and whether it read it. A value it does not read goes
to offpeak.pipeline.normalize, the per-record reference, which accepts it or says why not: so
the fast path never decides a reject, and every value it does accept it writes exactly as the
reference would (tests/unit/test_fastpath.py compares the two on generated and edge-case values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from offpeak import jsonvalues
from offpeak.pipeline.normalize import whitespace

if TYPE_CHECKING:
    from offpeak.config import Site

# What the transform puts before a number, true, false or null it reads as a string
# (transform._TOKEN): no string of the feed starts with it (a line that writes it, as \u0001,
# goes the slow way).
TAG = "\x01"


def untagged(value: Any) -> Any:
    """A raw value as json.loads reads it: a tagged token as its number (int or Decimal),
    boolean or None, anything else as it is."""
    if isinstance(value, str) and value.startswith(TAG):
        return jsonvalues.loads(value[1:])
    return value


def _as_text(name: str) -> pl.Expr:
    """normalize.as_text of a raw column whose tagged values are JSON tokens: a token as
    written, but for the int -0, which is 0 (true, false, ints and positional decimals are
    their own text), and null, which is null."""
    raw = pl.col(name)
    token = raw.str.strip_prefix(TAG)
    token = (
        pl.when(token == "-0")
        .then(pl.lit("0"))
        .when(token == "null")
        .then(pl.lit(None, pl.String))
        .otherwise(token)
    )
    return pl.when(raw.str.starts_with(TAG)).then(token).otherwise(raw).alias(name)


# Python's str.isspace() (what normalize's `\s` and strip() use) is Unicode White_Space, which
# is what `\s` means to polars' regex engine, plus the four C0 separators \x1c-\x1f.
_SPACE = r"[\s\x1c-\x1f]+"
# Currency codes written next to the amount (normalize._CODES) and the currency symbols the fast
# path knows (all Unicode category Sc, which normalize drops; any other goes the slow way).
_CODES = r"(?:[A-Z]{3}|kr|Kr|Rs|Fr|zł|A|C|NZ|HK|S|US|R)"
# Whole part: plain digits, or groups of three by one separator, or Indian lakh groups.
_WHOLE = (
    r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,3}(?:'[0-9]{3})+|[0-9]{1,3}(?: [0-9]{3})+"
    r"|[0-9]{1,3}(?:_[0-9]{3})+|[0-9]{1,2}(?:,[0-9]{2})+,[0-9]{3}|[0-9]+"
)
_NUMBER = (  # the shapes read; the value is then its digits and point
    rf"^\(?[+-]?(?:{_CODES}\.? ?)?[$€£¥]?(?:{_WHOLE})"
    rf"(?:\.[0-9]+)?(?: ?{_CODES}\.?)?%?\)?$"
)
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATETIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]$"
)
# Negative decimals longer than this go the slow way (the reference negates exactly, with
# copy_negate; they are rare enough not to read here).
_DECIMAL_DIGITS = 28
_INT_DIGITS = 18  # always within a signed 64-bit integer
_NUMERIC_CHECKED = 1000  # longer decimals go to the reference, which checks numeric's range


def blank(col: pl.Expr) -> pl.Expr:
    """normalize._blank on a column: runs of whitespace to one space, trimmed, empty to null."""
    text = col.str.replace_all(_SPACE, " ").str.strip_chars(" ")
    return pl.when(text == "").then(None).otherwise(text)


def _blank(name: str, kind: str) -> pl.Expr:
    """Text is blanked as normalize does: ``collapse`` text by normalize.to_text, ``keep``
    text by normalize.to_kept_text (as it is; null when empty). A typed field only
    loses its outer whitespace: the shapes the fast path reads hold no other whitespace than
    single spaces, so any value that blanking would change further is left to the reference
    anyway."""
    if kind == "collapse":
        return blank(pl.col(name))
    if kind == "keep":
        raw = pl.col(name)
        return pl.when(raw == "").then(None).otherwise(raw)
    text = pl.col(name).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _number(text: pl.Expr, name: str) -> list[pl.Expr]:
    """Stage 2 of a number: whether its shape is read, its sign, and its digits and point
    (currency codes with their dots, then every other mark, removed; leading zeros too, as
    Decimal and int drop them)."""
    shaped = text.str.contains(_NUMBER) & (text.str.starts_with("(") == text.str.ends_with(")"))
    digits = text.str.replace_all(r"[A-Za-zł]+\.?|[^0-9.]", "").str.replace(r"^0+([0-9])", "$1")
    return [
        shaped.alias(f"{name}?"),
        (text.str.starts_with("(") | text.str.starts_with("-")).alias(f"{name}-"),
        digits.alias(f"{name}.d"),
    ]


def _number_value(name: str, *, decimal: bool) -> list[pl.Expr]:
    """Stage 3 of a number: its clean text, and whether the fast path read it (the rest of the
    checks: no exponent notation, no rounding on negation, a whole number, 64-bit)."""
    shaped, negative, digits = pl.col(f"{name}?"), pl.col(f"{name}-"), pl.col(f"{name}.d")
    if decimal:
        # Decimal's str() turns to exponent notation below 1e-6 ("0.0000001" is "1E-7"), and
        # long negatives: both left to the reference.
        tiny = digits.str.starts_with("0.000000")
        long = negative & (digits.str.len_bytes() > _DECIMAL_DIGITS)
        # PostgreSQL's numeric holds 16383 digits after the point: the reference checks.
        huge = digits.str.len_bytes() > _NUMERIC_CHECKED
        read = shaped & ~tiny & ~long & ~huge
    else:
        digits = digits.str.replace(r"\.0*$", "")
        whole = ~digits.str.contains(".", literal=True)
        read = shaped & whole & (digits.str.len_bytes() <= _INT_DIGITS)
    zero = digits.str.contains(r"^[0.]+$")  # -0 and -0.00 are written without the sign
    value = pl.when(negative & ~zero).then(pl.concat_str(pl.lit("-"), digits)).otherwise(digits)
    return [read.alias(f"{name}?"), value.alias(name)]


def _date(text: pl.Expr) -> pl.Expr:
    shaped = text.str.contains(_DATE) & ~text.str.starts_with("0000")
    return shaped & text.str.strptime(pl.Date, "%Y-%m-%d", strict=False).is_not_null()


def _datetime(text: pl.Expr) -> pl.Expr:
    """The shape (time and offset in range) by the pattern; the day by the calendar."""
    shaped = text.str.contains(_DATETIME) & ~text.str.starts_with("0000")
    shaped = shaped & ~text.str.ends_with("-00:00")  # fromisoformat writes it back as +00:00
    day = text.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    return shaped & day.is_not_null()


def read_fields(site: Site, raw: pl.DataFrame, tagged: Sequence[str] = ()) -> pl.DataFrame:
    """``raw``: one row per record, each field's raw string (or null), ``_url``, ``_line`` and
    ``line`` (the JSON text); the fields named in ``tagged`` hold tagged tokens (TAG), read as
    normalize.as_text writes the value, a null as null (every converter but a boolean's and a
    json's reads a JSON number or boolean as that text; a boolean field reads JSON true and
    false, a json field nothing). Returns, per field ``f``: ``f`` (its clean CSV text, or
    null), ``f?`` (true where the fast path read it, a null or blank included) and ``f!`` (the
    raw value, for the reference); ``_read`` (every field read), ``source_url``, ``_line``,
    ``line``. A required field that is null or blank is not read: the reference says why.

    Three stages, each a set of columns computed in parallel: the blanked text; each type's
    parts; the values."""
    fields = site.fields
    required = site.required_fields()
    kinds = {
        name: whitespace(spec, site.kind) if spec.type == "text" else spec.type
        for name, spec in fields.items()
    }
    if tagged:
        raw = raw.with_columns(
            *(pl.col(name).alias(f"{name}!") for name in tagged),
            *(_as_text(name) for name in tagged),
        )
    frame = raw.select(
        *(_blank(name, kinds[name]).alias(name) for name, spec in fields.items()),
        *(pl.col(f"{name}!" if name in tagged else name).alias(f"{name}!") for name in fields),
        pl.when(pl.col("_url") != "").then(pl.col("_url")).alias("source_url"),
        "_line",
        "line",
    )
    stage2: list[pl.Expr] = []
    stage3: list[pl.Expr] = []
    for name, spec in fields.items():
        text = pl.col(name)
        if spec.type in ("int", "decimal"):
            stage2 += _number(text, name)
            stage3 += _number_value(name, decimal=spec.type == "decimal")
        elif spec.formats:  # a date or datetime as the site prints it: the reference reads it
            stage2.append(pl.lit(False).alias(f"{name}?"))
        elif spec.type == "date":
            stage2.append(_date(text).alias(f"{name}?"))
        elif spec.type == "datetime":
            stage2.append(_datetime(text).alias(f"{name}?"))
        elif spec.type == "text":  # a NUL, which PostgreSQL cannot store: the reference refuses
            stage2.append(text.str.contains("\x00", literal=True).not_().alias(f"{name}?"))
        elif spec.type == "boolean" and name in tagged:
            # JSON true and false are themselves whatever the spellings; any other value, text
            # included, the reference reads, once per distinct value.
            literal = pl.col(f"{name}!").is_in([f"{TAG}true", f"{TAG}false"])
            stage2.append(literal.alias(f"{name}?"))
        else:  # json (and booleans as text): the reference reads them, once per distinct value
            stage2.append(pl.lit(False).alias(f"{name}?"))
    frame = frame.with_columns(stage2)
    if stage3:
        frame = frame.with_columns(stage3)
    out = []
    for name in fields:
        value, read = pl.col(name), pl.col(f"{name}?")
        read = pl.when(value.is_null()).then(name not in required).otherwise(read.fill_null(False))
        out += [pl.when(read).then(value).alias(name), read.alias(f"{name}?"), f"{name}!"]
    frame = frame.select(*out, "source_url", "_line", "line")
    return frame.with_columns(_read=pl.all_horizontal([f"{name}?" for name in fields]))
