"""nginx (Debian's nginx-light) in front of the demo sites and the corpus, as tests run it."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from support import REPO

TEMPLATE = Path(__file__).with_name("nginx.conf")
FIXTURES = REPO / "tests" / "fixtures"
BINARY = "/usr/sbin/nginx"
# A line of the access log (log_format `answers` in nginx.conf).
ANSWER = re.compile(
    r'\S+ "\S+ (?P<path>\S+) \S+" (?P<status>\d+) \d+ te=(?P<te>\S+) ce=(?P<ce>\S+) '
    r'gzip_ratio=\S+ "(?P<agent>[^"]*)"'
)


class Nginx:
    """nginx on ``127.0.0.1:port``, proxying to the demo sites on ``upstream_port`` and serving
    tests/fixtures/corpus at ``/corpus/``; its config, pid file, logs and temp files live in
    ``state``. Runs in the foreground (``daemon off``) as a child of the test session."""

    def __init__(self, state: Path, port: int, upstream_port: int) -> None:
        self.state = state
        self.port = port
        self.upstream_port = upstream_port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.state / "error.log"

    def answers(self) -> list[dict[str, str]]:
        """Every answer nginx sent so far, from its access log: ``path``, ``status``, ``te``
        (Transfer-Encoding), ``ce`` (Content-Encoding), ``agent``."""
        log = self.state / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [m.groupdict() for line in lines if (m := ANSWER.match(line))]

    def config(self) -> str:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        values = {
            # Workers run as the session's user: as root here, they must read its 0700 folders.
            "USER": f"{user} {group}",
            "STATE": str(self.state),
            "PORT": str(self.port),
            "DEMO_PORT": str(self.upstream_port),
            "FIXTURES": str(FIXTURES),
        }
        text = TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        return text

    def start(self, timeout: float = 10.0) -> Nginx:
        binary = shutil.which("nginx") or BINARY
        if not Path(binary).exists():
            raise RuntimeError(
                f"{BINARY} is missing: the tests serve the demo sites through Debian's "
                "nginx-light (make test installs it; or: apt-get install nginx-light)"
            )
        self.state.mkdir(parents=True, exist_ok=True)
        conf = self.state / "nginx.conf"
        conf.write_text(self.config())
        # -e: the error log before the config is read (Debian's default is /var/log/nginx).
        cmd = [binary, "-p", str(self.state), "-c", str(conf), "-e", str(self.error_log)]
        check = subprocess.run([*cmd, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refuses {conf}: {check.stderr.strip()}")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {self.proc.returncode}: {self.error_log.read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.url} within {timeout:g} s")

    def stop(self) -> None:
        """Fast shutdown (SIGTERM) of the master, which stops its workers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
