"""Crawl work folders on a data root that several workers share."""

from __future__ import annotations

import os

from offpeak.pipeline import storage

DEAD_PID = 4_194_303  # above Linux's default pid_max: never a live process


def test_a_crawl_cleans_only_its_own_hosts_dead_folders(tmp_path, monkeypatch):
    """A killed task's folder on this host goes when the next crawl starts; a folder of
    another host's task (whose pid means nothing here) stays, whatever its pid."""
    monkeypatch.setenv("OFFPEAK_DATA_ROOT", tmp_path.as_uri())
    area = tmp_path / "tmp"
    host = storage._host()
    mine = area / f"crawl-{DEAD_PID}-{host}-k1ll3d_1"
    legacy = area / f"crawl-{DEAD_PID}-k1ll3d_2"  # named before folders carried the host
    other = area / f"crawl-{DEAD_PID}-worker_b.example-a11v3_3"
    live_elsewhere = area / f"crawl-{os.getpid()}-worker_b.example-a11v3_4"
    for folder in (mine, legacy, other, live_elsewhere):
        folder.mkdir(parents=True)
        (folder / "feed.jsonl").write_text("{}\n")

    with storage.crawl_workdir() as work:
        assert work.name.startswith(f"crawl-{os.getpid()}-{host}-")
        left = sorted(p.name for p in area.iterdir())
    assert not mine.exists() and not legacy.exists()
    assert other.exists() and live_elsewhere.exists()
    assert left == sorted([other.name, live_elsewhere.name, work.name])
    assert not work.exists()
