"""The data_file kind's reading of a file (offpeak.scraping.files) and its config checks: the
CSV options, the archives, the size cap, the XML entity refusal, and the YAML mistakes each
named on its own field."""

from __future__ import annotations

import gzip
import io
import zipfile
from types import SimpleNamespace

import pytest

from offpeak.config import Site
from offpeak.scraping import files
from offpeak.scraping.spiders.data_file import date_reader

URL = "http://site.test/rates.csv"


def csv_section(**options) -> SimpleNamespace:
    base = {
        "compression": "auto", "member": None, "encoding": "utf-8", "delimiter": ",",
        "quotechar": '"', "header_rows": 1, "skip_lines": 0, "comment": None, "skip_footer": 0,
        "namespaces": {}, "records": None,
    }  # fmt: skip
    return SimpleNamespace(**{**base, **options})


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_csv_with_a_bom_a_title_comments_two_header_rows_and_a_footer():
    text = (
        "\ufeffDaily rates\n"
        "# published at 16:00 CET\n"
        "Date;Spot;Spot\n"
        ";USD;JPY\n"
        '2026-10-06;1,08;"163,2"\n'
        "\n"
        "# a note\n"
        "2026-10-05;1,07;162,9\n"
        "Source: a central bank\n"
    ).encode()
    section = csv_section(delimiter=";", header_rows=2, skip_lines=1, comment="#", skip_footer=1)
    table = files.csv_table(files.text_of(text, "utf-8", URL), section, URL)
    assert table.columns == ["Date", "Spot USD", "Spot JPY"]
    assert table.rows == [["2026-10-06", "1,08", "163,2"], ["2026-10-05", "1,07", "162,9"]]
    assert table.skipped == 1  # the blank row


def test_the_bom_is_never_part_of_the_first_columns_name():
    text = files.text_of("\ufeffDate,USD\n2026-10-06,1.08\n".encode(), "utf-8", URL)
    assert files.csv_table(text, csv_section(), URL).columns == ["Date", "USD"]


def test_zip_and_gzip_are_recognised_by_their_first_bytes():
    data = b"Date,USD\n2026-10-06,1.08\n"
    assert files.opened(zipped({"r.csv": data}), csv_section(), 1 << 20, URL) == data
    assert files.opened(gzip.compress(data), csv_section(), 1 << 20, URL) == data
    assert files.opened(data, csv_section(), 1 << 20, URL) == data


def test_an_archive_of_several_members_needs_one_named():
    archive = zipped({"a.csv": b"x\n", "b.csv": b"y\n"})
    with pytest.raises(files.Refused) as refused:
        files.opened(archive, csv_section(), 1 << 20, URL)
    assert "holds 2 members ['a.csv', 'b.csv']: name one in data_file.member" in refused.value.why
    assert files.opened(archive, csv_section(member="b.csv"), 1 << 20, URL) == b"y\n"
    with pytest.raises(files.Refused, match=r"has no member 'c\.csv'"):
        files.opened(archive, csv_section(member="c.csv"), 1 << 20, URL)


@pytest.mark.parametrize(
    "name", ["../evil.csv", "/etc/evil.csv", "a/../../evil.csv", "..\\evil.csv", "C:/evil.csv"]
)
def test_a_member_path_that_leaves_the_folder_refuses_the_archive(name):
    with pytest.raises(files.Refused) as refused:
        files.opened(zipped({name: b"x\n"}), csv_section(), 1 << 20, URL)
    assert refused.value.cause == "zip_slip" and repr(name) in refused.value.why


def test_a_stream_that_inflates_past_the_cap_is_refused_whatever_it_declares():
    bomb = gzip.compress(b"0" * 5000)
    with pytest.raises(files.Refused) as refused:
        files.opened(bomb, csv_section(), 4096, URL)
    assert refused.value.cause == "too_large"
    assert "inflates past politeness.download_maxsize (4,096 bytes)" in refused.value.why
    assert files.opened(bomb, csv_section(), 5000, URL) == b"0" * 5000


def test_an_xml_file_declaring_entities_is_refused_and_nothing_is_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    doc = (
        f"<?xml version='1.0'?><!DOCTYPE r [<!ENTITY s SYSTEM '{secret.as_uri()}'>]>"
        "<r><rate v='&s;'/></r>"
    ).encode()
    section = csv_section(records="//rate")
    with pytest.raises(files.Refused) as refused:
        files.xml_records(doc, section, URL)
    assert refused.value.cause == "xml_entity"
    assert "the secret" not in refused.value.why
    plain = b"<?xml version='1.0'?><r><rate v='1.08'/><rate v='163.2'/></r>"
    assert [r.attrib["v"] for r in files.xml_records(plain, section, URL)] == ["1.08", "163.2"]


def test_header_problems_name_the_moved_and_the_missing_columns():
    from offpeak.scraping.spiders.fields import header_problems

    problems, _ = header_problems(
        ["USD", "Date", "JPY", "JPY"],
        {1: "Date"},
        {"field rate": "GBP", "field yen": "JPY"},
        "data_file",
    )
    assert problems == [
        "column 1 is headed 'USD', not 'Date' (data_file.header): column 'Date' moved, it is "
        "now column 2",
        "field rate: no column is headed 'GBP'",
        "field yen: columns 3, 4 are all headed 'JPY'",
    ]


