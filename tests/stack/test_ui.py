"""The Airflow UI in a real browser: headless Chromium (Debian's), driven by Playwright.

What a user sees, page by page, after signing in as ``admin`` on the login form:

1. the DAG list filtered by the tag ``region:europe`` lists the region's factory DAGs (its
   three site DAGs and ``rollup__europe``) and no other region's DAG;
2. ``scrape__fx_rates__europe`` shows its schedule (the timetable summary, and on hover the
   description), and its "Dag Docs" button opens the docs headed "fx_rates in europe";
3. its graph draws the tasks scrape → transform → load → mark_rollup;
4. the log of the scrape task of a run made here (trading date 2026-10-06) shows the line
   "Crawl published" that the crawl writes.

A screenshot of every page lands in ``test-artifacts/ui/`` (git-ignored; ``make clean``
removes it). Every region's window is closed in the test session, so the run is a one-day
backfill with ``ignore_window``: a backfill run, unlike a manual one, does not wait behind
the scheduled run (deferred until the window opens) for the DAG's single active-run slot.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from support import REPO, browser
from support.browser import signed_in_page

SHOTS = REPO / "test-artifacts" / "ui"
DAG = "scrape__fx_rates__europe"
TRADING_DATE = "2026-10-06"
REGION_DAGS = ["scrape__equities__europe", "scrape__fx_rates__europe", "scrape__funds__europe",
               "rollup__europe"]  # fmt: skip
OTHER_REGIONS_DAGS = ["scrape__fx_rates__americas", "rollup__americas", "scrape__funds__india"]
TASKS = ["scrape", "transform", "load", "mark_rollup"]


@pytest.fixture(scope="module", autouse=True)
def europe_run(stack) -> str:
    """The run_id of a one-day backfill of ``DAG`` for ``TRADING_DATE``, crawling at once.
    Started before the first page is opened, so the crawl runs while the browser tours."""
    stack.airflow("dags", "unpause", DAG)
    stack.airflow(
        "backfill", "create", "--dag-id", DAG, "--from-date", TRADING_DATE,
        "--to-date", TRADING_DATE, "--dag-run-conf",
        json.dumps({"ignore_window": True, "trading_date": TRADING_DATE}),
    )  # fmt: skip
    rows = stack.query(
        "SELECT r.run_id FROM backfill b JOIN backfill_dag_run bdr ON bdr.backfill_id = b.id "
        "JOIN dag_run r ON r.id = bdr.dag_run_id WHERE b.dag_id = %s "
        "AND r.conf->>'trading_date' = %s ORDER BY b.id DESC LIMIT 1",
        DAG,
        TRADING_DATE,
    )
    assert rows, f"the backfill of {DAG} for {TRADING_DATE} made no run"
    return rows[0][0]


@pytest.fixture(scope="module")
def page(stack):
    """A 1440x900 Chromium page, signed in as admin through the UI's login form."""
    with signed_in_page(stack, SHOTS, "00-login.png") as page:
        yield page


def screenshot(page: Page, name: str) -> Path:
    return browser.screenshot(page, SHOTS / name)


def until_shown(page: Page, act, shown, tries: int = 4) -> None:
    """``act`` (a hover, a click) until ``shown`` is visible. The page re-renders as its
    runs refresh (a run is crawling meanwhile), which can drop a tooltip or a click that
    landed on the element it replaced; CI saw this once."""
    for _ in range(tries - 1):
        if shown.is_visible():
            return
        act()
        try:
            expect(shown).to_be_visible(timeout=3_000)
            return
        except AssertionError:
            page.mouse.move(0, 0)
    if not shown.is_visible():
        act()
    expect(shown).to_be_visible()


def test_dag_list_filtered_by_region_tag_shows_that_regions_dags(stack, page):
    known = {r[0] for r in stack.query("SELECT dag_id FROM dag")}
    assert set(REGION_DAGS + OTHER_REGIONS_DAGS) <= known  # the others exist, only filtered

    page.goto(f"{stack.api_url}/dags?tags=region:europe")
    expect(page.get_by_text("region:europe").first).to_be_visible()  # the active tag filter
    for dag_id in REGION_DAGS:
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    for dag_id in OTHER_REGIONS_DAGS:
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_have_count(0)
    screenshot(page, "01-dags-region-europe.png")


