"""The Celery deployment on one machine, as docker-compose.yaml lays it out on several: Debian's
redis-server as the broker, an S3-compatible store as the data root, and `airflow celery
worker`s that share no folder, beside the stack's api-server, scheduler, dag-processor and
triggerer.

The S3-compatible store is moto's server (PyPI): a real S3 HTTP API on 127.0.0.1, standing in
for the outside world's object store (no network here); the project talks to it through
Airflow's ``ObjectStoragePath`` and the Amazon provider, as it would to S3 or MinIO.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from dev.devenv import REPO
from support.services import free_port
from support.stack import AirflowStack

REDIS_SERVER = "/usr/bin/redis-server"
BUCKET = "offpeak-data"
S3_CONN = "offpeak_s3"


def _wait_port(port: int, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


class Redis:
    """Debian's redis-server on a free port, with the packaged defaults the official image
    has too: snapshot on shutdown, so a restart keeps the queued messages."""

    def __init__(self, home: Path) -> None:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(f"{REDIS_SERVER} is missing: `make test` installs redis-server")
        self.port = free_port()
        self.dir = home / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                 str(self.dir), "--save", "3600 1 300 100 60 10000"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_port(self.port, 30, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis saves its snapshot, then exits
            self.proc.wait(timeout=30)


class S3Store:
    """An S3-compatible server (moto's) on a free port, with one bucket for the data root."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.log = home / "s3.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> str:
        """``AIRFLOW_CONN_OFFPEAK_S3``: an aws connection to this endpoint (test keys)."""
        return json.dumps({
            "conn_type": "aws", "login": "offpeak-test", "password": "offpeak-test-secret",
            "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        })  # fmt: skip

    def start(self) -> S3Store:
        server = Path(sys.executable).parent / "moto_server"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_port(self.port, 60, "the S3 server", self.proc)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="offpeak-test", aws_secret_access_key="offpeak-test-secret",
        )  # fmt: skip

    def keys(self, prefix: str = "") -> list[str]:
        listing = self.client().get_paginator("list_objects_v2")
        pages = listing.paginate(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class CeleryStack(AirflowStack):
    """An AirflowStack on the CeleryExecutor, with workers started and killed by name.

    Each worker runs in a folder of its own (its working directory and TMPDIR): the only data
    they share is the S3 data root, as workers on different machines would. Airflow knows each
    by the name it reports as its hostname (``[core] hostname_callable``), as separate machines
    would each report theirs. Logs stay in the stack's AIRFLOW_HOME, which the api-server reads.
    """

    DATABASE = "airflow_celery"
    WAREHOUSE = "warehouse_celery"

    def __init__(self, pg, home: Path, redis: Redis, s3: S3Store) -> None:
        super().__init__(pg, home)
        self.redis, self.s3 = redis, s3
        port = free_port()
        self.env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.uri(self.DATABASE, "postgresql"),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # A dead worker's tasks are found within ~30 s (production default: 300 s).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # A task a dead worker had received but not yet started stays queued until this
            # timeout (checked every interval), then is queued again: within ~2 min here
            # (production defaults: 600 s, checked every 120 s; docs/deploying.md).
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
            "OFFPEAK_DATA_ROOT": f"s3://{S3_CONN}@{BUCKET}/celery",
            f"AIRFLOW_CONN_{S3_CONN.upper()}": s3.connection(),
            "OFFPEAK_IGNORE_WINDOWS": "true",  # the demo sites have no peak hours
            # Beside the other stack's triggerer, which has the default port.
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        })  # fmt: skip
        self.workers: dict[str, subprocess.Popen] = {}

    def start_workers(self, **queues: list[str]) -> None:
        """``airflow celery worker`` per name, serving its queues (``w1=["default"]``), all
        started at once; returns when every one is ready for tasks."""
        started = {name: self._spawn_worker(name, q) for name, q in queues.items()}
        for name, (log_path, offset) in started.items():

            def ready(name=name, log_path=log_path, offset=offset) -> bool:
                if self.workers[name].poll() is not None:
                    raise RuntimeError(f"worker {name} exited; see {log_path}")
                with open(log_path, "rb") as f:
                    f.seek(offset)
                    return b" ready." in f.read()

            self.wait(ready, 120, f"celery worker {name} to be ready")

    def _spawn_worker(self, name: str, queues: list[str], concurrency: int = 4):
        if name in self.workers:  # a killed worker's leftovers (Airflow's stale-bundle cleaner)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.workers[name].pid, signal.SIGKILL)
        folder = self.home / f"worker-{name}"
        folder.mkdir(exist_ok=True)
        env = {
            **self.env,
            "TMPDIR": str(folder),
            "OFFPEAK_TEST_WORKER": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "support.hostname.worker_name",
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests")]),
        }
        log_path = self.procs.logs / f"worker-{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.workers[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname",
                 f"{name}@offpeak", "--queues", ",".join(queues), "--concurrency",
                 str(concurrency), "--skip-serve-logs"],
                env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return log_path, offset

    def celery_control(self):
        """Celery's remote control of the workers (``add_consumer``, ``cancel_consumer``…),
        through this stack's broker: the broadcasts reach every worker, whatever its app."""
        from celery import Celery

        return Celery(broker=self.redis.url).control

    def worker_tree(self, name: str) -> list[psutil.Process]:
        """The worker's processes: the Celery main process and all it started (pool
        processes, task supervisors, tasks, crawls)."""
        main = psutil.Process(self.workers[name].pid)
        return [main, *main.children(recursive=True)]

    def kill_worker(self, name: str) -> list[psutil.Process]:
        """SIGKILL the worker's main process, as the OOM killer or a crash would; returns the
        processes it had, to watch what becomes of them."""
        tree = self.worker_tree(name)
        os.kill(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(timeout=10)
        return tree

    def stop_worker(self, name: str) -> None:
        """A warm shutdown (SIGTERM: running tasks finish), then SIGKILL for what is left of
        the worker's process group, e.g. helpers a killed worker left behind."""
        proc = self.workers.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        super().stop()
