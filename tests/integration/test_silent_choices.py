"""Nothing is chosen silently, for real: the demo sites' /choices/ routes (a key on two pages,
two columns swapped, a redirect back to a page already requested, a detail page linked twice)
crawled and loaded with dag.test(); each test shows the outcome a user sees: the rows in the
warehouse, the audit, and a message naming the key, the column or the loop."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from test_quality import output, xcom
from test_quality import task_states as states

from support import REPO
from support.dagsync import scrape_dags
from support.queries import load_audit

pytestmark = pytest.mark.integration
DAY = date(2026, 3, 10)  # a Tuesday, a London trading day
REGION = "europe"
EQUITIES = "/choices/{case}/equities/{{region}}/{{trading_date}}/quotes?page=1"
# Fields located by position, as a site without classes on its cells is read.
BY_POSITION = {
    "last_price": {"type": "decimal", "css": "td:nth-child(3)::text", "required": True},
    "change": {"type": "decimal", "css": "td:nth-child(4)::text"},
}
BY_HEADER = {
    "last_price": {"type": "decimal", "column": "Last", "required": True},
    "change": {"type": "decimal", "column": "Change"},
}


def equities_like(case: str, **changes) -> dict:
    data = yaml.safe_load((REPO / "include/config/sites/equities.yaml").read_text())
    data.update(regions=[REGION], start_urls=[EQUITIES.format(case=case)])
    fields = changes.pop("fields", {})
    data["fields"] = {**data["fields"], **fields}
    data["quality"].pop("min_field_coverage", None)
    return {**data, **changes}


SITES = {
    "choice_plain": equities_like(
        "duplicate_keys", start_urls=["/equities/{region}/{trading_date}/quotes?page=1"]
    ),
    "choice_dups": equities_like("duplicate_keys", on_duplicate_key="first"),
    "choice_header": equities_like(
        "swapped_columns",
        fields=BY_POSITION,
        html_table={
            "rows": "table#quotes tbody tr",
            "next_page": "a.next::attr(href)",
            "header": {3: "Last", 4: "Change"},
        },
    ),
    "choice_columns": equities_like("swapped_columns", fields=BY_HEADER),
    "choice_redirect": equities_like("redirect_back"),
    "choice_next_loop": equities_like("next_loop"),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """The shipped regions and the choice sites only (dag.test() parses every scrape DAG)."""
    config = tmp_path_factory.mktemp("choices") / "config"
    shutil.copytree(REPO / "include/config", config)
    for shipped in (config / "sites").glob("*.yaml"):
        shipped.unlink()
    for name, data in SITES.items():
        (config / "sites" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    funds = yaml.safe_load((REPO / "include/config/sites/funds.yaml").read_text())
    funds.update(regions=[REGION], start_urls=["/choices/linked_twice/funds/{region}/"
                                               "{trading_date}/?page=1"])  # fmt: skip
    (config / "sites/choice_funds.yaml").write_text(yaml.safe_dump(funds, sort_keys=False))
    return config


@pytest.fixture(scope="module")
def dags(config, airflow_db):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFPEAK_CONFIG_DIR", str(config))  # the runs read it too
        yield scrape_dags()


@pytest.fixture
def run(config, dags, session_env, warehouse, monkeypatch):
    """``run(site)``: dag.test() the site's DAG for DAY (no retries)."""
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config))

    def run(site: str):
        dag = dags.get_dag(f"scrape__{site}__{REGION}")
        for task in dag.tasks:
            monkeypatch.setattr(task, "retries", 0)
        return dag.test(run_conf={"trading_date": DAY.isoformat(), "ignore_window": True})

    return run


def fresh(warehouse, site: str) -> None:
    from offpeak.warehouse.schema import ensure_schema

    ensure_schema(warehouse)
    warehouse.execute(f"DROP TABLE IF EXISTS scraped.{site}")
    warehouse.execute("DELETE FROM scraped.load_audit WHERE site = %s", (site,))


