"""`make run`: PostgreSQL, the demo sites and Airflow on one machine, then the main job."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dev.localpg import LocalPostgres
from offpeak import naming, settings
from offpeak.connections import connection_var

if TYPE_CHECKING:
    from offpeak.config import Project, Site

REPO = Path(__file__).resolve().parents[1]
DEMO_SERVER = REPO / "include/demo_sites/server.py"


# ------------------------------------------------------------------------------ the options


@dataclass(frozen=True)
class RunDates:
    """The trading dates ``--date`` or ``--from``/``--to`` ask for (both ends included)."""

    first: date
    last: date

    def __str__(self) -> str:
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()} to {self.last.isoformat()}"

    def __len__(self) -> int:
        return (self.last - self.first).days + 1


def _iso_date(text: str) -> date:
    """argparse type of the date options: its message follows ``argument --date:``."""
    value = text.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: expected YYYY-MM-DD, e.g. 2026-08-04"
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day of the calendar") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make run",
        description=__doc__,
        epilog="From make: make run DATE=2026-08-04, make run FROM=2026-08-03 TO=2026-08-07, "
        'any option as make run RUN_ARGS="--api-port 8090 --exit-after-job".',
    )
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
        "--timeout",
        type=float,
        help="seconds to wait for the main job (default: 900, times the days of a range)",
    )
    parser.add_argument(
        "--enforce-windows",
        action="store_true",
        help="crawls wait for their region's off-peak window, as in production",
    )
    dates = parser.add_argument_group(
        "trading dates (default: each region's latest trading date)",
        "Every DAG, rollup__global included, runs each trading day of its region in the "
        "range (a backfill: weekends and exchange holidays are skipped). Dates already run "
        "are run again; the load gives the same rows.",
    )
    dates.add_argument("--date", type=_iso_date, metavar="YYYY-MM-DD", help="one trading date")
    dates.add_argument(
        "--from", dest="from_date", type=_iso_date, metavar="YYYY-MM-DD", help="first date"
    )
    dates.add_argument(
        "--to", dest="to_date", type=_iso_date, metavar="YYYY-MM-DD", help="last date (included)"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None, today: date | None = None) -> argparse.Namespace:
    """`make run`'s options; ``dates`` is a :class:`RunDates` or None (each region's latest
    trading date). A bad option exits with usage and a message naming the option."""
    parser = _parser()
    args = parser.parse_args(argv)
    today = today or datetime.now(UTC).astimezone().date()
    args.dates = None
    if args.date and (args.from_date or args.to_date):
        parser.error("--date runs one trading date, --from/--to a range: give one or the other")
    if bool(args.from_date) != bool(args.to_date):
        given, missing = ("--from", "--to") if args.from_date else ("--to", "--from")
        parser.error(f"{given} needs {missing}: a range names both ends (one date: --date)")
    if args.date:
        args.dates, last_option = RunDates(args.date, args.date), "--date"
    elif args.from_date:
        if args.from_date > args.to_date:
            parser.error(f"--from {args.from_date} is after --to {args.to_date}")
        args.dates, last_option = RunDates(args.from_date, args.to_date), "--to"
    if args.dates and args.dates.last >= today:
        parser.error(
            f"{last_option} {args.dates.last} is not before today ({today}): a trading date "
            "runs once its day has ended (without a date, make run runs each region's latest "
            "trading date)"
        )
    if args.timeout is None:
        args.timeout = 900.0 * (len(args.dates) if args.dates else 1)
    return args


# ------------------------------------------------------------------------------ connections


def configured_sites(config_dir: Path | None = None) -> list[Site]:
    """Every valid site of the config, by name (a new site needs no edit here). A broken
    site file is skipped: the config-check DAG reports it."""
    from offpeak.config import load_project

    project = load_project(config_dir)
    return [project.sites[name] for name in sorted(project.sites)]


def _demo_server() -> Any:
    # Loaded from its file (include/ is no package); nothing is started.
    spec = importlib.util.spec_from_file_location("demo_sites_server", DEMO_SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_serves(site: Site) -> bool:
    """Whether the demo sites answer every start URL of ``site`` (for its first region and a
    sample date): they can then stand in for it."""
    server = _demo_server()
    for url in site.start_urls:
        filled = (
            url.replace("{region}", site.regions[0])
            .replace("{trading_date}", "2026-01-05")
            .replace("{api_key}", "demo")
        )
        if urlsplit(filled).scheme or urlsplit(filled).netloc:
            return False  # an absolute URL: another host than the demo sites
        try:
            status = server.route("/" + filled.lstrip("/"))[0]
        except server.HttpError:
            return False
        if status != 200:
            return False
    return True


@dataclass(frozen=True)
class SiteConnectionSource:
    """Where `make run` takes a site connection from: the environment or the demo sites."""

    conn_id: str
    sites: tuple[str, ...]
    from_environment: bool
    url: str = field(repr=False)  # a real site's URL may hold its API key

    @property
    def var(self) -> str:
        return connection_var(self.conn_id)


def site_connection_sources(
    sites: Iterable[Site],
    demo_url: str,
    environ: Mapping[str, str],
    served_by_demo: Callable[[Site], bool] = demo_serves,
) -> list[SiteConnectionSource]:
    """Each site connection of the config: ``AIRFLOW_CONN_<ID>`` from ``environ`` when set,
    else the demo sites when they serve every site using it. Exits naming each site, its
    connection and the variable to export when neither holds (its crawls would fail)."""
    by_conn: dict[str, list[Site]] = {}
    for site in sites:
        by_conn.setdefault(site.base_url_conn_id, []).append(site)
    sources, missing = [], []
    for conn_id in sorted(by_conn):
        names = tuple(sorted(s.name for s in by_conn[conn_id]))
        value = environ.get(connection_var(conn_id), "")
        if value.strip():
            sources.append(SiteConnectionSource(conn_id, names, True, value))
        elif all(served_by_demo(s) for s in by_conn[conn_id]):
            sources.append(SiteConnectionSource(conn_id, names, False, demo_url))
        else:
            missing.append((conn_id, names))
    if missing:
        lines = [
            f"  site {', '.join(names)}: connection {conn_id!r} is not set and the demo sites "
            f"do not serve it; export {connection_var(conn_id)}"
            for conn_id, names in missing
        ]
        example = connection_var(missing[0][0])
        raise SystemExit(
            "make run: no base URL for these sites (their crawls would fail):\n"
            + "\n".join(lines)
            + f"\nSet each before make run, e.g.\n  export {example}='https://www.example.com'"
            "\n  make run\n(an Airflow connection URI: a password in it is the site's API key)"
        )
    return sources


# ------------------------------------------------------------------------------ environment


def state_dir() -> Path:
    return Path(os.environ.get("OFFPEAK_STATE_DIR", REPO / ".local")).absolute()


def airflow_env(
    state: Path,
    pg: LocalPostgres,
    demo_url: str,
    api_port: int = 8080,
    ignore_windows: bool = False,
    connections: Sequence[SiteConnectionSource] | None = None,
) -> dict[str, str]:
    """Every setting Airflow and the project need, as env vars (nothing in airflow.cfg).

    ``ignore_windows``: crawls run at once instead of waiting for their region's off-peak
    window (the demo sites have no peak hours). ``connections``: each site connection's
    source (:func:`site_connection_sources`, `make run`); None points every site at the demo
    sites (the tests).
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
        # maintenance__db_clean's way to the metadata DB (offpeak.connections.metadata_db_uri).
        connection_var(settings.metadata_conn_id()): pg.uri("airflow", "postgresql+psycopg2"),
        "OFFPEAK_DATA_ROOT": (state / "data").as_uri(),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])
        ),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if connections is None:
        for site in configured_sites():
            env[connection_var(site.base_url_conn_id)] = demo_url
    else:
        env.update({c.var: c.url for c in connections})
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


