"""`make run`: PostgreSQL, the demo sites and Airflow on one machine, then the main job."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dev.localpg import LocalPostgres
from offpeak import naming

REPO = Path(__file__).resolve().parents[1]


def site_connections(config_dir: Path | None = None) -> list[str]:
    """The ``base_url_conn_id`` of every valid site in the config (a new site needs no edit
    here). A broken site file is skipped: the config-check DAG reports it."""
    from offpeak.config import load_project

    return sorted({site.base_url_conn_id for site in load_project(config_dir).sites.values()})


def state_dir() -> Path:
    return Path(os.environ.get("OFFPEAK_STATE_DIR", REPO / ".local")).absolute()


def airflow_env(
    state: Path,
    pg: LocalPostgres,
    demo_url: str,
    api_port: int = 8080,
    ignore_windows: bool = False,
    keep_site_connections: bool = False,
) -> dict[str, str]:
    """Every setting Airflow and the project need, as env vars (nothing in airflow.cfg).

    ``ignore_windows``: crawls run at once instead of waiting for their region's off-peak
    window (the demo sites have no peak hours). ``keep_site_connections``: a site connection
    already in the environment (``AIRFLOW_CONN_<ID>``, a new site's real URL) wins over the
    demo sites' URL; tests always use the demo sites.
    """
    home = state / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    secret_file = state / "secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
    secret = secret_file.read_text().strip()
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.uri("airflow", "postgresql+psycopg2"),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "AIRFLOW__API__SECRET_KEY": secret,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_WAREHOUSE": pg.uri("warehouse"),
        "OFFPEAK_DATA_ROOT": (state / "data").as_uri(),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])
        ),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for conn_id in site_connections():
        name = f"AIRFLOW_CONN_{conn_id.upper()}"
        env[name] = os.environ.get(name, demo_url) if keep_site_connections else demo_url
    if ignore_windows:
        env["OFFPEAK_IGNORE_WINDOWS"] = "true"
    return env


def write_cli_env(state: Path, env: dict[str, str]) -> Path:
    """``.local/airflow.env``: `source` it to run the airflow CLI against `make run`'s stack."""
    path = state / "airflow.env"
    lines = [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    lines.append(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def admin_password(state: Path) -> str:
    """The UI password of user admin: made once, kept in the state folder (git-ignored)."""
    path = state / "airflow" / "simple_auth_manager_passwords.json.generated"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    return json.loads(path.read_text())["admin"]


class Processes:
    """Child processes started by `make run`; all stopped together on exit or Ctrl-C."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
            )
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise SystemExit(
                    f"{name} exited with code {proc.returncode}; see {self.logs / name}.log"
                )

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _wait_http(url: str, timeout: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def _run_module(env: dict[str, str], module: str, *args: str) -> str:
    """``python -m <module> ...`` with the project's environment; exits with its output."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _airflow(env: dict[str, str], *args: str) -> str:
    return _run_module(env, "airflow", *args)


def row_counts(pg: LocalPostgres) -> list[tuple[str, str, int]]:
    import psycopg

    with psycopg.connect(pg.uri("warehouse")) as conn:
        rows = conn.execute(
            "SELECT site, region, sum(rows_inserted + rows_updated + rows_unchanged) "
            "FROM (SELECT DISTINCT ON (site, region, trading_date) * FROM scraped.load_audit "
            "ORDER BY site, region, trading_date, loaded_at DESC) latest "
            "GROUP BY site, region ORDER BY site, region"
        ).fetchall()
    return [(s, r, int(n)) for s, r, n in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--api-port", type=int, default=int(os.environ.get("OFFPEAK_API_PORT", 8080))
    )
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("OFFPEAK_PG_PORT", 5439)))
    parser.add_argument(
        "--demo-port", type=int, default=int(os.environ.get("OFFPEAK_DEMO_PORT", 8808))
    )
    parser.add_argument(
        "--exit-after-job", action="store_true", help="stop once the main job is done"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for the main job"
    )
    parser.add_argument(
        "--enforce-windows",
        action="store_true",
        help="crawls wait for their region's off-peak window, as in production",
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    state = state_dir()
    pg = LocalPostgres(state / "pg", args.pg_port).start()
    pg.create_databases("airflow", "warehouse")
    print(f"PostgreSQL on 127.0.0.1:{args.pg_port} (data in {pg.data})", flush=True)

    demo_url = f"http://127.0.0.1:{args.demo_port}"
    project_env = airflow_env(
        state,
        pg,
        demo_url,
        args.api_port,
        ignore_windows=not args.enforce_windows,
        keep_site_connections=True,
    )
    cli_env = write_cli_env(state, project_env)
    env = {**os.environ, **project_env}
    admin_password(state)
    procs = Processes(state / "logs")

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a shell that starts `make run` in the background ignores SIGINT.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        procs.start(
            "demo_sites",
            [
                sys.executable,
                str(REPO / "include/demo_sites/server.py"),
                "--port",
                str(args.demo_port),
            ],
            env,
        )
        _airflow(env, "db", "migrate")
        print(_run_module(env, "offpeak.pools").strip(), flush=True)
        airflow = [sys.executable, "-m", "airflow"]
        procs.start("api-server", [*airflow, "api-server", "--port", str(args.api_port)], env)
        for component in ("scheduler", "dag-processor", "triggerer"):
            procs.start(component, [*airflow, component], env)
        _wait_http(f"{demo_url}/robots.txt", 30, procs)
        _wait_http(f"http://127.0.0.1:{args.api_port}/api/v2/monitor/health", 180, procs)
        print(
            f"Airflow api-server on http://localhost:{args.api_port} (logs in {procs.logs})",
            flush=True,
        )

        dag_ids = _wait_for_dags(pg, procs)
        # rollup__global stays paused: it summarises a date once every region's window has
        # closed, and `make run` only crawls each region's latest trading date.
        _airflow(env, "dags", "unpause", "--treat-dag-id-as-regex", "-y", MAIN_JOB_DAGS)
        print(
            f"Unpaused {len(dag_ids)} DAGs (site crawls and region rollups); the scheduler runs "
            "each for its region's latest trading date",
            flush=True,
        )
        if args.enforce_windows:
            print("Crawls wait for their region's off-peak window (--enforce-windows)", flush=True)
        else:
            print(
                "Crawls start at once: the demo sites have no peak hours "
                "(OFFPEAK_IGNORE_WINDOWS=true; --enforce-windows to wait)",
                flush=True,
            )
        states = _wait_for_runs(pg, dag_ids, procs, args.timeout)
        ok = all(s == "success" for s in states.values())
        print(f"\nMain job {'succeeded' if ok else 'FAILED'} after {time.monotonic() - t0:.0f}s:")
        for dag_id, st in sorted(states.items()):
            print(f"  {st:8} {dag_id}")
        print("\nRows in the warehouse (latest load per site, region and date):")
        for site, region, n in row_counts(pg):
            print(f"  {site:10} {region:14} {n:6}")
        print(
            "\nRegion summaries are in scraped.rollup_site_day and rollup_measure_day; "
            "rollup__global is paused (unpause it, or backfill it for a date every region ran).",
            flush=True,
        )
        print(
            f"\nUI:     http://localhost:{args.api_port}   login: admin / {admin_password(state)}\n"
            "Counts: make counts   (rows per site and region in the warehouse)\n"
            f"CLI:    source {cli_env}   (then e.g. airflow backfill create ...)\n",
            flush=True,
        )
        if args.exit_after_job:
            return 0 if ok else 1
        print("Running; press Ctrl-C to stop everything make run started.", flush=True)
        while True:
            procs.check()
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    finally:
        procs.stop()
        pg.stop()


def _metadata(pg: LocalPostgres, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        return conn.execute(query).fetchall()


# Every site DAG and region rollup, not rollup__global (ids as offpeak.naming builds them).
MAIN_JOB_DAGS = (
    rf"^({naming.SCRAPE}{naming.SEPARATOR}|{naming.ROLLUP}{naming.SEPARATOR}(?!{naming.GLOBAL}$))"
)


def _wait_for_dags(pg: LocalPostgres, procs: Processes, timeout: float = 300) -> list[str]:
    """The main job's DAGs, once the dag-processor has stored them (and rollup__global)."""
    import re

    from offpeak.config import load_project
    from offpeak.factory import dag_ids

    expected = dag_ids(load_project())
    main_job = [d for d in expected if re.match(MAIN_JOB_DAGS, d)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        listed = {r[0] for r in _metadata(pg, "SELECT dag_id FROM serialized_dag")}
        if set(expected) <= listed:
            return main_job
        time.sleep(2)
    raise SystemExit(f"DAGs not parsed within {timeout}s; missing {sorted(set(expected) - listed)}")


def _wait_for_runs(
    pg: LocalPostgres, dag_ids: list[str], procs: Processes, timeout: float
) -> dict[str, str]:
    """Latest run state per DAG once every DAG's latest run has finished (or at timeout)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    last_report = ""
    while time.monotonic() < deadline:
        procs.check()
        rows = _metadata(
            pg,
            "SELECT DISTINCT ON (dag_id) dag_id, state FROM dag_run "
            "ORDER BY dag_id, run_after DESC",
        )
        states = dict.fromkeys(dag_ids, "none") | {d: s for d, s in rows if d in dag_ids}
        done = sum(s in ("success", "failed") for s in states.values())
        report = f"  runs finished: {done}/{len(dag_ids)}"
        if report != last_report:
            print(report, flush=True)
            last_report = report
        if done == len(dag_ids):
            break
        time.sleep(3)
    return states


def counts(argv: list[str] | None = None) -> int:
    state = state_dir()
    port = int(os.environ.get("OFFPEAK_PG_PORT", 5439))
    pg = LocalPostgres(state / "pg", port)
    for site, region, n in row_counts(pg):
        print(f"{site:10} {region:14} {n:6}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["counts"]:
        raise SystemExit(counts(sys.argv[2:]))
    raise SystemExit(main(sys.argv[1:] if sys.argv[1:2] != ["run"] else sys.argv[2:]))
