"""Crawl work folders on a data root that several workers share."""

from __future__ import annotations

import os
import time

from offpeak.pipeline import storage

DEAD_PID = 4_194_303  # above Linux's default pid_max: never a live process


def test_a_crawl_cleans_only_its_own_hosts_dead_folders(tmp_path, monkeypatch):
    """A killed task's folder on this host goes when the next crawl starts; a folder of
    another host's task (whose pid means nothing here) stays, whatever its pid."""
    monkeypatch.setenv("OFFPEAK_DATA_ROOT", tmp_path.as_uri())
    area = tmp_path / "tmp"
    host = storage._host()
    mine = area / f"crawl-{DEAD_PID}-{host}-k1ll3d_1"
    legacy = area / f"crawl-{DEAD_PID}-k1ll3d_2"  # named before hosts: untouched for 3 days
    other = area / f"crawl-{DEAD_PID}-worker_b.example-a11v3_3"
    live_elsewhere = area / f"crawl-{os.getpid()}-worker_b.example-a11v3_4"
    for folder in (mine, legacy, other, live_elsewhere):
        folder.mkdir(parents=True)
        (folder / "feed.jsonl").write_text("{}\n")
    old = time.time() - 3 * 86400
    for item in (legacy / "feed.jsonl", legacy):
        os.utime(item, (old, old))

    with storage.crawl_workdir() as work:
        assert work.name.startswith(f"crawl-{os.getpid()}-{host}-")
        left = sorted(p.name for p in area.iterdir())
    assert not mine.exists() and not legacy.exists()
    assert other.exists() and live_elsewhere.exists()
    assert left == sorted([other.name, live_elsewhere.name, work.name])
    assert not work.exists()


def test_a_folder_named_before_hosts_goes_only_once_untouched_for_two_days(tmp_path, monkeypatch):
    """``crawl-<pid>-<random>`` names no host: its pid may be a live crawl of an old worker
    elsewhere (a rolling upgrade), so any crawl removes it by age alone, never by pid."""
    monkeypatch.setenv("OFFPEAK_DATA_ROOT", tmp_path.as_uri())
    area = tmp_path / "tmp"
    recent = area / f"crawl-{DEAD_PID}-r3c3nt_1"  # a dead pid here, but written an hour ago
    stale = area / f"crawl-{DEAD_PID}-st4l3_2"
    for folder in (recent, stale):
        folder.mkdir(parents=True)
        (folder / "feed.jsonl").write_text("{}\n")
    hour_ago, three_days_ago = time.time() - 3600, time.time() - 3 * 86400
    for path, when in ((recent, hour_ago), (stale, three_days_ago)):
        for item in (path / "feed.jsonl", path):
            os.utime(item, (when, when))

    with storage.crawl_workdir():
        pass
    assert recent.exists() and not stale.exists()


def test_a_local_file_is_read_without_loading_every_providers_filesystem(tmp_path):
    """Transform and load read local files with the builtin open: ObjectStoragePath's first
    open would import every provider's filesystem and asset modules (Amazon's, with boto3), a
    third of a CPU-second in each task process. Checked in a fresh interpreter."""
    import subprocess
    import sys

    feed = tmp_path / "raw.jsonl"
    feed.write_text('{"a": 1}\n', encoding="utf-8")
    code = (
        "import sys\n"
        "from airflow.sdk import ObjectStoragePath\n"
        "from offpeak.pipeline import storage\n"
        f"path = ObjectStoragePath({feed.as_uri()!r})\n"
        "with storage.open_file(path) as f:\n"
        "    assert f.read() == b'{\"a\": 1}\\n'\n"
        "assert storage.exists(path)\n"
        "assert not storage.exists(path.parent / 'missing.csv')\n"
        "heavy = ('boto3', 'botocore', 'airflow.providers.amazon.aws')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


def test_a_plain_local_path_opens_as_a_file_path_does(tmp_path):
    """Callers may hand the load a pathlib.Path (the quality checks' tests do)."""
    from airflow.sdk import ObjectStoragePath

    clean = tmp_path / "clean.csv"
    clean.write_bytes(b"a,1\n")
    for path in (clean, ObjectStoragePath(clean.as_uri())):
        with storage.open_file(path) as f:
            assert f.read() == b"a,1\n"
        assert storage.exists(path)
    assert not storage.exists(tmp_path / "gone.csv")
