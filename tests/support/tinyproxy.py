"""Debian's tinyproxy on 127.0.0.1, as tests run it: a real HTTP proxy that asks for a login
(BasicAuth) and logs every request it forwards."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from support.services import free_port

BINARY = "/usr/bin/tinyproxy"
# tinyproxy's log line for each request a client sent it.
REQUEST = re.compile(r"Request \(file descriptor \d+\): (?P<method>\S+) (?P<url>\S+) HTTP/")


class Tinyproxy:
    """tinyproxy on a free port of 127.0.0.1 in the foreground, its config and log in
    ``folder``, asking for ``login``/``password`` (for nothing when ``login`` is None)."""

    def __init__(self, folder: Path, login: str | None, password: str | None) -> None:
        self.folder, self.login, self.password = folder, login, password
        self.port = free_port()
        self.log = folder / "tinyproxy.log"
        self.proc: subprocess.Popen | None = None

    def connection(self, password: str | None = None, port: int | None = None) -> str:
        """An Airflow connection (JSON) to this proxy, with its password or ``password``."""
        conn = {"conn_type": "http", "host": "127.0.0.1", "port": port or self.port}
        if self.login:
            conn |= {"login": self.login, "password": password or self.password}
        return json.dumps(conn)

    def start(self) -> Tinyproxy:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "tinyproxy.conf"
        config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\n"
            f'LogFile "{self.log}"\nLogLevel Info\nDisableViaHeader Yes\n'
            + (f"BasicAuth {self.login} {self.password}\n" if self.login else "")
        )
        binary = shutil.which("tinyproxy") or BINARY
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start; see {self.log}") from None
                time.sleep(0.1)

    def requests(self) -> list[str]:
        """The URLs of every request clients sent it so far, in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [m["url"] for m in REQUEST.finditer(text)]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
