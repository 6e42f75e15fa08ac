"""A field's text from a page: its locator compiled once, then its re and negative_when."""

from __future__ import annotations

import re
from typing import Any

import scrapy
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator

from offpeak.scraping.siteconfig import Locator


def joined(found: list[str], sep: str) -> str | None:
    """The matches joined; None when there are none or they hold only whitespace (an XPath
    string function such as ``substring-before()`` gives "" when it finds nothing)."""
    text = sep.join(found) if found else None
    return text if text and not text.isspace() else None


def extract(selector: scrapy.Selector, spec: Locator) -> str | None:
    """All text the field's selector matches, joined; None when it matches nothing."""
    found = selector.css(spec.css).getall() if spec.css else selector.xpath(spec.xpath).getall()
    return joined(found, spec.join)


# A text already written negative: a minus sign the number reader knows (the crawl does not
# import it: offpeak.pipeline.normalize.MINUS_SIGNS, held equal by test_field_extraction),
# or an accounting "(1.20)".
NEGATIVE_STARTS = ("-", "\u2212", "\u2012", "\u2013", "(")


def negated(text: str) -> str:
    """``text`` written negative, unless it already is (a minus sign, an accounting "(")."""
    stripped = text.strip()
    return stripped if stripped.startswith(NEGATIVE_STARTS) else "-" + stripped


class Finish:
    """What a field's ``re``, ``negative_when`` and ``default`` make of the text found."""

    __slots__ = ("default", "negative", "pattern")

    def __init__(self, spec: Locator) -> None:
        self.pattern = re.compile(spec.re) if spec.re else None
        self.negative = spec.negative_when
        self.default = None if spec.default is None else str(spec.default)

    def __call__(self, text: str | None, selector: Any) -> str | None:
        if text is not None and self.pattern is not None:
            found = self.pattern.search(text)
            text = None if found is None else found.group(1 if self.pattern.groups else 0)
            text = text if text and not text.isspace() else None
        if text is not None and self.negative and selector.css(self.negative):
            text = negated(text)
        return text

    @staticmethod
    def wanted(spec: Locator) -> bool:
        return bool(spec.re or spec.negative_when)


class FieldReader:
    """``extract`` for one field, its locator compiled once.

    parsel wraps every match in a Selector and serializes it back; for the usual locator,
    whose matches are text (``::text``, ``::attr()``, ``text()``, ``@attr``), that is most of
    a crawl's time per item. The compiled XPath (the same query parsel would run, CSS
    translated by parsel's translator) gives that text directly; any other match (elements,
    numbers) and any non-HTML selector go through ``extract``, so the value is always parsel's.
    The field's ``re`` and ``negative_when`` then apply (``default``: ConfiguredSpider).
    """

    __slots__ = ("finish", "spec", "xpath")
    translator = HTMLTranslator()

    def __init__(self, spec: Locator) -> None:
        self.spec = spec
        query = self.translator.css_to_xpath(spec.css) if spec.css else spec.xpath
        self.xpath = etree.XPath(
            query, namespaces=Selector._default_namespaces, smart_strings=False
        )
        self.finish = Finish(spec) if Finish.wanted(spec) else None

    def __call__(self, selector: Any) -> str | None:
        if not isinstance(selector, Selector):
            selector = selector.selector  # a response
        text = self._text(selector)
        return text if self.finish is None else self.finish(text, selector)

    def _text(self, selector: Selector) -> str | None:
        if selector.type == "html":
            found = self.xpath(selector.root)
            if found.__class__ is list and all(v.__class__ is str for v in found):
                return joined(found, self.spec.join)
        return extract(selector, self.spec)


def header_problems(
    texts: list[str], expected: dict[int, str], wanted: dict[str, str], section: str
) -> tuple[list[str], dict[str, int]]:
    """A table's header against what the site reads of it: ``expected`` {column number:
    text} (``<section>.header``) and ``wanted`` {what: header text} (the ``column`` fields,
    each once). Returns why it does not match (naming each column that moved, and where
    to), and {what: 0-based column} of the wanted columns found once."""
    problems, found = [], {}
    for pos, want in sorted(expected.items()):
        got = texts[pos - 1] if pos <= len(texts) else None
        if got != want:
            now = [i + 1 for i, t in enumerate(texts) if t == want]
            where = f"it is now column {now[0]}" if now else "no column has that header"
            problems.append(
                f"column {pos} is headed {got!r}, not {want!r} ({section}.header): column "
                f"{want!r} moved, {where}"
            )
    for what, want in wanted.items():
        at = [i for i, t in enumerate(texts) if t == want]
        if len(at) == 1:
            found[what] = at[0]
        elif not at:
            problems.append(f"{what}: no column is headed {want!r}")
        else:
            columns = ", ".join(str(i + 1) for i in at)
            problems.append(f"{what}: columns {columns} are all headed {want!r}")
    return problems, found