def test_the_date_reader_reads_as_the_transform_does():
    assert str(date_reader([])("2026-10-06")) == "2026-10-06"
    assert str(date_reader(["%d.%m.%Y"])(" 06.10.2026 ")) == "2026-10-06"
    assert date_reader([])("  ") is None
    with pytest.raises(ValueError):
        date_reader(["%d.%m.%Y"])("2026-10-06")


def test_the_download_cache_sends_validators_and_reads_a_kept_copy(tmp_path):
    cache = files.Downloads(tmp_path)
    key = files.cache_key(URL)
    assert cache.validators(key) == {} and cache.body(key) is None
    cache.keep(key, URL, b"data", '"abc"', "Mon, 30 Nov 2026 16:00:00 GMT")
    assert cache.validators(key) == {
        "If-None-Match": '"abc"', "If-Modified-Since": "Mon, 30 Nov 2026 16:00:00 GMT",
    }  # fmt: skip
    assert cache.body(key) == b"data"
    (tmp_path / f"{key}.body").write_bytes(b"dat")  # a copy cut short is no copy
    assert cache.validators(key) == {} and cache.body(key) is None


SITE = {
    "name": "rates", "kind": "data_file", "base_url_conn_id": "site_rates",
    "start_urls": ["rates.zip"], "regions": ["europe"], "natural_key": ["date", "currency"],
}  # fmt: skip


CSV_SITE = {**SITE, "data_file": {"format": "csv"}, "fields": {
    "date": {"type": "date", "column": "Date"}, "currency": {"type": "text", "column": "C"},
}}  # fmt: skip


def problems_of(section: dict, fields: dict) -> str:
    with pytest.raises(Exception) as error:
        Site.model_validate({**SITE, "data_file": section, "fields": fields})
    return str(error.value)


def test_config_mistakes_are_each_named_on_their_field():
    fields = {
        "date": {"type": "text", "column": "Date"},
        "currency": {"type": "text", "xpath": "@currency"},
        "rate": {"type": "decimal", "path": "rate"},
    }
    error = problems_of({"format": "csv", "date_field": "date"}, fields)
    assert "fields.currency" in error and "a csv data_file locates fields with `column`" in error
    assert "fields.rate" in error
    assert "data_file.date_field" in error and "'date' is not a date field" in error
    error = problems_of({"format": "xml", "melt": {"id_columns": ["Date"]}}, {})
    assert "melt do(es) not apply to format 'xml'" in error
    assert "format xml needs `records`" in problems_of({"format": "xml"}, {})
    error = problems_of({"format": "csv", "encoding": "klingon"}, {})
    assert "unknown encoding 'klingon'" in error
    error = problems_of({"format": "csv", "melt": {"id_columns": ["Date"], "var_name": "Date"}}, {})
    assert "must differ from each other and from the file's columns" in error


def spider_for(site: dict, monkeypatch):
    """The data_file spider of ``site`` (validated as the operator validates it, handed over
    as the crawl receives it) on a trading date, with no kept downloads."""
    from scrapy.utils.test import get_crawler

    from offpeak.crawl import contract
    from offpeak.scraping.spiders.data_file import DataFileSpider

    validated = Site.model_validate(site, context={"compile_selectors": True})
    monkeypatch.setenv(contract.SITE_CONFIG_ENV, validated.model_dump_json())
    crawler = get_crawler(DataFileSpider)
    spider = DataFileSpider.from_crawler(
        crawler, site=site["name"], region="europe", trading_date="2026-10-06",
        base_url="http://site.test",
    )  # fmt: skip
    crawler.stats.open_spider(spider)
    spider.downloads = files.Downloads(None)
    return spider


def crawl_items(site: dict, body: bytes, monkeypatch) -> list[dict]:
    """What the data_file spider yields for a file ``body`` of ``site``."""
    from scrapy.http import Request, Response

    from offpeak.scraping.spiders.data_file import DOWNLOAD_META

    spider = spider_for(site, monkeypatch)
    response = Response(URL, body=body, request=Request(URL, meta={DOWNLOAD_META: "k"}))
    return [{k: v for k, v in item.items() if k != "_url"} for item in spider.parse(response)]


def test_negative_when_is_a_column_in_a_csv_and_an_xpath_in_xml(monkeypatch):
    csv_site = {
        **SITE, "natural_key": ["trade"],
        "data_file": {"format": "csv"},
        "fields": {
            "trade": {"type": "text", "column": "Trade"},
            "qty": {"type": "decimal", "column": "Qty", "negative_when": "Short"},
        },
    }  # fmt: skip
    body = b"Trade,Qty,Short\nt1,10,\nt2,5,X\nt3,(7),X\n"
    assert crawl_items(csv_site, body, monkeypatch) == [
        {"trade": "t1", "qty": "10"}, {"trade": "t2", "qty": "-5"}, {"trade": "t3", "qty": "(7)"},
    ]  # fmt: skip
    xml_site = {
        **SITE, "natural_key": ["trade"],
        "data_file": {"format": "xml", "records": "//t"},
        "fields": {
            "trade": {"type": "text", "xpath": "@id"},
            "qty": {"type": "decimal", "xpath": "@qty", "negative_when": "@side = 'S'"},
        },
    }  # fmt: skip
    body = b"<trades><t id='t1' qty='10' side='B'/><t id='t2' qty='5' side='S'/></trades>"
    assert crawl_items(xml_site, body, monkeypatch) == [
        {"trade": "t1", "qty": "10"}, {"trade": "t2", "qty": "-5"},
    ]  # fmt: skip


