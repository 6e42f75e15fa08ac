"""The Coverage page, its JSON API and its command line, on the stack's real api-server.

The scene (made once, with dates counted back from today so that they fall within the
default 20 dates shown):

* complete: a one-day backfill of ``scrape__fx_rates__americas`` (57 rows);
* partial: ``scrape__equities__europe`` with ``max_pages: 1`` (1 page of 5: the load upserts
  what it got and is audited ``complete = false``);
* failed: a run of ``scrape__equities__europe`` triggered while the DAG is paused, then
  marked failed over REST, as an operator stops a run (a crawl that really fails is
  test_operating's; its retries take minutes);
* missing: ``scrape__fx_rates__americas`` the trading day before the complete one, after
  the DAG's first scheduled run (see ``_enabled_earlier``);
* never due: every date before a DAG's first scheduled run, e.g. ``scrape__equities__india``,
  which no test unpauses;
* closed: the first date shown that one region's exchange does not trade, found from the
  calendars (the page keeps widening its range until it holds one).

The browser test then fills the missing cell from the page and watches it turn complete.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from offpeak.config import load_project
from offpeak.coverage import matrix as m
from offpeak.naming import scrape_dag_id
from offpeak.schedule.tradingtime import RegionClock
from support import REPO
from support.browser import screenshot, signed_in_page
from support.queries import load_audit

SHOTS = REPO / "test-artifacts" / "coverage"
FX = "scrape__fx_rates__americas"
EQ = "scrape__equities__europe"
FX_ROWS = 57  # valid fx_rates rows the demo site serves per region and trading date


@dataclass(frozen=True)
class Scene:
    complete: date
    missing: date
    enabled: date  # FX's first scheduled run
    partial: date
    failed: date
    failed_run: str
    closed: tuple[str, str, date, str]  # (dag_id, region, date, why)
    days: int  # dates shown so that the closed day is among them


def _backfill(stack, dag_id: str, day: date, conf: dict) -> int:
    status, body = stack.rest(
        "POST", "/backfills",
        {"dag_id": dag_id, "from_date": f"{day}T00:00:00Z", "to_date": f"{day}T00:00:00Z",
         "dag_run_conf": conf, "reprocess_behavior": "completed"},
    )  # fmt: skip
    assert status == 200, body
    return body["id"]


def _wait_backfill(stack, backfill_id: int, timeout: float = 300) -> None:
    def done():
        states = [s for (s,) in stack.backfill_runs(backfill_id, "r.state")]
        return states if states and all(s in ("success", "failed") for s in states) else None

    states = stack.wait(done, timeout, f"backfill {backfill_id} to finish", every=2)
    assert states == ["success"], f"backfill {backfill_id}: {states}\n{stack.log_tail()}"
    # Until the scheduler marks it completed, Airflow refuses another backfill of the DAG.
    stack.wait(
        lambda: stack.query("SELECT completed_at FROM backfill WHERE id = %s", backfill_id)[0][0],
        120, f"backfill {backfill_id} to be marked completed",
    )  # fmt: skip


def _enabled_earlier(stack, dag_id: str, clock: RegionClock, day: date) -> str:
    """Make ``dag_id`` look enabled since ``day``: its first scheduled run, of ``day``.

    A stack minutes old cannot have a scheduled run of last week (catchup is off, so unpausing
    makes one run, of the latest due date). The scheduler's own row of that run is copied to
    ``day``, every instant shifted by the same amount, as a run it had made and finished then
    (nothing loaded). The dates after it with no run are then the gaps an operator must see."""
    status, body = stack.rest("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    assert status == 200, body
    first = stack.wait(
        lambda: stack.query(
            "SELECT run_id, data_interval_start FROM dag_run WHERE dag_id = %s"
            " AND run_type = 'scheduled' ORDER BY data_interval_start LIMIT 1", dag_id,
        ),
        120, f"the scheduler to make {dag_id}'s first scheduled run",
    )[0]  # fmt: skip
    zone = ZoneInfo(clock.timezone)
    shift = datetime.combine(day, time(), zone) - datetime.combine(
        clock.day_of_interval_start(first[1]), time(), zone
    )
    columns = [c for (c,) in stack.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'dag_run'"
        " AND table_schema = current_schema() AND column_name <> 'id' ORDER BY ordinal_position"
    )]  # fmt: skip
    run_id = f"scheduled__{day}__enabled_earlier"
    shifted = {"logical_date", "data_interval_start", "data_interval_end", "run_after",
               "queued_at", "start_date", "end_date"}  # fmt: skip
    values = [
        "%(run_id)s" if c == "run_id" else "'success'" if c == "state"
        else f"{c} + %(shift)s" if c in shifted else c
        for c in columns
    ]  # fmt: skip
    sql = (
        f"INSERT INTO dag_run ({', '.join(columns)}) SELECT {', '.join(values)} FROM dag_run"
        " WHERE dag_id = %(dag_id)s AND run_id = %(first)s RETURNING run_id"
    )
    import psycopg

    with psycopg.connect(stack.pg.uri(stack.DATABASE)) as conn:
        made = conn.execute(
            sql, {"run_id": run_id, "shift": shift, "dag_id": dag_id, "first": first[0]}
        ).fetchall()
    assert made == [(run_id,)]
    return run_id


def _closed_day(project, now: datetime) -> tuple[str, str, date, str, int]:
    """The first (dag_id, region, date, why, days) where a region's exchange is closed on a
    date shown, widening the range from 20 dates until one is."""
    clocks = {name: RegionClock.of(r) for name, r in project.regions.items()}
    for days in range(20, 120, 10):
        for day in m.dates_shown(clocks.values(), now, days)[::-1]:
            for name, clock in sorted(clocks.items()):
                sites = project.sites_of(name)
                if sites and not clock.is_day(day):
                    dag_id = scrape_dag_id(sites[0].name, name)
                    return dag_id, name, day, clock.why_closed(day), days
    pytest.fail("no exchange holiday in the last 110 trading dates shown")


@pytest.fixture(scope="module")
def scene(stack) -> Scene:
    project = load_project(stack.config_dir)  # the stack's: its windows open in 6 h
    now = datetime.now(tz=UTC)
    americas = RegionClock.of(project.regions["americas"])
    europe = RegionClock.of(project.regions["europe"])
    fx_latest, eq_latest = americas.latest_due_day(now), europe.latest_due_day(now)
    complete, missing = americas.days_back(fx_latest, 2), americas.days_back(fx_latest, 3)
    partial, failed = europe.days_back(eq_latest, 2), europe.days_back(eq_latest, 3)

    # The failed run first, while equities/europe is paused: it is queued and never starts.
    stack.set_paused(EQ, True)
    status, body = stack.rest(
        "POST", f"/dags/{EQ}/dagRuns", {"logical_date": None, "conf": {"trading_date": str(failed)}}
    )
    assert status == 200, body
    failed_run = body["dag_run_id"]
    status, body = stack.rest("PATCH", f"/dags/{EQ}/dagRuns/{failed_run}", {"state": "failed"})
    assert status == 200 and body["state"] == "failed", body

    enabled = americas.days_back(fx_latest, 4)
    _enabled_earlier(stack, FX, americas, enabled)
    stack.set_paused(EQ, False)
    runs = [
        _backfill(stack, FX, complete, {"ignore_window": True}),
        _backfill(stack, EQ, partial, {"ignore_window": True, "max_pages": 1}),
    ]
    for backfill_id in runs:
        _wait_backfill(stack, backfill_id)
    *closed, days = _closed_day(project, now)
    return Scene(
        complete, missing, enabled, partial, failed, failed_run, tuple(closed), max(days, 20)
    )


def _get(stack, path: str, token: str | None = None, body: dict | None = None):
    """(status, JSON or text) of a GET, or with ``body`` a POST, to the api-server."""
    return stack.http("GET" if body is None else "POST", path, body, token)


def _cell(doc: dict, dag_id: str, day: date) -> dict:
    row = next(r for r in doc["rows"] if r["dag_id"] == dag_id)
    return next(c for c in row["cells"] if c["date"] == day.isoformat())


def _audit(warehouse, site: str, region: str, day: date) -> tuple:
    """(rows the partition holds, rows inserted, rows rejected, complete) of its latest load."""
    audit = load_audit(warehouse, site, region, day)[-1]
    held = audit["rows_inserted"] + audit["rows_updated"] + audit["rows_unchanged"]
    return held, audit["rows_inserted"], audit["rows_rejected"], audit["complete"]


def test_every_endpoint_needs_a_signed_in_user(stack):
    for path, body in (("/coverage/", None), ("/coverage/api/matrix", None),
                       ("/coverage/api/backfills", {"cells": []})):  # fmt: skip
        status, answer = _get(stack, path, body=body)
        assert (status, answer) == (401, {"detail": "Not authenticated"}), path
    status, answer = _get(stack, "/coverage/api/matrix", token="not-a-jwt")
    assert status in (401, 403), answer  # Airflow 3.3.2 answers 403 "Invalid JWT token"


def test_a_read_only_user_sees_the_matrix_but_cannot_fill_it(stack, scene):
    viewer = stack.token("viewer")
    status, doc = _get(stack, f"/coverage/api/matrix?days={scene.days}", token=viewer)
    assert status == 200, doc
    dag_ids = {r["dag_id"] for r in doc["rows"]}
    assert {FX, EQ} <= dag_ids and len(dag_ids) == 11  # every site DAG: a viewer reads them all
    assert _cell(doc, FX, scene.missing)["state"] == "missing"

    cells = {"cells": [{"dag_id": FX, "date": str(scene.missing)}]}
    status, answer = _get(stack, "/coverage/api/backfills", token=viewer, body=cells)
    assert (status, answer) == (403, {"detail": f"user 'viewer' may not run (backfill) {FX}"})
    # Nor through Airflow's own API, which the page calls next.
    status, answer = _get(
        stack, "/api/v2/backfills", token=viewer,
        body={"dag_id": FX, "from_date": f"{scene.missing}T00:00:00Z",
              "to_date": f"{scene.missing}T00:00:00Z"},
    )  # fmt: skip
    assert status == 403, answer


def test_a_user_sees_only_the_rows_of_dags_they_may_read(stack, scene):
    """`analyst` may read only the europe DAGs (tests/support/auth.py, as an auth manager with
    per-DAG permissions would say)."""
    analyst = stack.token("analyst")
    status, doc = _get(stack, f"/coverage/api/matrix?days={scene.days}", token=analyst)
    assert status == 200, doc
    europe = ["scrape__equities__europe", "scrape__funds__europe", "scrape__fx_rates__europe"]
    assert sorted(r["dag_id"] for r in doc["rows"]) == europe
    assert _cell(doc, EQ, scene.partial)["state"] == "partial"
    cells = {"cells": [{"dag_id": FX, "date": str(scene.missing)}]}
    status, answer = _get(stack, "/coverage/api/backfills", token=analyst, body=cells)
    assert (status, answer) == (404, {"detail": f"no such DAG, or you may not read it: {FX}"})


def test_an_admin_gets_one_backfill_per_dag(stack, scene):
    cells = [{"dag_id": FX, "date": str(d)} for d in (scene.missing, scene.complete)]
    cells.append({"dag_id": EQ, "date": str(scene.failed)})
    body = {"cells": cells, "reprocess_behavior": "failed", "ignore_window": True}
    status, answer = _get(stack, "/coverage/api/backfills", token=stack.token(), body=body)
    assert status == 200, answer
    assert [
        (b["dag_id"], b["from_date"], b["to_date"], b["dates"]) for b in answer["backfills"]
    ] == [
        (EQ, f"{scene.failed}T00:00:00Z", f"{scene.failed}T00:00:00Z", [str(scene.failed)]),
        (FX, f"{scene.missing}T00:00:00Z", f"{scene.complete}T00:00:00Z",
         [str(scene.missing), str(scene.complete)]),
    ]  # fmt: skip
    assert answer["backfills"][0]["dag_run_conf"] == {"ignore_window": True}
    dag_id, day, _ = scene.closed[0], scene.closed[2], scene.closed[3]
    closed = {"cells": [{"dag_id": dag_id, "date": str(day)}]}
    status, answer = _get(stack, "/coverage/api/backfills", token=stack.token(), body=closed)
    assert status == 400 and f"{dag_id}: {day} is not a trading day" in answer["detail"], answer
    status, answer = _get(stack, "/coverage/api/matrix?state=gone", token=stack.token())
    assert status == 400, answer
    assert answer["detail"].startswith("unknown state(s) ['gone']: the states are complete,")


def test_the_json_shows_each_state_with_its_numbers(stack, scene, warehouse):
    status, doc = _get(stack, f"/coverage/api/matrix?days={scene.days}", token=stack.token())
    assert status == 200, doc
    rows, inserted, rejected, complete = _audit(warehouse, "fx_rates", "americas", scene.complete)
    assert (rows, complete) == (FX_ROWS, True)
    done = _cell(doc, FX, scene.complete)
    assert (done["state"], done["rows"], done["rows_inserted"], done["rows_rejected"]) == (
        "complete", rows, inserted, rejected)  # fmt: skip
    part_rows, _, _, part_complete = _audit(warehouse, "equities", "europe", scene.partial)
    assert part_complete is False and 0 < part_rows < 100  # one page of five
    partial = _cell(doc, EQ, scene.partial)
    assert (partial["state"], partial["rows"]) == ("partial", part_rows)
    failed = _cell(doc, EQ, scene.failed)
    assert (failed["state"], failed["run_id"], failed["rows"]) == ("failed", scene.failed_run, None)
    dag_id, _, day, why = scene.closed
    closed = _cell(doc, dag_id, day)
    assert closed["state"] == "closed" and closed["detail"].endswith(why), closed
    missing = _cell(doc, FX, scene.missing)
    assert (missing["state"], missing["detail"]) == ("missing", "no run for this trading day")
    first = _cell(doc, FX, scene.enabled)  # the copied run: finished, nothing loaded
    assert (first["state"], first["run_id"]) == (
        "missing",
        f"scheduled__{scene.enabled}__enabled_earlier",
    )
    before = _fx_before(scene)
    never = _cell(doc, FX, before)
    assert never["state"] == "never_due", never
    assert never["detail"].startswith(
        f"never due: before the DAG's first scheduled run, for {scene.enabled}"
    )
    # A DAG no test unpauses: nothing past was ever due, nothing is a gap.
    untouched = next(r for r in doc["rows"] if r["dag_id"] == "scrape__equities__india")
    assert {c["state"] for c in untouched["cells"]} <= {"never_due", "closed", "scheduled"}
    assert doc["counts"]["never_due"] > doc["counts"]["missing"] > 0


def test_the_command_line_prints_the_same_matrix_and_fails_on_gaps(stack, scene):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "offpeak.coverage", "--days", str(scene.days), *args],
            env=stack.env, capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip

    as_json = cli("--json")
    status, doc = _get(stack, f"/coverage/api/matrix?days={scene.days}", token=stack.token())
    assert status == 200, doc
    assert as_json.returncode == 1, as_json.stderr  # a missing and a failed day among them
    printed = json.loads(as_json.stdout)
    for d in (printed, doc):
        d.pop("generated_at")
    assert printed == doc

    text = cli("--site", "fx_rates", "--site", "equities")
    artifacts = REPO / "test-artifacts"  # git-ignored; absent on a clean clone
    artifacts.mkdir(exist_ok=True)
    (artifacts / "coverage-cli.txt").write_text(text.stdout)  # for docs/operating.md
    assert text.returncode == 1, text.stderr
    gaps = sum(1 for r in doc["rows"] if r["site"] in ("fx_rates", "equities")
               for c in r["cells"] if c["state"] in ("missing", "failed"))  # fmt: skip
    assert text.stderr.splitlines()[-1] == (
        f"coverage: {gaps} trading date(s) shown are missing or failed (listed above); fill "
        "them from the Coverage page or with `airflow backfill create`"
    )
    assert f"  missing  {FX} {scene.missing}: no run for this trading day" in text.stdout
    assert text.stdout.splitlines()[4].startswith("equities / americas ")
    only_complete = cli("--state", "complete").stdout.split("\n\n")[1].splitlines()[2:]
    expected = [f"{r['site']} / {r['region']}" for r in doc["rows"]
                if any(c["state"] == "complete" for c in r["cells"])]  # fmt: skip
    assert [line.split("  ")[0] for line in only_complete] == expected
    assert "fx_rates / americas" in expected


def test_the_page_shows_the_matrix_and_fills_a_gap(stack, scene, warehouse):
    with signed_in_page(stack, SHOTS) as page:
        page.get_by_role("link", name="Coverage").first.click()  # the nav entry
        frame = page.frame_locator("iframe").first
        expect(frame.get_by_role("heading", name="Coverage")).to_be_visible()
        frame.locator("#days").fill(str(scene.days))
        frame.get_by_role("button", name="Refresh").click()
        cell = _page_cell(frame)

        expect(cell(FX, scene.complete)).to_have_attribute("data-state", "complete")
        expect(cell(FX, scene.complete)).to_have_text(str(FX_ROWS))
        part_rows = _audit(warehouse, "equities", "europe", scene.partial)[0]
        expect(cell(EQ, scene.partial)).to_have_attribute("data-state", "partial")
        expect(cell(EQ, scene.partial)).to_have_text(f"{part_rows}*")
        expect(cell(EQ, scene.failed)).to_have_attribute("data-state", "failed")
        dag_id, _, day, why = scene.closed
        expect(cell(dag_id, day)).to_have_attribute("data-state", "closed")
        title = f"{day}: exchange closed. {_exchange(stack, dag_id)} does not trade: {why}"
        expect(cell(dag_id, day)).to_have_attribute("title", title)
        never = cell(FX, _fx_before(scene))
        expect(never).to_have_attribute("data-state", "never_due")
        expect(never).to_have_attribute(
            "title", _contains("never due (before the DAG's first run)")
        )
        box = never.locator("input[type=checkbox]")  # history can be backfilled: its box
        expect(box).to_be_hidden()  # shows only on hover, so the page stays calm
        never.hover()
        expect(box).to_be_visible()
        _states_look_like_airflow(frame, cell, scene, dark=False)
        screenshot(page, SHOTS / "01-coverage.png")
        # Airflow's own theme switch: the page follows it.
        _appearance(page, "Dark Mode")
        _states_look_like_airflow(frame, cell, scene, dark=True)
        screenshot(page, SHOTS / "01-coverage-dark.png")
        _appearance(page, "Light Mode")
        expect(frame.locator("html")).to_have_attribute("data-theme", "light")
        _page_matches_the_json(stack, frame, scene.days)

        cell(FX, scene.complete).click()
        detail = frame.locator("#detail")
        expect(detail.locator('[data-field="Rows"]')).to_have_text(str(FX_ROWS))
        expect(detail.get_by_role("link", name="Scrape log")).to_have_attribute(
            "href", _contains(f"/dags/{FX}/runs/backfill__")
        )
        screenshot(page, SHOTS / "02-cell-detail.png")

        missing = cell(FX, scene.missing)
        expect(missing).to_have_attribute("data-state", "missing")
        missing.get_by_role("checkbox").check()
        frame.locator("#reprocess").select_option("failed")
        frame.locator("#ignore-window").check()
        frame.get_by_role("button", name="Create backfills").click()
        result = frame.locator("#results li").first
        expect(result).to_be_visible()
        assert result.get_attribute("class") == "created", result.inner_text()
        expect(result).to_have_text(_contains(f"of {FX}, {scene.missing} to {scene.missing}"))
        screenshot(page, SHOTS / "03-backfill-created.png")
        expect(cell(FX, scene.missing)).to_have_attribute("data-state", "complete", timeout=240_000)
        expect(cell(FX, scene.missing)).to_have_text(str(FX_ROWS))
        screenshot(page, SHOTS / "04-gap-filled.png")
    assert _audit(warehouse, "fx_rates", "americas", scene.missing)[:1] == (FX_ROWS,)


def _page_matches_the_json(stack, frame, days: int) -> None:
    """Every cell of the page has the state and text of the API's JSON. A run of another
    test may end between the two reads: then both are read again (up to 3 times)."""
    marks = {"running": "\u25b6", "failed": "\u2717", "missing": "?", "scheduled": "\u2026",
             "never_due": "\u00b7", "closed": "\u2014"}  # fmt: skip
    for attempt in range(3):
        renders = int(frame.locator("body").get_attribute("data-renders"))
        frame.get_by_role("button", name="Refresh").click()
        expect(frame.locator("body")).not_to_have_attribute("data-renders", str(renders))
        shown = frame.locator("td.cell").evaluate_all(
            "cells => cells.map(c => [c.dataset.dag, c.dataset.date, c.dataset.state,"
            " c.textContent])"
        )
        status, doc = _get(stack, f"/coverage/api/matrix?days={days}", token=stack.token())
        assert status == 200, doc
        expected = [
            [row["dag_id"], c["date"], c["state"],
             {"complete": str(c["rows"]), "partial": f"{c['rows']}*"}.get(c["state"])
             or marks[c["state"]]]
            for row in doc["rows"] for c in row["cells"]
        ]  # fmt: skip
        if shown == expected or attempt == 2:
            break
    assert shown == expected


# Airflow's palette for its own states (its UI's Chakra theme, airflow/ui): success green.600,
# failed red.600; the page's background white, or in dark mode Chakra's black.
GREEN_600 = "rgb(22, 163, 74)"
WHITE, BLACK = "rgb(255, 255, 255)", "rgb(9, 9, 11)"


def _states_look_like_airflow(frame, cell, scene, *, dark: bool) -> None:
    """Each state's colours as the browser computed them, in the theme Airflow's UI is in."""
    expect(frame.locator("html")).to_have_attribute("data-theme", "dark" if dark else "light")

    def style(locator, *props: str) -> list[str]:
        return locator.evaluate(
            "(node, props) => props.map(p => getComputedStyle(node)[p])", list(props)
        )

    assert style(frame.locator("body"), "backgroundColor") == [BLACK if dark else WHITE]
    assert style(cell(FX, scene.complete), "backgroundColor", "color") == [GREEN_600, WHITE]
    failed_bg, failed_fg = style(cell(EQ, scene.failed), "backgroundColor", "color")
    assert failed_bg.startswith("oklch(0.577 0.245 27") and failed_fg == WHITE, failed_bg
    missing = style(cell(FX, scene.missing), "backgroundColor", "outlineStyle", "fontWeight")
    assert missing[1:] == ["dashed", "600"], missing
    never_bg, never_fg = style(cell(FX, _fx_before(scene)), "backgroundColor", "color")
    assert never_bg == "rgba(0, 0, 0, 0)", never_bg  # calm: no fill, a muted dot
    assert never_fg.startswith("oklch(0.75 " if not dark else "oklch(0.45 "), never_fg
    dag_id, _, day, _ = scene.closed
    (stripes,) = style(cell(dag_id, day), "backgroundImage")
    assert stripes.startswith("repeating-linear-gradient(135deg"), stripes


def _appearance(page, mode: str) -> None:
    """Airflow's own theme switch: User, Appearance, then the mode."""
    page.get_by_role("button", name="User").click()
    page.get_by_role("menuitem", name="Appearance").click()
    page.get_by_role("menuitemradio", name=mode).click()
    page.keyboard.press("Escape")  # close the menu


def _fx_before(scene) -> date:
    """A trading day of FX's region before its first scheduled run, among the dates shown."""
    project_clock = RegionClock.of(load_project().regions["americas"])
    return project_clock.days_back(scene.enabled, 1)


def _page_cell(frame):
    def cell(dag_id: str, day: date):
        return frame.locator(f'td.cell[data-dag="{dag_id}"][data-date="{day}"]')

    return cell


def _contains(text: str) -> re.Pattern:
    return re.compile(re.escape(text))


def _exchange(stack, dag_id: str) -> str:
    region = dag_id.rsplit("__", 1)[1]
    return load_project(stack.config_dir).regions[region].exchange