def rows(warehouse, site: str) -> dict[str, tuple]:
    """symbol -> (last_price, change, source_url) of the site's partition of DAY."""
    found = warehouse.execute(
        f"SELECT symbol, last_price, change, source_url FROM scraped.{site} "
        "WHERE region = %s AND trading_date = %s",
        (REGION, DAY),
    ).fetchall()
    return {r[0]: r[1:] for r in found}


def read_jsonl(uri: str) -> list[dict]:
    text = Path(uri.removeprefix("file://")).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


_PLAIN: dict[str, tuple] = {}


@pytest.fixture
def plain(run, warehouse) -> dict[str, tuple]:
    """The rows of the equities pages of DAY, read from the normal route by class selectors
    (loaded once a session)."""
    if not _PLAIN:
        fresh(warehouse, "choice_plain")
        result = run("choice_plain")
        assert result.state == "success", states(result)
        _PLAIN.update(rows(warehouse, "choice_plain"))
    assert len(_PLAIN) == 90
    return _PLAIN


# ------------------------------------------------------------------------- duplicate keys


def test_a_key_on_two_pages_is_named_and_rejected_keeping_the_earlier_row(
    run, pg, warehouse, config, plain, capfd, caplog
):
    """Page 2 repeats three symbols of page 1. With on_duplicate_key: first the page-1 copies
    load (counted, named in the log); then, under the default (reject), every copy is
    rejected with a reason naming the key and both pages, and the rows loaded before stay."""
    fresh(warehouse, "choice_dups")
    first = run("choice_dups")
    assert first.state == "success", states(first)
    cleaned = xcom(pg, first, "transform")
    assert (cleaned["duplicate_keys"], cleaned["duplicate_records"]) == (3, 3)
    loaded = rows(warehouse, "choice_dups")
    text = output(capfd, caplog)
    assert "3 natural key(s) on more than one record of this crawl" in text
    assert "(on_duplicate_key: first)" in text

    site_file = config / "sites/choice_dups.yaml"
    data = yaml.safe_load(site_file.read_text())
    del data["on_duplicate_key"]  # the default: reject
    site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    second = run("choice_dups")
    assert second.state == "success", states(second)
    cleaned = xcom(pg, second, "transform")
    assert (cleaned["duplicate_keys"], cleaned["duplicate_records"]) == (3, 6)
    assert cleaned["top_reject_reasons"]["duplicate natural key"] == 6
    dupes = [r for r in read_jsonl(cleaned["rejects_uri"]) if "duplicate" in r["reason"]]
    assert len(dupes) == 6
    keys = {r["record"]["symbol"] for r in dupes}
    assert len(keys) == 3
    # The first run loaded each key's page-1 copy: page 1's values, as the plain route has them.
    for symbol in keys:
        assert loaded[symbol][2].endswith("quotes?page=1")
        assert loaded[symbol][:2] == plain[symbol][:2]
    for reject in dupes:
        reason = reject["reason"]
        assert reason.startswith(f"duplicate natural key symbol={reject['record']['symbol']!r}")
        assert "quotes?page=1)" in reason and "quotes?page=2)" in reason
        assert "every copy is rejected (on_duplicate_key: reject)" in reason
    # The rejected keys keep the rows the first run loaded: nothing deleted, nothing changed.
    assert rows(warehouse, "choice_dups") == loaded
    audit = load_audit(warehouse, "choice_dups", REGION, DAY)
    assert [a["duplicate_keys"] for a in audit] == [3, 3]
    assert audit[-1]["rows_deleted"] == 0


# -------------------------------------------------------------------------------- columns


def test_swapped_columns_read_by_position_fail_naming_the_moved_column(
    run, pg, warehouse, capfd, caplog
):
    fresh(warehouse, "choice_header")
    result = run("choice_header")
    assert result.state == "failed"
    assert states(result)["scrape"] == "failed"
    text = output(capfd, caplog)
    assert "column 3 is headed 'Change', not 'Last' (html_table.header)" in text
    assert "column 'Last' moved, it is now column 4" in text
    assert "scraped 0 items" in text or "fewer than min" in text
    # Not one row with swapped values reached the warehouse.
    exists = warehouse.execute("SELECT to_regclass('scraped.choice_header')").fetchone()[0]
    assert exists is None or rows(warehouse, "choice_header") == {}