def test_melt_skips_or_keeps_missing_cells_and_keeps_the_trading_dates_rows(monkeypatch):
    site = {
        **SITE,
        "data_file": {
            "format": "csv", "date_field": "date", "history_days": 1,
            "melt": {"id_columns": ["Date"], "var_name": "currency", "value_name": "rate"},
        },
        "fields": {
            "date": {"type": "date", "column": "Date", "formats": ["%d.%m.%Y"]},
            "currency": {"type": "text", "column": "currency"},
            "rate": {"type": "decimal", "column": "rate", "re": r"[\d.]+"},
        },
    }  # fmt: skip
    body = b"Date,USD,JPY,\n07.10.2026,1.1,N/A,\n06.10.2026,1.0,163 JPY,\n05.10.2026,0.9,,\n"
    body += b"04.10.2026,0.8,160,\n"
    assert crawl_items(site, body, monkeypatch) == [
        {"date": "06.10.2026", "currency": "USD", "rate": "1.0"},
        {"date": "06.10.2026", "currency": "JPY", "rate": "163"},
        {"date": "05.10.2026", "currency": "USD", "rate": "0.9"},
    ]  # the 7th is after the trading date, the 4th before the day of history
    site["data_file"]["melt"]["on_missing"] = "reject"
    site["data_file"]["history_days"] = 0
    body = b"Date,USD,JPY\n06.10.2026,N/A,\n"
    assert crawl_items(site, body, monkeypatch) == [
        {"date": "06.10.2026", "currency": "USD", "rate": None},  # "N/A": re finds no number
        {"date": "06.10.2026", "currency": "JPY", "rate": None},
    ]


def test_negative_when_is_checked_as_its_kind_reads_it():
    """A page's negative_when is a CSS selector, an XML file's an XPath: each is compiled as
    such and a broken one named on the field's negative_when."""
    page = {
        "name": "quotes", "kind": "html_table", "base_url_conn_id": "site_quotes",
        "start_urls": ["/q"], "regions": ["europe"], "natural_key": ["symbol"],
        "html_table": {"rows": "tr"},
        "fields": {
            "symbol": {"type": "text", "css": "td.s::text"},
            "change": {"type": "decimal", "css": "td.c::text", "negative_when": "td.c["},
        },
    }  # fmt: skip
    with pytest.raises(Exception) as error:
        Site.model_validate(page)
    assert "fields.change.negative_when" in str(error.value)
    assert "invalid CSS selector 'td.c['" in str(error.value)
    xml = {**SITE, "data_file": {"format": "xml", "records": "//r"}, "fields": {
        "date": {"type": "date", "xpath": "@d"}, "currency": {"type": "text", "xpath": "@c"},
        "rate": {"type": "decimal", "xpath": "@r", "negative_when": "@side = 'S"},
    }}  # fmt: skip
    with pytest.raises(Exception) as error:
        Site.model_validate(xml, context={"compile_selectors": True})
    assert "fields.rate.negative_when" in str(error.value) and "invalid XPath" in str(error.value)


def test_a_304_without_its_kept_copy_asks_for_the_whole_file_again(monkeypatch):
    """The kept copy removed meanwhile (a sweep, a lost upload): the 304 is not a dead
    letter, the file is fetched again without validators."""
    from scrapy import Request
    from scrapy.http import Response

    from offpeak.scraping.spiders.data_file import DOWNLOAD_META

    spider = spider_for(CSV_SITE, monkeypatch)
    response = Response(URL, status=304, request=Request(URL, meta={DOWNLOAD_META: "k"}))
    (again,) = spider.parse(response)
    assert isinstance(again, Request) and again.url == URL and again.dont_filter
    assert "If-None-Match" not in again.headers and again.meta == {DOWNLOAD_META: "k"}


def test_a_file_cut_short_in_transfer_is_not_read(monkeypatch):
    """A body Scrapy flags ``dataloss`` gives the record standing for it, naming the bytes."""
    from scrapy import Request
    from scrapy.http import Response

    from offpeak.scraping.spiders.data_file import DOWNLOAD_META

    spider = spider_for(CSV_SITE, monkeypatch)
    request = Request(URL, meta={DOWNLOAD_META: "k"})
    response = Response(URL, body=b"Date,C\n2026-1", request=request, flags=["dataloss"])
    (record,) = spider.parse(response)
    assert record["_error"] == (
        f"{URL} was cut short: the connection closed before the end of its body (after 13 "
        "bytes); none of its rows are stored"
    )
