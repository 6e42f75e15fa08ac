"""Where raw, clean and reject files live, and how they are published atomically."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

STAGES = {"raw": ".jsonl", "clean": ".csv", "rejects": ".jsonl"}


def data_root() -> ObjectStoragePath:
    """``OFFPEAK_DATA_ROOT`` (``s3://conn_id@bucket/prefix`` works), else
    ``$AIRFLOW_HOME/offpeak-data`` on the local disk."""
    from airflow.sdk import ObjectStoragePath

    root = os.environ.get("OFFPEAK_DATA_ROOT")
    if not root:
        home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        root = Path(home, "offpeak-data").absolute().as_uri()
    return ObjectStoragePath(root)


def run_key(run_id: str) -> str:
    """A file-name-safe, stable name for one DAG run (re-runs overwrite their own files)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"


def partition(stage: str, site: str, region: str, trading_date: date, key: str):
    """``<root>/<stage>/site=<s>/region=<r>/date=<d>/<key><suffix>``."""
    return (
        data_root()
        / stage
        / f"site={site}"
        / f"region={region}"
        / f"date={trading_date.isoformat()}"
        / f"{key}{STAGES[stage]}"
    )


def from_uri(uri: str) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri)


def publish(local_file: Path, dest: ObjectStoragePath) -> None:
    """Move a finished local file to ``dest`` so readers see all of it or nothing."""
    if dest.protocol in ("file", "local", ""):
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
    fd, name = tempfile.mkstemp(prefix="offpeak-", suffix=dest.suffix)
    os.close(fd)
    local = Path(name)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with open(local, mode, **kwargs) as handle:
            yield handle
        publish(local, dest)
    finally:
        local.unlink(missing_ok=True)
