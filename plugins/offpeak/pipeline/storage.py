"""Where raw, clean and reject files live, and how they are published atomically."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

from offpeak import settings

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from offpeak.partition import Partition

STAGES = {"raw": ".jsonl", "clean": ".csv", "rejects": ".jsonl"}
# A crawl work folder named before folders carried their host is removed once nothing in it
# has changed for this long: a live crawl writes its feed as it goes, and none runs two days.
UNOWNED_AFTER = timedelta(hours=48)


def data_root() -> ObjectStoragePath:
    """The root of every file: ``offpeak.settings.data_root`` (``OFFPEAK_DATA_ROOT``)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(settings.data_root())


def crawl_state(part: Partition) -> ObjectStoragePath:
    """``<root>/crawl-state/site=<s>/region=<r>/date=<d>/<run key>/``: what a crawl of the
    partition's run keeps while it runs, for a later try to resume (offpeak.crawl.resume)."""
    return (
        data_root()
        / "crawl-state"
        / f"site={part.site}"
        / f"region={part.region}"
        / f"date={part.trading_date.isoformat()}"
        / part.run_key
    )


def downloads(site: str, day: date | None = None) -> ObjectStoragePath:
    """``<root>/downloads/site=<s>/[day=<d>/]``: a data_file site's downloads kept on ``day``
    (UTC), for the day's later runs to revalidate (offpeak.crawl.downloads)."""
    folder = data_root() / "downloads" / f"site={site}"
    return folder if day is None else folder / f"day={day.isoformat()}"


def partition(stage: str, part: Partition) -> ObjectStoragePath:
    """``<root>/<stage>/site=<s>/region=<r>/date=<d>/<run key><suffix>``: the partition's file
    of ``stage`` (raw, clean or rejects), named by its run (a re-run overwrites its own)."""
    return (
        data_root()
        / stage
        / f"site={part.site}"
        / f"region={part.region}"
        / f"date={part.trading_date.isoformat()}"
        / f"{part.run_key}{STAGES[stage]}"
    )


def is_local(path: ObjectStoragePath) -> bool:
    """A path on this machine's disk (``file://``), where a publish is a rename."""
    return path.protocol in ("file", "local", "")


def _on_disk(path: ObjectStoragePath | Path) -> str | None:
    """The local file name of ``path`` (an ObjectStoragePath on ``file://``, or a plain
    path), or None for an object store."""
    if not hasattr(path, "protocol"):
        return os.fspath(path)
    return path.path if is_local(path) else None


def open_file(path: ObjectStoragePath | Path, mode: str = "rb") -> IO:
    """``path`` opened: a local one with the builtin ``open``. ObjectStoragePath's first
    filesystem call in a process registers every provider's filesystem and, for hook lineage,
    every provider's asset handlers (Amazon's import boto3 and SQLAlchemy models): ~0.3 CPU-s
    in each task process that touches a file, which a file on this disk does not need."""
    local = _on_disk(path)
    return open(local, mode) if local is not None else path.open(mode)


def exists(path: ObjectStoragePath | Path) -> bool:
    """Whether ``path`` exists (a local one without ObjectStoragePath's start-up: open_file)."""
    local = _on_disk(path)
    return os.path.exists(local) if local is not None else path.exists()


def sibling(path: ObjectStoragePath, suffix: str, new_suffix: str) -> ObjectStoragePath:
    """``<dir>/<name without suffix><new_suffix>``: a file that travels with ``path``."""
    return path.parent / (path.name.removesuffix(suffix) + new_suffix)


def dead_letters_path(raw: ObjectStoragePath) -> ObjectStoragePath:
    """Beside the raw feed: ``<key>.dead_letters.jsonl``, every failed or refused request."""
    return sibling(raw, STAGES["raw"], ".dead_letters.jsonl")


