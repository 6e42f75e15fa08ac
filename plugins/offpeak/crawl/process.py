"""Run ``scrapy crawl`` in a subprocess: stream its log redacted, and stop it on time or on kill."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from offpeak.crawl import contract
from offpeak.crawl.contract import redact

PLUGINS_DIR = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = "offpeak.scraping.settings"
# Scrapy's CLOSESPIDER_TIMEOUT waits for requests in flight; past this grace after the window's
# end the crawl is stopped the way on_kill stops it.
WINDOW_GRACE_SECONDS = 30.0
# SIGTERM asks Scrapy to close gracefully; a second one forces it; then SIGKILL. Seconds each.
STOP_LADDER = ((signal.SIGTERM, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5))


def scrapy_argv(
    spider: str, spider_args: Mapping[str, str], settings: Mapping[str, Any]
) -> list[str]:
    """``python -m scrapy crawl <spider> -a key=value ... -s KEY=value ...``."""
    argv = [sys.executable, "-m", "scrapy", "crawl", spider]
    for key, value in spider_args.items():
        argv += ["-a", f"{key}={value}"]
    for key, value in settings.items():
        argv += ["-s", f"{key}={value}"]
    return argv


def scrapy_env(secret: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus what the crawl needs: our Scrapy settings module on
    PYTHONPATH, unbuffered output, ``extra`` (offpeak.crawl.spec.crawl_env), the secret
    (environment only, never argv), and this process's pid, to which the crawl ties its life
    (offpeak.scraping.lifeline)."""
    return {
        **os.environ,
        **(extra or {}),
        "SCRAPY_SETTINGS_MODULE": SETTINGS_MODULE,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PLUGINS_DIR), os.environ.get("PYTHONPATH")])
        ),
        "PYTHONUNBUFFERED": "1",
        **({contract.API_KEY_ENV: secret} if secret else {}),
        contract.PARENT_PID_ENV: str(os.getpid()),
    }


class CrawlProcess:
    """
    One crawl subprocess, in its own session so that ``stop`` signals the whole group.

    Its output goes line by line to ``log`` as ``[scrapy] <line>``, with every spelling of
    ``secret`` replaced by ``***``. It knows nothing of sites, stats or XCom.

    :param log: the logger for its output and its own messages (the task's, in a task)
    :param secret: a value no log line may show (a site's API key), or several (its proxy's
        password too)
    """

    def __init__(
        self, *, log: logging.Logger | None = None, secret: str | tuple[str, ...] | None = None
    ) -> None:
        self.log = log or logging.getLogger(__name__)
        self.secrets = (secret,) if isinstance(secret, str) else tuple(secret or ())
        self.proc: subprocess.Popen[str] | None = None
        self.stopped_at_window_end = False

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        window_seconds: float | None = None,
        grace: float = WINDOW_GRACE_SECONDS,
    ) -> int:
        """Run ``argv`` to its end and return its exit code.

        :param window_seconds: seconds until the off-peak window closes; a crawl still running
            ``grace`` seconds after that is stopped (``stopped_at_window_end`` then says so)
        """
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # stop() signals the whole group
        )
        watchdog = None
        if window_seconds is not None:
            watchdog = threading.Timer(window_seconds + grace, self._stop_at_window_end, [grace])
            watchdog.daemon = True
            watchdog.start()
        try:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.rstrip()
                for secret in self.secrets:
                    line = redact(line, secret)
                self.log.info("[scrapy] %s", line)
            return self.proc.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _stop_at_window_end(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.stopped_at_window_end = True
        self.log.warning(
            "The crawl is still running %.0f s after its off-peak window closed: stopping it",
            grace,
        )
        self.stop()

    def stop(self) -> None:
        """Walk STOP_LADDER until the process group is gone; nothing when it is not running."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self.log.info("Stopping crawl (pid %s)", proc.pid)
        for sig, grace in STOP_LADDER:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return