def test_swapped_columns_mapped_by_header_text_load_the_right_values(run, warehouse, plain):
    fresh(warehouse, "choice_columns")
    result = run("choice_columns")
    assert result.state == "success", states(result)
    loaded = rows(warehouse, "choice_columns")
    assert {s: r[:2] for s, r in loaded.items()} == {s: r[:2] for s, r in plain.items()}


# ------------------------------------------------------------------------ dropped requests


def test_a_redirect_back_to_a_page_already_requested_is_a_named_loop(
    run, pg, warehouse, capfd, caplog
):
    """Page 2 redirects to page=2&via=b, which redirects back to page 2: Scrapy's duplicate
    filter drops the repeat. The page is lost: a dead letter names the loop and the crawl is
    partial (its load deletes nothing)."""
    fresh(warehouse, "choice_redirect")
    result = run("choice_redirect")
    assert result.state == "success", states(result)
    scraped = xcom(pg, result, "scrape")
    assert scraped["complete"] is False
    assert scraped["incomplete"] == {"redirect_loop": 1}
    (letter,) = read_jsonl(scraped["dead_letters_uri"])
    assert letter["cause"] == "redirect_loop"
    assert letter["url"].endswith("/quotes?page=2")
    assert letter["reason"].endswith(
        "quotes?page=2&via=b -> "
        f"{letter['url']} redirects back to a URL of its own chain; Scrapy's duplicate filter "
        f"dropped the repeat, so the page at {letter['url']} was never read"
    )
    assert "1 requests ended in a redirect loop" in output(capfd, caplog)
    (audit,) = load_audit(warehouse, "choice_redirect", REGION, DAY)
    assert audit["complete"] is False


def test_a_next_link_back_to_the_first_page_is_a_named_pagination_loop(run, pg, warehouse, plain):
    """Every page is read, but the last one links back to page 1: before, the duplicate
    filter dropped that link unseen and the crawl counted as complete."""
    fresh(warehouse, "choice_next_loop")
    result = run("choice_next_loop")
    assert result.state == "success", states(result)
    scraped = xcom(pg, result, "scrape")
    assert (scraped["complete"], scraped["incomplete"]) == (False, {"pagination_loop": 1})
    (letter,) = read_jsonl(scraped["dead_letters_uri"])
    assert letter["reason"].startswith("pagination loop: the next page linked from ")
    assert letter["reason"].endswith(
        "quotes?page=1, which this crawl had already requested; the pages after it were "
        "never listed"
    )
    assert "quotes?page=5 is " in letter["reason"]
    assert len(rows(warehouse, "choice_next_loop")) == len(plain)


def test_a_detail_page_linked_twice_is_read_once_and_the_crawl_stays_complete(run, pg, warehouse):
    fresh(warehouse, "choice_funds")
    result = run("choice_funds")
    assert result.state == "success", states(result)
    scraped = xcom(pg, result, "scrape")
    assert scraped["complete"] is True and scraped["dead_letters"] == 0
    assert scraped["stats"]["duplicate_requests"] == 2
    (audit,) = load_audit(warehouse, "choice_funds", REGION, DAY)
    assert (audit["complete"], audit["duplicate_keys"]) == (True, 0)


def test_choice_routes_are_documented_and_an_unknown_one_is_404(demo_url):
    import urllib.error
    import urllib.request

    from support.services import load_demo_server

    server = load_demo_server()
    readme = (REPO / "include/demo_sites/README.md").read_text()
    for name, doc in server.CHOICE_DOCS.items():
        assert f"| `{name}` | {doc} |" in readme
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{demo_url}/choices/nope/equities/europe/2026-03-10/quotes")
    assert (err.value.code, err.value.read()) == (404, b"unknown choice\n")