def test_dag_page_shows_schedule_and_docs(stack, page):
    ((summary, description),) = stack.query(
        "SELECT timetable_summary, timetable_description FROM dag WHERE dag_id = %s", DAG
    )
    assert summary.startswith("XLON trading days, off-peak "), summary

    page.goto(f"{stack.api_url}/dags/{DAG}")
    expect(page.get_by_role("heading", name=DAG)).to_be_visible()
    schedule = page.get_by_text(summary, exact=True)
    expect(schedule).to_be_visible()
    # The description is the summary's tooltip.
    until_shown(page, schedule.hover, page.get_by_text(description))
    screenshot(page, "02-dag-schedule.png")

    page.mouse.move(0, 0)
    docs = page.get_by_role("dialog")
    until_shown(page, page.get_by_role("button", name="Dag Docs").click, docs)
    expect(docs.get_by_text("Dag Documentation")).to_be_visible()
    expect(docs.get_by_role("heading", name="fx_rates in europe")).to_be_visible()
    expect(docs.get_by_text("warehouse table: scraped.fx_rates")).to_be_visible()
    screenshot(page, "03-dag-docs.png")
    page.keyboard.press("Escape")
    expect(docs).to_have_count(0)


def test_graph_draws_the_dags_tasks(stack, page):
    page.goto(f"{stack.api_url}/dags/{DAG}")
    page.get_by_role("button", name="Show Graph").click()
    graph = page.locator(".react-flow")
    for task_id in TASKS:
        expect(graph.get_by_text(task_id, exact=True)).to_be_visible()
    expect(graph.get_by_text("ScrapeOperator", exact=True)).to_be_visible()
    screenshot(page, "04-dag-graph.png")


def test_task_log_shows_the_crawl(stack, page, europe_run):
    def finished():
        rows = stack.query(
            "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG, europe_run
        )
        return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

    assert stack.wait(finished, 240, f"run {europe_run} of {DAG} to finish", every=2) == "success"

    run = urllib.parse.quote(europe_run, safe="")
    page.goto(f"{stack.api_url}/dags/{DAG}/runs/{run}/tasks/scrape")
    page.get_by_role("button", name="Show Grid").click()  # the log full width, not beside a graph
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    page.get_by_placeholder("Search logs").fill("Crawl published")
    expect(page.get_by_text(re.compile(r"^1 of \d+$"))).to_be_visible()  # the first match
    line = page.get_by_text("Crawl published")
    expect(line).to_be_visible()
    expect(line).to_contain_text(f"'trading_date': '{TRADING_DATE}'")
    screenshot(page, "05-task-log.png")


def test_assets_view_shows_the_site_table_and_its_load(stack, page, europe_run):
    """Lineage: the load of the run above is an event on the asset of scraped.fx_rates."""
    asset = "warehouse.scraped.fx_rates"
    page.goto(f"{stack.api_url}/assets")
    link = page.get_by_role("link", name=asset, exact=True)
    expect(link).to_be_visible()
    screenshot(page, "06-assets.png")
    link.click()
    expect(page.get_by_role("heading", name=asset).first).to_be_visible()
    expect(page.get_by_text(DAG).first).to_be_visible()  # the event's source run
    screenshot(page, "07-asset-events.png")


def test_trigger_form_shows_the_typed_params_with_descriptions(stack, page):
    page.goto(f"{stack.api_url}/dags/{DAG}")
    page.get_by_role("button", name="Trigger").first.click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Trigger Dag").first).to_be_visible()
    for title in ("Trading date", "Ignore the off-peak window", "Max pages", "Start URLs",
                  "Dry run"):  # fmt: skip
        expect(form.get_by_text(title).first).to_be_visible()  # required ones end with "*"
    expect(form.get_by_text("Stop the crawl after this many pages", exact=False)).to_be_visible()
    screenshot(page, "08-trigger-form.png")
    page.keyboard.press("Escape")
