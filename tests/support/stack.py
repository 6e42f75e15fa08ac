"""The stack tier's real Airflow: api-server, scheduler, dag-processor and triggerer as
subprocesses on the session's PostgreSQL and demo sites, and a local webhook receiver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from dev.devenv import REPO, Processes, admin_password
from offpeak.config import load_project

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def hhmmss(zone: str, moment: datetime) -> str:
    """``moment`` as local wall-clock time in ``zone``, the way regions.yaml writes times."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%H:%M:%S")


class AirflowStack:
    """The four Airflow components, started from the test session's environment.

    ``config_dir`` is a private copy of ``include/config`` (OFFPEAK_CONFIG_DIR): tests may
    edit it, and tasks read it when they run. The stack has its own metadata database
    (``airflow_stack``): its scheduler must never see, and race on, the runs that other tests
    make with ``dag.test()`` in the session's ``airflow`` database.
    """

    DATABASE = "airflow_stack"
    WAREHOUSE = "warehouse_stack"  # and its own warehouse: dag.test() tests count rows too

    def __init__(self, pg, home: Path, alerts_url: str | None = None) -> None:
        self.pg = pg
        self.home = home
        self.config_dir = home / "config"
        shutil.copytree(REPO / "include" / "config", self.config_dir)
        self.env = {
            **os.environ,
            "OFFPEAK_CONFIG_DIR": str(self.config_dir),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.uri(self.DATABASE, "postgresql+psycopg2"),
            "OFFPEAK_DEADLINE_ALERTS": "true",
            "AIRFLOW_CONN_WAREHOUSE": pg.uri(self.WAREHOUSE),
            # admin, a read-only user, and one who may read only the europe DAGs
            # (support/auth.py), for the permission tests of the Coverage page
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,analyst:viewer",
            "AIRFLOW__CORE__AUTH_MANAGER": "support.auth.RegionScopedAuthManager",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")])
            ),
        }
        if alerts_url:  # the webhook of regions.yaml's alerts.http_conn_id (offpeak_alerts)
            self.env["AIRFLOW_CONN_OFFPEAK_ALERTS"] = json.dumps(
                {"conn_type": "http", "host": alerts_url}
            )
        self.env.pop("OFFPEAK_IGNORE_WINDOWS", None)  # windows are enforced, as in production
        self.procs = Processes(home / "logs")
        self.started_at = time.time()

    # ------------------------------------------------------------------ processes

    def start(self) -> AirflowStack:
        self.pg.create_databases(self.DATABASE, self.WAREHOUSE)
        self.run_module("airflow", "db", "migrate")
        self.run_module("offpeak.pools")
        for name in COMPONENTS:
            self.procs.start(name, [sys.executable, "-m", "airflow", name], self.env)
        port = self.env["AIRFLOW__API__PORT"]
        self.wait(lambda: self._http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health"), 180,
                  "the api-server to answer")  # fmt: skip
        return self

    def stop(self) -> None:
        self.procs.stop()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in COMPONENTS:
            path = self.procs.logs / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {name}.log (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(out)

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False

    def wait(self, condition: Callable[[], object], timeout: float, what: str, every=1.0):
        """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.procs.check()
            result = condition()
            if result:
                return result
            time.sleep(every)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tail()}")

    # ------------------------------------------------------------------ Airflow

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"

    @property
    def password(self) -> str:
        """User admin's password (simple auth manager), as `make run` prints it."""
        return admin_password(Path(self.env["AIRFLOW_HOME"]).parent)

    def password_of(self, user: str) -> str:
        """A simple-auth-manager user's password: the api-server writes one for each user
        of AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS that has none yet."""
        path = Path(self.env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())[user]

    def token(self, user: str = "admin") -> str:
        """A JWT for the public REST API, the way docs/operating.md gets one with curl."""
        password = self.password if user == "admin" else self.password_of(user)
        request = urllib.request.Request(
            f"{self.api_url}/auth/token",
            data=json.dumps({"username": user, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        # 60 s: on a loaded 2-core machine the api-server once took over 10 s to answer.
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["access_token"]

    def airflow(self, *args: str) -> str:
        return self.run_module("airflow", *args, timeout=120)

    def run_module(self, module: str, *args: str, timeout: float = 300) -> str:
        """``python -m <module> ...`` with this stack's environment; fails with its output."""
        done = subprocess.run(
            [sys.executable, "-m", module, *args], env=self.env, capture_output=True,
            text=True, cwd=REPO, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"{module} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def backfill(self, dag_id: str, start: date, end: date, conf: dict | None = None,
                 *extra: str) -> int:  # fmt: skip
        """`airflow backfill create` of ``dag_id`` over start..end, as docs/operating.md shows it;
        returns the new backfill's id."""
        before = self.query("SELECT coalesce(max(id), 0) FROM backfill")[0][0]
        self.airflow(
            "backfill", "create", "--dag-id", dag_id, "--from-date", start.isoformat(),
            "--to-date", end.isoformat(),
            *(["--dag-run-conf", json.dumps(conf)] if conf else []), *extra,
        )  # fmt: skip
        (backfill_id,) = self.query("SELECT max(id) FROM backfill WHERE dag_id = %s", dag_id)[0]
        assert backfill_id and backfill_id > before, f"airflow backfill create made no {dag_id}"
        return backfill_id

    def backfill_runs(self, backfill_id: int, columns: str) -> list[tuple]:
        """``columns`` of the DAG runs (``r``) a backfill made, in logical-date order."""
        return self.query(
            f"SELECT {columns} FROM backfill_dag_run b JOIN dag_run r ON r.id = b.dag_run_id "
            "WHERE b.backfill_id = %s ORDER BY r.logical_date",
            backfill_id,
        )

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg.uri(self.DATABASE)) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_parsed(
        self, dag_ids: list[str], timeout: float = 180, since: float = 0, showing: str = ""
    ) -> None:
        """Until the dag-processor of this stack has parsed every DAG (after ``since``, a
        time.time(), when given: after a config edit), and, when ``showing`` is given, until
        each DAG's docs (its resolved config) hold that text. A parse that began before an edit
        can end after it with the old config, so a test that depends on the edit names a piece
        of it."""

        def parsed() -> bool:
            rows = self.query(
                "SELECT dag_id FROM dag WHERE last_parsed_time > to_timestamp(%s)",
                max(since, self.started_at),
            )
            if not set(dag_ids) <= {r[0] for r in rows}:
                return False
            return all(
                showing in (self.rest("GET", f"/dags/{d}/details")[1].get("doc_md") or "")
                for d in dag_ids
            )

        self.wait(parsed, timeout, f"the dag-processor to parse {dag_ids}")

    def http(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> tuple[int, Any]:
        """A call to the api-server (``path`` from its root), as the user of ``token`` (None:
        no credentials): (HTTP status, the JSON body, {} when empty, or the text)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"{self.api_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return status, raw.decode()

    def rest(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """A public REST API call (``/api/v2`` + path) as admin: (HTTP status, JSON body)."""
        return self.http(method, f"/api/v2{path}", body, self.token())

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause over REST (seconds faster than the CLI's Airflow import)."""
        status, body = self.rest("PATCH", f"/dags/{dag_id}", {"is_paused": paused})
        assert status == 200 and body["is_paused"] is paused, body

    def trigger(self, dag_id: str, conf: dict) -> str:
        """A run of ``dag_id`` with ``conf``, triggered over REST; returns its run id."""
        status, body = self.rest(
            "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
        )
        assert status == 200, body
        return body["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, states=("success", "failed"), timeout=180):
        """Until the run is in one of ``states``; returns that state."""

        def state():
            status, body = self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return body["state"] if status == 200 and body["state"] in states else None

        return self.wait(state, timeout, f"{dag_id} {run_id} to reach {states}", every=2)

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> dict:
        rows = self.query(
            "SELECT value::text FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
            "AND key = 'return_value'",
            dag_id,
            run_id,
            task_id,
        )
        assert rows, f"no XCom from {dag_id}.{task_id} in {run_id}"
        return json.loads(rows[0][0])

    def edit_yaml(self, relative: str, change: Callable[[dict], object]) -> None:
        """Change a file of this stack's config copy; tasks read it when they run."""
        path = self.config_dir / relative
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def edit_regions(self, **windows: tuple[datetime, datetime]) -> None:
        """Set regions' off-peak windows, given as instants, in this stack's config copy."""
        regions = load_project(self.config_dir).regions

        def change(data: dict) -> None:
            for name, (start, end) in windows.items():
                zone = regions[name].timezone
                data["regions"][name]["off_peak"] = {
                    "start": hhmmss(zone, start),
                    "end": hhmmss(zone, end),
                }

        self.edit_yaml("regions.yaml", change)


FUNDS_API_KEY = "s3cr3t/key+42"  # URL-quoted: s3cr3t%2Fkey%2B42
FUNDS_KEYED_URL = "/funds/{region}/{trading_date}/?page=1&api_key={api_key}"

# While the session runs, every region's window opens this far ahead: a scheduled crawl can
# only wait, so tests decide what runs (backfills with ignore_window, edited windows).
CLOSED_FOR = timedelta(hours=6)


class AlertReceiver:
    """A local stand-in for Slack's incoming webhook (the outside world: Slack cannot be
    reached from tests): records every JSON body POSTed to it."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "json": json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        # The path stands for Slack's secret part of the URL: it must never reach a log.
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/s3cretHookPath"

    def messages(self, containing: str) -> list[dict]:
        return [m["json"] for m in list(self.received) if containing in m["json"].get("text", "")]
