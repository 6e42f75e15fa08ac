"""(a) The html_table spider: rows of an HTML table, pages followed by a next link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import scrapy
from parsel import Selector

from offpeak.crawl import contract
from offpeak.scraping.secret import stored_url
from offpeak.scraping.siteconfig import CrawlSite
from offpeak.scraping.spiders.base import ConfiguredSpider, on_readable_pages
from offpeak.scraping.spiders.fields import Finish, header_problems, joined


class HtmlTableSpider(ConfiguredSpider):
    """(a) Rows of an HTML table spread over pages linked by a "next" link."""

    name = "html_table"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        skip_text = getattr(self.site.section, "skip_text", None)
        self.skip_text = re.compile(skip_text) if skip_text else None
        self.header = HeaderCheck.of(self.site)

    def parse_rows(self, response: scrapy.http.Response, rows: Any) -> Any:
        """How this page's rows are read: ``item_from``, or, when the site names columns by
        header or checks the header, a reader of the columns found in this page's header row;
        a string (the reason) when the header does not match."""
        if self.header is None:
            return self.item_from
        resolved = self.header.resolve(response, rows)
        if isinstance(resolved, str):
            return resolved
        found, header_row = resolved

        def read(row: Selector, url: str) -> dict[str, Any] | None:
            if row.root is header_row:  # the row selector matches the header row too
                return None
            item = {name: reader(row) for name, reader in self.readers.items()}
            item.update(self.header.cells(row, found))
            if all(v is None for v in item.values()):
                return None
            return self.completed(item, url)

        return read

    @on_readable_pages
    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        cfg = self.site.section
        url = stored_url(response.url)
        rows = response.css(cfg.rows)
        if not rows:
            yield self.unreadable(response, f"no rows match {cfg.rows!r}")
        elif rows[-1].root.tag == "tr" and (after := rows[-1].xpath("following-sibling::tr")):
            # The row selector stopped matching mid-table: what follows would be lost unseen.
            self.crawler.stats.inc_value(contract.INCOMPLETE_PREFIX + "rows_unmatched")
            self.logger.warning(
                "%s: %d table rows after the last one %r matches are not read",
                url, len(after), cfg.rows,
            )  # fmt: skip
        skipped = 0
        not_data = {s.root for css in getattr(cfg, "skip_rows", ()) for s in response.css(css)}
        read = self.parse_rows(response, rows) if rows else self.item_from
        if isinstance(read, str):  # the columns moved: no row of this page is read
            yield self.unreadable(response, read, "columns_moved")
            rows = []
        for row in rows:
            if row.root in not_data or (self.skip_text and self._text_skipped(row)):
                skipped += 1
                continue
            item = read(row, url)
            if item is None:
                skipped += 1
            else:
                yield item
        if skipped:
            self.crawler.stats.inc_value(contract.ROWS_SKIPPED, skipped)
        yield from self.next_page(response, cfg.next_page)

    def _text_skipped(self, row: Selector) -> bool:
        """Whether ``skip_text`` is found in the row's text (whitespace runs as one space)."""
        text = " ".join(" ".join(row.xpath(".//text()").getall()).split())
        return self.skip_text.search(text) is not None


def _collapsed(texts: list[str]) -> str:
    return " ".join(" ".join(texts).split())


def _by_position(row: Selector) -> list[Selector]:
    """The row's cells (td and th) by column position: a cell spanning n columns (colspan)
    stands at each of them."""
    cells: list[Selector] = []
    for cell in row.xpath("./td|./th"):
        span = cell.attrib.get("colspan", "1")
        cells += [cell] * (int(span) if span.isdigit() and 0 < int(span) < 1000 else 1)
    return cells


class HeaderCheck:
    """An html_table's columns read from each page's header row: fields with ``column`` find
    their cell by header text, and ``html_table.header`` says which text each numbered column
    must have. A page whose header does not match is unreadable, naming the column."""

    def __init__(self, site: CrawlSite) -> None:
        cfg = site.section
        self.header_row = getattr(cfg, "header_row", None)
        self.expected = {int(k): v for k, v in (getattr(cfg, "header", None) or {}).items()}
        self.columns = {name: spec.column for name, spec in site.fields.items() if spec.column}
        self.specs = {name: site.fields[name] for name in self.columns}
        self.finish = {n: Finish(s) for n, s in self.specs.items() if Finish.wanted(s)}

    @classmethod
    def of(cls, site: CrawlSite) -> HeaderCheck | None:
        check = cls(site)
        return check if check.expected or check.columns else None

    def header_of(self, response: scrapy.http.Response, rows: Any) -> Selector | None:
        """The page's header row."""
        if self.header_row:
            found = response.css(self.header_row)
        else:  # the first row of <th> cells in the table of the first data row
            found = rows[0].xpath("ancestor::table[1]").xpath(".//tr[th][1]")
        return found[0] if found else None

    def resolve(
        self, response: scrapy.http.Response, rows: Any
    ) -> tuple[dict[str, int], Any] | str:
        """({field: column index} for the ``column`` fields, the header row's element), or
        why the header does not match (a reason naming the column and what the page has)."""
        header = self.header_of(response, rows)
        if header is None:
            where = (
                f"html_table.header_row {self.header_row!r} matches nothing"
                if self.header_row
                else "no row of <th> cells in the table (set html_table.header_row)"
            )
            return f"no header row to check the table's columns by: {where}"
        # The header cells' texts by column position (whitespace runs as one space).
        texts = [_collapsed(c.xpath(".//text()").getall()) for c in _by_position(header)]
        wanted = {f"field {name}": want for name, want in self.columns.items()}
        problems, at = header_problems(texts, self.expected, wanted, "html_table")
        found = {name: at[f"field {name}"] for name in self.columns if f"field {name}" in at}
        if problems:
            return (
                "its table header does not match the site's columns: "
                f"{'; '.join(problems)}; its header row reads {texts}. None of its rows are "
                "stored: read by position, a moved column gives another column's values"
            )
        return found, header.root

    def cells(self, row: Selector, found: dict[str, int]) -> dict[str, str | None]:
        """Each ``column`` field's text in ``row``: its cell's whole text as the document
        holds it (XPath's string value: ``RFC 7231</a>, Section 6.2`` stays ``RFC 7231,
        Section 6.2``, where joining the pieces would put a space before the comma)."""
        cells = _by_position(row)
        values: dict[str, str | None] = {}
        for name, index in found.items():
            text = None
            if index < len(cells):
                text = joined(cells[index].xpath(".//text()").getall(), "")
            finish = self.finish.get(name)
            values[name] = text if finish is None else finish(text, row)
        return values
