"""The model of a site's output field (fields.<name>) and the checks of its selectors."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from offpeak.config.common import _Strict

# Columns the warehouse adds to every site table; a site field may not shadow them.
RESERVED_COLUMNS = frozenset({"region", "trading_date", "run_id", "loaded_at", "source_url"})
FieldType = Literal["text", "int", "decimal", "date", "datetime", "boolean", "json"]


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
    take its value from what was found (docs/adding-a-site.md, "Fields")."""

    type: FieldType = Field(
        description="text, int, decimal, date (YYYY-MM-DD unless `formats`), datetime (ISO "
        "8601 with offset unless `formats` / `timezone`), boolean, json (stored as jsonb)."
    )
    css: str | None = Field(
        None,
        description="CSS selector (parsel: ::text, ::attr(name)), relative to the row or "
        "detail page.",
    )
    xpath: str | None = Field(None, description="XPath, relative to the row or detail page.")
    path: str | None = Field(
        None, description="json_api: dotted path in the record (list positions as numbers)."
    )
    # bool first: YAML's true stays true.
    const: bool | str | int | float | None = Field(
        None,
        description="A fixed value for every row (no locator): the board's currency, its "
        "market segment.",
    )
    column: str | None = Field(
        None,
        description="html_table: the text of the column's header cell; the field is that "
        "column's cell in each row, the column found anew on every page.",
    )
    required: bool = Field(False, description="An empty value rejects the record.")
    measure: bool = Field(False, description="int or decimal: a measure the rollups summarise.")
    join: str = Field(" ", description="Several matches of the locator are joined by this.")
    re: str | None = Field(
        None,
        description="A regular expression searched in the located text; the field is its "
        "first group (the whole match without a group), as Scrapy's re_first. No match: "
        "nothing found.",
    )
    default: bool | str | int | float | None = Field(
        None,
        description="The value when nothing was found (no match, a blank text or no regex match).",
    )
    negative_when: str | None = Field(
        None,
        description="int or decimal: a CSS selector matched in the row (or detail page); "
        "where it matches, the number is negative (a sign shown only as a class). In a "
        "data_file: a CSV column whose cell, where not blank, marks the number negative, or an "
        "XPath from the XML record that, where it finds something (or is true), does.",
    )
    formats: list[str] = Field(
        default_factory=list,
        description="date and datetime: the strptime formats the site prints, tried in order "
        '("%b %d, %Y", "%d.%m.%Y"); none: ISO 8601 only.',
    )
    timezone: str | None = Field(
        None,
        description='datetime: the IANA zone of a time printed without an offset; "region" '
        "is the region's own (DST-correct); none: an offset is required.",
    )
    whitespace: Literal["collapse", "keep"] | None = Field(
        None,
        description='text: "collapse" turns each run of whitespace into one space and trims '
        '(what a browser shows); "keep" stores the text exactly. Unset: keep on a json_api '
        "site, else collapse.",
    )
    true_values: list[str] | None = Field(
        None,
        description="boolean: the texts read as true, compared case-insensitively (a JSON "
        "true is read as it is). Unset: true, yes.",
    )
    false_values: list[str] | None = Field(
        None,
        description="boolean: the texts read as false, compared case-insensitively. Unset: "
        "false, no.",
    )

    # An invalid selector would otherwise pass the config check and fail every crawl.
    # negative_when is checked by the site (offpeak.config.sites), which knows the kind: a CSS
    # selector on a page, a column or an XPath in a data file.
    @field_validator("css", "xpath")
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
            raise ValueError(
                "negative_when needs a css, xpath or column locator (it is matched there)"
            )
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
