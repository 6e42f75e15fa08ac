"""`make run` as a script runs it: the UI's URL and login as soon as the api-server answers, and
a clean stop when its own pid gets SIGINT or SIGTERM (make itself passes on only SIGTERM).

Each test runs the real `make run` on free ports with a state folder of its own, and stops it
once the UI answers, while the main job runs. Afterwards no process started with that state
folder is left, PostgreSQL included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from dev.devenv import admin_password
from support import REPO
from support.services import free_port


def _started_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (the test's state folder)."""
    found = []
    needle = marker.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _described(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {command}")
        except OSError:
            out.append(f"{pid}: (gone)")
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_make_run_prints_the_login_early_and_stops_cleanly_on_a_signal_to_its_pid(tmp_path, sig):
    state = tmp_path / "state"
    ports = {"api": free_port(), "pg": free_port(), "demo": free_port()}
    # A user's shell: none of this session's Airflow or project settings (make run sets its own).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OFFPEAK"))}
    env |= {
        "OFFPEAK_STATE_DIR": str(state),
        "RUN_ARGS": f"--api-port {ports['api']} --pg-port {ports['pg']} "
        f"--demo-port {ports['demo']}",
    }
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        for line in make.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(line.startswith("Airflow UI on") for line in lines):
            assert make.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "no UI line in 240 s:\n" + "".join(lines)
            time.sleep(0.5)
        ui = next(line for line in lines if line.startswith("Airflow UI on"))
        assert f"http://localhost:{ports['api']}" in ui and "login: admin / " in ui
        assert f"login: admin / {admin_password(state)}" in ui
        assert not any(line.startswith("Main job") for line in lines)  # before the job's end
        assert any(f"Coverage: http://localhost:{ports['api']}/plugin/coverage" in line
                   for line in lines)  # fmt: skip

        os.kill(make.pid, sig)  # make's own pid, as `kill -INT <pid>` from a script
        make.wait(timeout=90)
    finally:
        if make.poll() is None:
            make.kill()
    reader.join(timeout=5)
    output = "".join(lines)
    assert "Stopping..." in output, output
    # A stopped component's group may take a moment to exit; what is left after that leaked.
    deadline = time.monotonic() + 15
    while (left := _started_with(str(state))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"processes of make run left after {sig.name}: {_described(left)}\n{output}"
    assert not (state / "pg" / "data" / "postmaster.pid").exists(), output
