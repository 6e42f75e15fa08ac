"""Unit tests for what a resumable crawl keeps (offpeak.scraping.pages) and for the crawl state
on the data root (offpeak.crawl.resume), on a local data root in a temporary folder. The
resume itself, with real crawls killed mid-way, is in tests/integration/test_resume.py and
tests/stack/test_celery.py."""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from scrapy.http import HtmlResponse

from offpeak.config import load_project
from offpeak.crawl.resume import MANIFEST, CrawlState, Manifest, config_version
from offpeak.crawl.runner import CrawlRequest
from offpeak.crawl.spec import CrawlSample
from offpeak.partition import Partition
from offpeak.scraping.pages import KeepAnswered, read_page, write_page

OPENED = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)


def local(path):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"file://{path}")  # not as_uri(): it would escape the "="


def test_a_kept_page_reads_back_as_the_site_sent_it(tmp_path):
    body = gzip.compress(b"<table><tr><td>1</td></tr></table>")
    sent = HtmlResponse(
        "http://127.0.0.1:1/q?page=2", status=200, body=body,
        headers={"Content-Type": "text/html", "Content-Encoding": "gzip", "Set-Cookie": ["a", "b"]},
    )  # fmt: skip
    path = tmp_path / "f.page"
    write_page(path, sent)
    back = read_page(path)
    assert (back.url, back.status, back.body) == (sent.url, 200, body)  # still encoded
    assert back.headers.getlist("Set-Cookie") == [b"a", b"b"]
    assert [p.name for p in tmp_path.iterdir()] == ["f.page"]  # no temporary file left
    # Typed by its headers as a download is: an encoded body is typed once decompressed.
    plain = HtmlResponse(
        "http://127.0.0.1:1/", body=b"<p>x</p>", headers={"Content-Type": "text/html"}
    )
    write_page(tmp_path / "g.page", plain)
    assert isinstance(read_page(tmp_path / "g.page"), HtmlResponse)


def test_a_kept_page_never_holds_the_sites_secret(tmp_path, monkeypatch):
    from offpeak.crawl import contract

    monkeypatch.setenv(contract.API_KEY_ENV, "k3y-S3cret")
    url = "http://127.0.0.1:1/funds?page=1&api_key=k3y-S3cret"
    write_page(tmp_path / "s.page", HtmlResponse(url, body=b"<p>x</p>"))
    assert b"k3y-S3cret" not in gzip.decompress((tmp_path / "s.page").read_bytes())
    assert read_page(tmp_path / "s.page", url=url).url == url  # read back at its request's URL


def test_only_pages_the_site_answered_with_a_2xx_are_kept():
    from scrapy import Request
    from scrapy.settings import Settings

    policy, request = KeepAnswered(Settings()), Request("http://127.0.0.1:1/")
    answers = {s: HtmlResponse(request.url, status=s) for s in (200, 204, 301, 404, 429, 503)}
    kept = {s for s, r in answers.items() if policy.should_cache_response(r, request)}
    assert kept == {200, 204}


@pytest.fixture
def request_of():
    project = load_project()
    site = project.sites["equities"]
    part = Partition("equities", "americas", datetime(2026, 11, 20).date(), "manual__x")

    def build(base_url="http://127.0.0.1:1", sample=None, **site_changes):
        changed = site.model_copy(update=site_changes)
        return CrawlRequest(changed, part, base_url, sample=sample)

    return build


def test_the_config_version_changes_with_the_yaml_the_url_and_the_sample(request_of):
    base = config_version(request_of())
    assert config_version(request_of()) == base
    assert config_version(request_of(description="edited")) != base
    assert config_version(request_of(base_url="http://127.0.0.1:2")) != base
    assert config_version(request_of(sample=CrawlSample(max_pages=2))) != base
    assert config_version(request_of(api_key=None)) == base  # never part of it: a secret


def kept_state(tmp_path, manifest: dict | None, pages=("a.page", "b.page")):
    folder = tmp_path / "state"
    (folder / "pages").mkdir(parents=True)
    for name in pages:
        (folder / "pages" / name).write_bytes(b"x")
    if manifest is not None:
        (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def manifest(config="c" * 64, opened=OPENED, started=None) -> dict:
    started = started or datetime.now(tz=UTC)
    return {"config": config, "window_opened": opened.isoformat(),
            "started_at": started.isoformat(), "try_number": 1, "host": "w1"}  # fmt: skip


@pytest.mark.parametrize(
    "left, resumed, why",
    [
        (manifest(), 2, None),
        (manifest(config="d" * 64), 0, "it was written for another config version (dddddddd"),
        (manifest(opened=OPENED - timedelta(days=1)), 0,
         "it is older than this try's off-peak window: it was crawled in the window that opened "
         "at 2026-11-19T23:30:00+00:00, this try runs in the one that opened at "
         "2026-11-20T23:30:00+00:00"),
        (None, 0, "it has no manifest"),
    ],
)  # fmt: skip
def test_a_state_is_resumed_only_for_the_same_config_and_window(
    tmp_path, caplog, left, resumed, why
):
    folder = kept_state(tmp_path, left)
    state = CrawlState(local(folder), "c" * 64, OPENED, logging.getLogger("t"))
    work = tmp_path / "work" / "pages"
    with caplog.at_level(logging.INFO):
        assert state.restore(work, try_number=2) == resumed
    assert sorted(p.name for p in work.iterdir()) == ["a.page", "b.page"][:resumed]
    if why:
        assert why in caplog.text and "starts from its first page" in caplog.text
        assert not (folder / "pages").exists()  # removed, not left for a later try
    written = Manifest.read(local(folder / MANIFEST))
    assert (written.config, written.window_opened, written.try_number) == (
        "c" * 64, OPENED.isoformat(), 2)  # fmt: skip


def test_new_pages_reach_the_state_while_the_crawl_runs_and_the_last_at_its_end(tmp_path):
    folder = tmp_path / "state"
    state = CrawlState(local(folder), "c" * 64, OPENED)
    pages = tmp_path / "work" / "pages"
    state.restore(pages, try_number=1)
    journal = pages / "journal.txt"
    with state.syncing(pages, every=0.05):
        (pages / "p1.page").write_bytes(b"1")
        journal.write_text("p1.page\n")
        deadline = time.monotonic() + 5
        while not (folder / "pages" / "p1.page").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (folder / "pages" / "p1.page").read_bytes() == b"1"  # while running
        (pages / "p2.page").write_bytes(b"2")
        with open(journal, "a") as fh:
            fh.write("p2.page\np3.pa")  # a line still being written is not read yet
    assert sorted(p.name for p in (folder / "pages").iterdir()) == ["p1.page", "p2.page"]
    state.discard()
    assert not folder.exists()


def test_a_sweep_removes_only_states_older_than_two_days(tmp_path):
    site_region = tmp_path / "crawl-state" / "site=s" / "region=r"
    old_started = datetime.now(tz=UTC) - timedelta(hours=49)
    for day, started in (("2026-11-18", old_started), ("2026-11-20", None)):
        folder = site_region / f"date={day}" / "run"
        kept_state(folder.parent, manifest(started=started))
        os.rename(folder.parent / "state", folder)
    assert CrawlState.sweep(local(site_region)) == 1
    left = sorted(p.relative_to(site_region) for p in site_region.glob("*/*"))
    assert [str(p) for p in left] == ["date=2026-11-20/run"]
