"""(d) The data_file spider: rows of a CSV or records of an XML file, plain, zipped or gzipped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import scrapy

from offpeak.crawl import contract
from offpeak.scraping import files
from offpeak.scraping.secret import stored_url
from offpeak.scraping.spiders.base import ConfiguredSpider
from offpeak.scraping.spiders.fields import FieldReader, Finish, header_problems, negated

DOWNLOAD_META = "offpeak_download"


class DataFileSpider(ConfiguredSpider):
    """(d) A file a site publishes, read whole: one record per CSV row (or per value column
    of a row, melted) or per XML record; with ``date_field``, only the rows of the run's
    trading date (and ``history_days`` before it). A download kept today is asked for again
    with its ETag / Last-Modified, and a 304 reads the kept copy (offpeak.scraping.files)."""

    name = "data_file"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg, fields = self.site.section, self.site.fields
        self.finishes = {
            n: Finish(replace(s, negative_when=None)) for n, s in fields.items() if s.re
        }
        # negative_when: a CSV column whose non-blank cell, or an XPath from the XML record
        # that finds something, marks the number negative (not a CSS selector, as on a page).
        self.negative = {n: s.negative_when for n, s in fields.items() if s.negative_when}
        self.readers = {
            name: FieldReader(replace(spec, negative_when=None))
            for name, spec in fields.items()
            if spec.xpath
        }
        self.first_day = self.last_day = None
        self.read_date = None
        if cfg.date_field:
            self.last_day = date.fromisoformat(self.trading_date)
            self.first_day = self.last_day - timedelta(days=cfg.history_days)
            self.read_date = date_reader(fields[cfg.date_field].formats)
        self.melt = cfg.melt
        # The fields read from a row's own columns, and, melted, from its value column's
        # header (var_name) and its cell (value_name).
        melt_names = (self.melt["var_name"], self.melt["value_name"]) if self.melt else ()
        self.row_fields = {
            n: s.column for n, s in fields.items() if s.column and s.column not in melt_names
        }
        self.var_fields = [
            n for n, s in fields.items() if self.melt and s.column == self.melt["var_name"]
        ]
        self.value_fields = [
            n for n, s in fields.items() if self.melt and s.column == self.melt["value_name"]
        ]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        self.downloads = files.Downloads(self.settings.get(contract.DOWNLOADS_DIR))
        for url in self.start_urls_for_run():
            self.logger.info("Start URL: %s", stored_url(url))
            key = files.cache_key(stored_url(url))
            meta = {"handle_httpstatus_list": [304], DOWNLOAD_META: key}
            yield self.request(
                url, callback=self.parse, headers=self.downloads.validators(key), meta=meta
            )

    def parse(self, response: scrapy.http.Response) -> Iterator[Any]:
        url = stored_url(response.url)
        why = self.cut_short(response)  # the file's charset is the YAML's, not readable()'s
        if why:
            yield self.unreadable(response, why, "truncated")
            return
        body = self.download_body(response, url)
        if body is None:  # a 304, but the kept copy is gone (removed meanwhile): fetch it whole
            self.logger.warning("%s: no copy kept to go with its 304; downloading it again", url)
            meta = {DOWNLOAD_META: response.meta[DOWNLOAD_META]}  # no validators, no 304
            yield self.request(response.url, callback=self.parse, meta=meta, dont_filter=True)
            return
        cfg = self.site.section
        maxsize = self.settings.getint("DOWNLOAD_MAXSIZE")
        try:
            data = files.opened(body, cfg, maxsize, url)
            if cfg.format == "xml":
                yield from self.xml_items(data, url)
            else:
                yield from self.csv_items(data, url)
        except files.Refused as refused:
            yield self.unreadable(response, refused.why, refused.cause)

    def download_body(self, response: scrapy.http.Response, url: str) -> bytes | None:
        """The file: the response's, kept for the day's later runs, or on a 304 the copy kept."""
        key = response.meta[DOWNLOAD_META]
        if response.status == 304:
            self.crawler.stats.inc_value(contract.FILE_NOT_MODIFIED)
            self.logger.info("%s is not modified since the copy kept today: reading that", url)
            return self.downloads.body(key)
        self.crawler.stats.inc_value(contract.FILE_DOWNLOADED)
        header = response.headers.get
        etag, modified = header("ETag"), header("Last-Modified")
        self.downloads.keep(
            key, url, response.body,
            etag.decode("latin-1") if etag else None,
            modified.decode("latin-1") if modified else None,
        )  # fmt: skip
        return response.body

    # ------------------------------------------------------------------ CSV

    def csv_items(self, data: bytes, url: str) -> Iterator[dict[str, Any]]:
        cfg = self.site.section
        table = files.csv_table(files.text_of(data, cfg.encoding, url), cfg, url)
        wanted = {f"field {n}": c for n, c in self.row_fields.items()}
        wanted |= {f"field {n} (negative_when)": c for n, c in self.negative.items()}
        if self.melt:
            wanted |= {f"data_file.melt.id_columns {c!r}": c for c in self.melt["id_columns"]}
            wanted |= {f"data_file.melt.value_columns {c!r}": c for c in self.melt["value_columns"]}
        expected = {int(k): v for k, v in cfg.header.items()}
        problems, _ = header_problems(table.columns, expected, wanted, "data_file")
        if problems:
            raise files.Refused(
                "columns_moved",
                f"its header does not match the site's columns: {'; '.join(problems)}; its "
                f"header reads {table.columns}. None of its rows are stored rather than read "
                "from columns that may now hold other values",
            )
        at = {c: i for i, c in reversed(list(enumerate(table.columns)))}
        row_at = {n: at[c] for n, c in self.row_fields.items()}
        sign_at = {n: at[c] for n, c in self.negative.items()}
        values = files.melted(table.columns, self.melt) if self.melt else []
        missing = {v.strip() for v in self.melt["missing_values"]} if self.melt else set()
        skip_missing = bool(self.melt) and self.melt["on_missing"] == "skip"
        skipped, other_dates = table.skipped, 0
        for row in table.rows:
            base = {n: self.finished(n, _cell(row, i)) for n, i in row_at.items()}
            marked = {n for n, i in sign_at.items() if _cell(row, i) is not None}
            for n in marked & base.keys():
                base[n] = None if base[n] is None else negated(base[n])
            if not self.on_the_dates(base):
                other_dates += 1
                continue
            if not self.melt:
                yield self.completed(base, url)
                continue
            for i, column in values:
                cell = _cell(row, i)
                if (cell or "").strip() in missing and skip_missing:
                    skipped += 1
                    continue
                item = dict(base)
                for n in self.var_fields:
                    item[n] = self.finished(n, column)
                for n in self.value_fields:
                    value = self.finished(n, cell)
                    item[n] = negated(value) if value is not None and n in marked else value
                yield self.completed(item, url)
        self.count(skipped, other_dates)

    # ------------------------------------------------------------------ XML

    def xml_items(self, data: bytes, url: str) -> Iterator[dict[str, Any]]:
        skipped, other_dates = 0, 0
        namespaces = self.site.section.namespaces
        for record in files.xml_records(data, self.site.section, url):
            item = {name: read(record) for name, read in self.readers.items()}
            for n, xpath in self.negative.items():
                if item.get(n) is not None and _found(
                    record.root.xpath(xpath, namespaces=namespaces)
                ):
                    item[n] = negated(item[n])
            if all(v is None for v in item.values()):
                skipped += 1
            elif not self.on_the_dates(item):
                other_dates += 1
            else:
                yield self.completed(item, url)
        self.count(skipped, other_dates)

    # ------------------------------------------------------------------ both

    def finished(self, name: str, text: str | None) -> str | None:
        finish = self.finishes.get(name)
        return text if finish is None else finish(text, None)

    def on_the_dates(self, item: dict[str, Any]) -> bool:
        """Whether the record's date_field is the trading date or within history_days
        before it. A date that does not read is kept: the transform rejects it, naming it."""
        if self.read_date is None:
            return True
        try:
            day = self.read_date(item.get(self.site.section.date_field))
        except ValueError:
            return True
        return day is None or self.first_day <= day <= self.last_day

    def count(self, skipped: int, other_dates: int) -> None:
        if skipped:
            self.crawler.stats.inc_value(contract.ROWS_SKIPPED, skipped)
        if other_dates:
            self.crawler.stats.inc_value(contract.FILE_OTHER_DATES, other_dates)
            self.logger.info(
                "%d row(s) of other dates than %s to %s not loaded (data_file.date_field %s)",
                other_dates, self.first_day, self.last_day, self.site.section.date_field,
            )  # fmt: skip


def _cell(row: list[str], index: int) -> str | None:
    """A CSV cell as written; an empty one (or one past the row's end) is nothing found."""
    text = row[index] if index < len(row) else ""
    return text if text.strip() else None


def date_reader(formats: tuple[str, ...] | list[str]) -> Any:
    """A date field's reader, as the transform reads it (offpeak.pipeline.normalize, which the
    crawl does not import): its strptime ``formats`` in order, else ISO 8601; blank is None;
    ValueError when the text is no date."""

    def read(text: str | None) -> date | None:
        text = (text or "").strip()
        if not text:
            return None
        for fmt in formats:
            try:
                return datetime.strptime(text, fmt).date()  # noqa: DTZ007 - a calendar date
            except ValueError:
                continue
        if formats:
            raise ValueError(f"{text!r} is in none of the formats {list(formats)}")
        return date.fromisoformat(text)

    return read


def _found(result: Any) -> bool:
    """Whether an XPath result finds something: true, a non-zero number, a non-blank string,
    or a node set holding any node or non-blank text."""
    if isinstance(result, list):
        return any(not isinstance(r, str) or r.strip() for r in result)
    if isinstance(result, str):
        return bool(result.strip())
    return bool(result)