def temp_area() -> Path:
    """Local scratch space for files on their way to the data root: ``<root>/tmp`` when the
    data root is local (a publish is then a rename), else ``offpeak-tmp`` in the system's
    temporary folder."""
    root = data_root()
    if is_local(root):
        area = Path(root.path) / "tmp"
    else:
        area = Path(tempfile.gettempdir()) / "offpeak-tmp"
    area.mkdir(parents=True, exist_ok=True)
    return area


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    """This machine's (or container's) name, as a crawl folder carries it."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _age(folder: Path) -> float:
    """Seconds since anything in ``folder`` (or the folder itself) last changed."""
    try:
        newest = max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.rglob("*"))])
    except OSError:  # removed meanwhile
        return 0.0
    return time.time() - newest


@contextmanager
def crawl_workdir() -> Iterator[Path]:
    """A folder for one crawl's feed, stats and dead letters, in the temp area, named by host
    and task pid (``crawl-<pid>-<host>-<random>``); removed afterwards. Folders left by a task
    of this host that was killed (its pid gone) are removed when the next crawl starts, so a
    partial feed never lingers. Another host's folders are never touched: on a data root that
    several workers share, their pids mean nothing here. A folder named before folders carried
    their host (``crawl-<pid>-<random>``) names no owner, so no pid check can be trusted (an
    old worker of a rolling upgrade may still be crawling into it): any crawl removes it once
    it is older than ``UNOWNED_AFTER``, longer than any crawl may run."""
    area = temp_area()
    host = _host()
    for old in area.glob("crawl-*"):
        parts = old.name.split("-")  # mkdtemp's random part has no "-"; a host slug neither
        if len(parts) == 3:  # named before hosts: by age alone
            if _age(old) > UNOWNED_AFTER.total_seconds():
                shutil.rmtree(old, ignore_errors=True)
            continue
        pid, owner = parts[1], parts[2] if len(parts) == 4 else None
        if owner == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"crawl-{os.getpid()}-{host}-", dir=area))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def glob(folder: ObjectStoragePath, pattern: str) -> list[str]:
    """The paths under ``folder`` that match ``pattern`` (``*.page``, ``date=*/*/x.json``),
    relative to it, sorted; none when ``folder`` does not exist."""
    local = _on_disk(folder)
    if local is not None:
        return sorted(str(p.relative_to(local)) for p in Path(local).glob(pattern))
    base = folder.path.rstrip("/")
    found = folder.fs.glob(f"{base}/{pattern}") if folder.exists() else []
    return sorted(p[len(base) + 1 :] for p in found)


def download(path: ObjectStoragePath, local_file: Path) -> None:
    """Copy ``path`` to ``local_file`` on this machine."""
    local = _on_disk(path)
    if local is not None:
        shutil.copyfile(local, local_file)
    else:
        path.fs.get_file(path.path, str(local_file))


def upload(local_file: Path, dest: ObjectStoragePath) -> None:
    """Copy ``local_file`` to ``dest``, which readers see whole or not at all (publish, without
    giving up the local file)."""
    local = _on_disk(dest)
    if local is None:
        dest.fs.put_file(str(local_file), dest.path)  # an object appears when its upload ends
        return
    target = Path(local)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    shutil.copyfile(local_file, tmp)
    os.replace(tmp, target)


def remove_tree(folder: ObjectStoragePath) -> None:
    """Remove ``folder`` and everything in it; nothing when it does not exist."""
    local = _on_disk(folder)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
    elif folder.exists():
        folder.fs.rm(folder.path, recursive=True)


def from_uri(uri: str) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri)


def publish(local_file: Path, dest: ObjectStoragePath) -> None:
    """Move a finished local file to ``dest`` so readers see all of it or nothing."""
    if is_local(dest):
        target = Path(dest.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        shutil.move(local_file, tmp)  # may cross filesystems; the rename below may not
        os.replace(tmp, target)
        return
    # Object stores publish an object only when its upload completes, so a direct copy is atomic.
    dest.parent.mkdir(parents=True, exist_ok=True)
    from airflow.sdk import ObjectStoragePath

    ObjectStoragePath(local_file.absolute().as_uri()).copy(dest)
    local_file.unlink()


@contextmanager
def atomic_writer(dest: ObjectStoragePath, mode: str = "w") -> Iterator[IO]:
    """Write to a local temporary file, then publish it to ``dest``; nothing on failure."""
    # Beside a local destination (the publish is then a rename, and a killed task leaves its
    # partial file there, hidden, never in the system's temp folder); else the system's.
    folder = Path(dest.path).parent if is_local(dest) else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".offpeak-", suffix=dest.suffix, dir=folder)
    os.close(fd)
    local = Path(name)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with open(local, mode, **kwargs) as handle:
            yield handle
        publish(local, dest)
    finally:
        local.unlink(missing_ok=True)