# ------------------------------------------------------------------------------ output


def table(rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """``rows`` as lines whose columns line up whatever their lengths: text left-aligned,
    numbers right-aligned, two spaces between columns."""
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    numeric = [any(isinstance(row[i], int) for row in rows) for i in range(len(widths))]
    lines = []
    for row in rows:
        cells = [
            str(v).rjust(w) if num else str(v).ljust(w)
            for v, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def counts_table(rows: Sequence[tuple[str, str, int]], indent: str = "") -> str:
    """What `make counts` and the end of `make run` print: rows per site and region."""
    if not rows:
        return f"{indent}(no rows loaded yet)"
    return table([("site", "region", "rows"), *rows], indent)


def connections_table(sources: Sequence[SiteConnectionSource], demo_url: str) -> str:
    return table(
        [
            ("site", "connection", "base URL"),
            *(
                (
                    ", ".join(c.sites),
                    c.conn_id,
                    f"{c.var} from the environment"
                    if c.from_environment
                    else f"demo sites {demo_url}",
                )
                for c in sources
            ),
        ],
        "  ",
    )


# ------------------------------------------------------------------------------ processes


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


class AirflowApi:
    """The api-server's public REST API (``/api/v2``), signed in as `make run`'s admin."""

    def __init__(self, url: str, password: str) -> None:
        self.url = url
        self.password = password
        self._token: str | None = None

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(HTTP status, JSON reply) of ``method path``; an error status is returned."""
        headers = {"Content-Type": "application/json"}
        if not path.startswith("/auth/"):
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def token(self) -> str:
        if self._token is None:
            status, reply = self.call(
                "POST", "/auth/token", {"username": "admin", "password": self.password}
            )
            if status not in (200, 201):
                raise SystemExit(f"POST {self.url}/auth/token as admin: HTTP {status}: {reply}")
            self._token = reply["access_token"]
        return self._token

    def set_paused(self, dag_id: str, paused: bool) -> None:
        status, reply = self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})
        if status != 200:
            raise SystemExit(
                f"{'pausing' if paused else 'unpausing'} {dag_id}: HTTP {status}: {reply}"
            )


# ------------------------------------------------------------------------------ the main job


def row_counts(pg: LocalPostgres, dates: RunDates | None = None) -> list[tuple[str, str, int]]:
    """Rows per site and region: the latest load of each trading date (of ``dates``), summed."""
    import psycopg

    where, params = "", ()
    if dates is not None:
        where, params = "WHERE trading_date BETWEEN %s AND %s ", (dates.first, dates.last)
    with psycopg.connect(pg.uri("warehouse")) as conn:
        rows = conn.execute(
            "SELECT site, region, sum(rows_inserted + rows_updated + rows_unchanged) "
            "FROM (SELECT DISTINCT ON (site, region, trading_date) * FROM scraped.load_audit "
            f"{where}ORDER BY site, region, trading_date, loaded_at DESC) latest "
            "GROUP BY site, region ORDER BY site, region",
            params,
        ).fetchall()
    return [(s, r, int(n)) for s, r, n in rows]


# Signals that mean "stop" when a script sends them to make's own pid.
_STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


def _caught_signals(pid: int) -> int | None:
    """The signals ``pid`` has a handler for (SigCgt of /proc/<pid>/status), or None: gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except OSError:
        return None
    return 0


def _parent_make() -> int | None:
    """The pid of the `make` that started this process (through its shell), if any."""
    pid = os.getppid()
    for _ in range(3):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip()
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        if comm in ("make", "gmake"):
            return pid
        pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        if pid <= 1:
            return None
    return None


def watch_make(interval: float = 0.5) -> threading.Thread | None:
    """Stop this process, as Ctrl-C does, when the `make run` that started it is told to stop.

    A script stops `make run` by signalling make's pid, and make passes only SIGTERM on to its
    recipe: on SIGINT or SIGHUP it waits for the recipe to end, for ever. But make's handler for
    any of them first resets the signal to its default, so the signal leaves make's SigCgt: this
    thread sees that (or make gone) and sends this process SIGTERM. None without a make."""
    make = _parent_make()
    caught = _caught_signals(make) if make else None
    if not make or caught is None:
        return None
    watched = [sig for sig in _STOP_SIGNALS if caught & (1 << (sig - 1))]

    def watch() -> None:
        while True:
            time.sleep(interval)
            now = _caught_signals(make)
            if now is None or any(not now & (1 << (sig - 1)) for sig in watched):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="watch-make", daemon=True)
    thread.start()
    return thread


def coverage_url(api_port: int) -> str:
    """The Coverage page inside Airflow's UI (its nav entry's route), as the README gives it."""
    return f"http://localhost:{api_port}/plugin/coverage"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()

    demo_url = f"http://127.0.0.1:{args.demo_port}"
    # Before anything starts: a site without a base URL is named now, not as a failed crawl.
    connections = site_connection_sources(configured_sites(), demo_url, os.environ)
    print("Site connections:\n" + connections_table(connections, demo_url), flush=True)

    state = state_dir()
    pg = LocalPostgres(state / "pg", args.pg_port).start()
    pg.create_databases("airflow", "warehouse")
    print(f"PostgreSQL on 127.0.0.1:{args.pg_port} (data in {pg.data})", flush=True)

    project_env = airflow_env(
        state,
        pg,
        demo_url,
        args.api_port,
        ignore_windows=not args.enforce_windows,
        connections=connections,
    )
    cli_env = write_cli_env(state, project_env)
    env = {**os.environ, **project_env}
    admin_password(state)
    procs = Processes(state / "logs")

    def _stop(*_: object) -> None:
        # Once: a second signal (make's SIGTERM and watch_make's) must not cut the clean-up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    # Explicit handlers: a shell that starts `make run` in the background ignores SIGINT.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    watch_make()  # a signal sent to make's own pid stops us too
    try:
        procs.start(
            "demo_sites",
            [sys.executable, str(DEMO_SERVER), "--port", str(args.demo_port)],
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
        # The login as soon as the UI answers: the main job takes minutes more.
        print(
            f"Airflow UI on http://localhost:{args.api_port}   login: admin / "
            f"{admin_password(state)}   (logs in {procs.logs})\n"
            f"Coverage: {coverage_url(args.api_port)}",
            flush=True,
        )

        all_dags = _wait_for_dags(pg, procs)
        if args.enforce_windows:
            print("Crawls wait for their region's off-peak window (--enforce-windows)", flush=True)
        else:
            print(
                "Crawls start at once: the demo sites have no peak hours "
                "(OFFPEAK_IGNORE_WINDOWS=true; --enforce-windows to wait)",
                flush=True,
            )
        if args.dates is None:
            ok, report = _run_latest(env, pg, procs, all_dags, args.timeout)
        else:
            api = AirflowApi(f"http://127.0.0.1:{args.api_port}", admin_password(state))
            ok, report = _run_dates(api, pg, procs, all_dags, args.dates, args.timeout)
        print(f"\nMain job {'succeeded' if ok else 'FAILED'} after {time.monotonic() - t0:.0f}s:")
        print(report)
        scope = "" if args.dates is None else f" for {args.dates}"
        print(f"\nRows in the warehouse{scope} (latest load per site, region and date):")
        print(counts_table(row_counts(pg, args.dates), "  "))
        print(
            "\nRegion summaries are in scraped.rollup_site_day and rollup_measure_day"
            + (
                "; rollup__global is paused (unpause it, or backfill it for a date every "
                "region ran)."
                if args.dates is None
                else ", the global one in scraped.rollup_global_day."
            ),
            flush=True,
        )
        print(
            f"\nUI:     http://localhost:{args.api_port}   login: admin / {admin_password(state)}\n"
            f"Coverage: {coverage_url(args.api_port)}   (or: make coverage)\n"
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
        began = time.monotonic()
        procs.stop()  # SIGTERM to each group, SIGKILL to what is left after 20 s
        middle = time.monotonic()
        pg.stop()  # pg_ctl stop -m fast -w: up to its 60 s
        print(
            f"Stopped Airflow and the demo sites in {middle - began:.0f} s, "
            f"PostgreSQL in {time.monotonic() - middle:.0f} s.",
            flush=True,
        )


def _metadata(pg: LocalPostgres, query: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(pg.uri("airflow")) as conn:
        return conn.execute(query, params or None).fetchall()


# Every site DAG and region rollup, not rollup__global (ids as offpeak.naming builds them).
MAIN_JOB_DAGS = (
    rf"^({naming.SCRAPE}{naming.SEPARATOR}|{naming.ROLLUP}{naming.SEPARATOR}(?!{naming.GLOBAL}$))"
)
GLOBAL_ROLLUP = naming.rollup_dag_id(naming.GLOBAL)


def _wait_for_dags(pg: LocalPostgres, procs: Processes, timeout: float = 300) -> list[str]:
    """Every DAG of the config, once the dag-processor has stored them all."""
    from offpeak.config import load_project
    from offpeak.factory import dag_ids

    expected = dag_ids(load_project())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        listed = {r[0] for r in _metadata(pg, "SELECT dag_id FROM serialized_dag")}
        if set(expected) <= listed:
            return expected
        time.sleep(2)
    raise SystemExit(f"DAGs not parsed within {timeout}s; missing {sorted(set(expected) - listed)}")


def _wait_until_finished(
    states_of: Callable[[], dict[Any, str]], procs: Processes, timeout: float
) -> dict[Any, str]:
    """The states ``states_of`` reports, once all are success or failed (or at timeout)."""
    deadline = time.monotonic() + timeout
    states: dict[Any, str] = {}
    last_report = ""
    while time.monotonic() < deadline:
        procs.check()
        states = states_of()
        done = sum(s in ("success", "failed") for s in states.values())
        report = f"  runs finished: {done}/{len(states)}"
        if report != last_report:
            print(report, flush=True)
            last_report = report
        if done == len(states):
            break
        time.sleep(3)
    return states


def _run_latest(
    env: dict[str, str], pg: LocalPostgres, procs: Processes, all_dags: list[str], timeout: float
) -> tuple[bool, str]:
    """Each region's latest trading date: unpause the main job's DAGs, the scheduler runs them.
    rollup__global stays paused: it summarises a date once every region's window has closed,
    and this only crawls each region's latest trading date."""
    dag_ids = [d for d in all_dags if re.match(MAIN_JOB_DAGS, d)]
    _airflow(env, "dags", "unpause", "--treat-dag-id-as-regex", "-y", MAIN_JOB_DAGS)
    print(
        f"Unpaused {len(dag_ids)} DAGs (site crawls and region rollups); the scheduler runs "
        "each for its region's latest trading date",
        flush=True,
    )

    days: dict[str, str] = {}

    def latest() -> dict[str, str]:
        rows = _metadata(
            pg,
            "SELECT DISTINCT ON (dag_id) dag_id, state, data_interval_start FROM dag_run "
            "ORDER BY dag_id, run_after DESC",
        )
        days.update({d: trading_date_of(d, start) for d, _, start in rows if d in dag_ids})
        return dict.fromkeys(dag_ids, "none") | {d: s for d, s, _ in rows if d in dag_ids}

    states = _wait_until_finished(latest, procs, timeout)
    ok = all(s == "success" for s in states.values())
    rows = [(s, days.get(d, ""), d) for d, s in sorted(states.items())]
    return ok, table([("state", "trading date", "DAG"), *rows], "  ")


def trading_date_of(dag_id: str, interval_start: datetime | None) -> str:
    """The trading date a run of ``dag_id`` is for: the local date of its data interval's
    start in the DAG's region (what its logical date, an instant in UTC, stands for)."""
    if interval_start is None:
        return ""
    clock = _region_clock(naming.scope_of(dag_id))
    if clock is None:  # rollup__global: its days are dates, as UTC midnight
        return interval_start.astimezone(UTC).date().isoformat()
    return clock.day_of_interval_start(interval_start).isoformat()


@functools.cache
def _region_clock(scope: str) -> Any:
    from offpeak.config import load_project
    from offpeak.schedule.tradingtime import RegionClock

    region = load_project().regions.get(scope)
    return None if region is None else RegionClock.of(region)


def _create_backfill(
    api: AirflowApi, pg: LocalPostgres, dag_id: str, dates: RunDates
) -> int | None:
    """The id of a backfill of ``dag_id`` over ``dates`` (runs already done run again), or
    None when the range holds no trading day of the DAG whose day has ended."""
    body = {
        "dag_id": dag_id,
        # Midnight UTC: the off-peak timetable reads such a bound as a trading date.
        "from_date": f"{dates.first.isoformat()}T00:00:00+00:00",
        "to_date": f"{dates.last.isoformat()}T00:00:00+00:00",
        "reprocess_behavior": "completed",
    }
    status, reply = api.call("POST", "/api/v2/backfills", body)
    if status == 409:  # one backfill per DAG: an earlier `make run` was stopped during its own
        for (backfill_id,) in _metadata(
            pg, "SELECT id FROM backfill WHERE dag_id = %s AND completed_at IS NULL", dag_id
        ):
            api.call("PUT", f"/api/v2/backfills/{backfill_id}/cancel")
            print(f"  {dag_id}: cancelled backfill {backfill_id}, left by an earlier run")
        status, reply = api.call("POST", "/api/v2/backfills", body)
    if status == 422 and "No runs to create" in json.dumps(reply):
        return None
    if status != 200:
        raise SystemExit(f"backfill of {dag_id} for {dates}: HTTP {status}: {reply}")
    return int(reply["id"])


def _no_run_reason(project: Project, dag_id: str, dates: RunDates) -> str:
    from offpeak.rollups.dates import rollup_clock

    scope = naming.scope_of(dag_id)
    clock = rollup_clock(project, scope)
    days = [dates.first + timedelta(days=n) for n in range(len(dates))]
    if not any(clock.is_day(day) for day in days):
        return f"{dates} holds no trading day of {scope}"
    return f"the trading day has not ended in {scope} yet"


def _run_dates(
    api: AirflowApi,
    pg: LocalPostgres,
    procs: Processes,
    all_dags: list[str],
    dates: RunDates,
    timeout: float,
) -> tuple[bool, str]:
    """Every DAG, rollup__global included, over ``dates``: one backfill per DAG; the
    timetable makes one run per trading day of its region in the range."""
    from offpeak.config import load_project
    from offpeak.rollups.dates import rollup_clock

    project = load_project()
    backfills: dict[str, int] = {}
    for dag_id in all_dags:
        backfill_id = _create_backfill(api, pg, dag_id, dates)
        if backfill_id is None:
            print(f"  {dag_id}: nothing to run ({_no_run_reason(project, dag_id, dates)})")
        else:
            backfills[dag_id] = backfill_id
    if not backfills:
        raise SystemExit(f"make run: no DAG has a trading day to run in {dates}")
    runs = {
        (dag_id, logical_date)
        for dag_id, logical_date in _metadata(
            pg,
            "SELECT b.dag_id, r.logical_date FROM backfill_dag_run r "
            "JOIN backfill b ON b.id = r.backfill_id WHERE b.id = ANY(%s)",
            list(backfills.values()),
        )
    }
    paused = {
        dag_id
        for (dag_id,) in _metadata(
            pg, "SELECT dag_id FROM dag WHERE is_paused AND dag_id = ANY(%s)", list(backfills)
        )
    }
    for dag_id in sorted(paused):
        api.set_paused(dag_id, False)  # the scheduler starts no run of a paused DAG
    print(
        f"Backfills of {len(backfills)} DAGs for {dates}: {len(runs)} runs, one per DAG and "
        "trading day of its region",
        flush=True,
    )

    def of_dates() -> dict[tuple[str, datetime], str]:
        rows = _metadata(
            pg,
            "SELECT dag_id, logical_date, state FROM dag_run WHERE dag_id = ANY(%s)",
            list(backfills),
        )
        return dict.fromkeys(runs, "none") | {(d, t): s for d, t, s in rows if (d, t) in runs}

    try:
        states = _wait_until_finished(of_dates, procs, timeout)
    finally:
        if GLOBAL_ROLLUP in paused:
            # As without a date: unpaused, it would also run its latest date, which waits
            # for region rollups of a date this run did not make.
            api.set_paused(GLOBAL_ROLLUP, True)
    ok = all(s == "success" for s in states.values())
    rows = [
        (
            state,
            dag_id,
            rollup_clock(project, naming.scope_of(dag_id))
            .day_of_interval_start(logical)
            .isoformat(),
        )
        for (dag_id, logical), state in states.items()
    ]
    return ok, table([("state", "dag", "trading date"), *sorted(rows, key=lambda r: r[1:])], "  ")


def counts(argv: list[str] | None = None) -> int:
    state = state_dir()
    port = int(os.environ.get("OFFPEAK_PG_PORT", 5439))
    pg = LocalPostgres(state / "pg", port)
    print(counts_table(row_counts(pg)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["counts"]:
        raise SystemExit(counts(sys.argv[2:]))
    raise SystemExit(main(sys.argv[1:] if sys.argv[1:2] != ["run"] else sys.argv[2:]))
