"""`make run` as a script runs it: the UI's URL and login as soon as the api-server answers, and
a clean stop when its own pid gets SIGINT or SIGTERM (make itself passes on only SIGTERM).

Each test runs the real `make run` on free ports with a state folder of its own. The SIGINT one
stops it once the UI answers, while the main job runs. The SIGTERM one lets the main job finish
first and looks at the fresh stack as a new user does: `make coverage` exits 0, the Coverage
page is calm (no date before the stack existed is a gap) and a run id names its trading date,
with screenshots in test-artifacts/first-hour/. Afterwards no process started with that state
folder is left, PostgreSQL included.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from dev.devenv import admin_password
from support import REPO
from support.browser import screenshot, signed_in_page
from support.services import free_port

SHOTS = REPO / "test-artifacts" / "first-hour"


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


def _sigint_at_its_default() -> None:
    """make as a user's shell starts it. A suite started as a background job of a script
    (`make test &`, `nohup ... &`) runs with SIGINT ignored, every process below it inherits
    that, and make keeps an ignored SIGINT ignored: `kill -INT` then does nothing at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
        preexec_fn=_sigint_at_its_default,
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
        if sig == signal.SIGTERM:
            while not any(line.startswith("Main job") for line in lines):
                assert make.poll() is None, "".join(lines)
                assert time.monotonic() < deadline + 300, "no main job in 540 s:\n" + "".join(lines)
                time.sleep(1)
            main_job = next(line for line in lines if line.startswith("Main job"))
            assert main_job.startswith("Main job succeeded"), "".join(lines)
            _a_fresh_stack_is_calm(state, env, ports["api"])

        os.kill(make.pid, sig)  # make's own pid, as `kill -INT <pid>` from a script
        signalled = time.monotonic()
        # The stop's own bounds: 20 s for the components' groups (then SIGKILL) and pg_ctl's
        # 60 s wait for PostgreSQL, with room for a loaded host.
        try:
            make.wait(timeout=150)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"make run still running 150 s after {sig.name}; processes of its state "
                f"folder: {_described(_started_with(str(state)))}\n" + "".join(lines)
            ) from None
        print(f"make run exited {time.monotonic() - signalled:.0f} s after {sig.name}")
    finally:
        if make.poll() is None:
            make.kill()
    reader.join(timeout=5)
    output = "".join(lines)
    assert "Stopping..." in output, output
    assert re.search(r"Stopped Airflow and the demo sites in \d+ s, PostgreSQL in \d+ s\.", output)
    # make exits at once on SIGTERM; dev.devenv then stops the components (up to 20 s each
    # group, then SIGKILL) and PostgreSQL. After a finished main job, with a browser's
    # sessions just closed, that took over 15 s on a busy host. What is left after 45 s leaked.
    deadline = time.monotonic() + 45
    while (left := _started_with(str(state))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"processes of make run left after {sig.name}: {_described(left)}\n{output}"
    assert not (state / "pg" / "data" / "postmaster.pid").exists(), output


def _a_fresh_stack_is_calm(state, env: dict, api_port: int) -> None:
    """After the main job: `make coverage` exits 0 with no gap, and the page shows the same."""
    done = subprocess.run(
        ["make", "--no-print-directory", "coverage"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    counts = next(x for x in done.stdout.splitlines() if x.startswith("Cells: "))
    assert "complete" in counts and "never_due" in counts, counts
    assert "missing" not in counts and "failed" not in counts, counts
    assert "Gaps" not in done.stdout and "Error" not in done.stderr, done.stdout + done.stderr

    ui = SimpleNamespace(api_url=f"http://localhost:{api_port}", password=admin_password(state))
    with signed_in_page(ui, SHOTS) as page:
        page.get_by_role("link", name="Coverage").first.click()
        frame = page.frame_locator("iframe").first
        legend = frame.locator("#legend")
        expect(legend.locator('[data-state="missing"]')).to_have_text(_ends("(0)"))
        expect(legend.locator('[data-state="failed"]')).to_have_text(_ends("(0)"))
        expect(legend.locator('[data-state="never_due"]')).not_to_have_text(_ends("(0)"))
        expect(frame.locator('td.cell[data-state="missing"]')).to_have_count(0)
        complete = frame.locator('tr[data-dag="scrape__equities__americas"] td.complete')
        expect(complete).to_have_count(1)
        screenshot(page, SHOTS / "01-fresh-stack-coverage.png")

        day = complete.get_attribute("data-date")
        complete.click()
        detail = frame.locator("#detail")
        run_link = detail.get_by_role("link", name="Run in the grid")
        expect(detail).to_contain_text(_contains(f"(run scheduled__{day}__"))
        screenshot(page, SHOTS / "02-fresh-stack-cell.png")
        run_link.click()
        run_id = re.compile(rf"scheduled__{day}__\d{{4}}-\d\d-\d\dT")
        expect(page.get_by_text(run_id).first).to_be_visible()
        expect(page.get_by_text("mark_rollup").first).to_be_visible()  # the run's tasks listed
        screenshot(page, SHOTS / "03-run-id-with-trading-date.png")


def _ends(text: str) -> re.Pattern:
    return re.compile(re.escape(text) + "$")


def _contains(text: str) -> re.Pattern:
    return re.compile(re.escape(text))
