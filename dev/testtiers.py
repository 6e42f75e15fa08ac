"""`make test`: the stack tier and the other two tiers as two pytest sessions side by side.

The stack tier (tests/stack) spends most of its wall time waiting on a real scheduler's loops,
and the dag.test() tier mostly computing in one process, so on CI's 2 cores they overlap well:
the suite takes about the longer of the two instead of their sum (docs/testing.md). Each
session is a whole pytest session of its own, so each has its own services (PostgreSQL,
demo sites, nginx: a temporary folder and free ports each, tests/support/services.py) and
nothing is shared between them. A stack-tier module that boots a stack of its own (marker
``own_stack``: the CeleryExecutor deployment) runs in the other session, after the dag.test()
tier, to even out the two.

The other tiers' output streams as it comes; the stack tier's is written to
``test-artifacts/stack-tier.log`` and printed whole when it ends. The exit code is the first
failing session's (pytest's 5, no tests collected, included), else 0.

With pytest arguments that name what to run (a path, ``-k``, ``-m``), it is one plain pytest
session: ``make test PYTEST_ARGS=tests/unit``.

    python -m dev.testtiers [pytest options]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STACK_LOG = REPO / "test-artifacts" / "stack-tier.log"
SELECTING = ("-k", "-m", "--lf", "--last-failed", "--deselect")


def _selects(args: list[str]) -> bool:
    """The arguments choose the tests themselves (a path or a selecting option)."""
    return any(a.startswith(SELECTING) or not a.startswith("-") for a in args)


def main(args: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    if _selects(args):
        return subprocess.call([*pytest, *args], cwd=REPO)
    STACK_LOG.parent.mkdir(exist_ok=True)
    started = time.monotonic()
    with STACK_LOG.open("w", encoding="utf-8") as log:
        stack = subprocess.Popen(
            [*pytest, "tests/stack", "-m", "stack and not own_stack", "-p", "no:cacheprovider",
             *args],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        print(f"The stack tier runs beside this session; its output: {STACK_LOG}", flush=True)
        try:
            others = subprocess.call([*pytest, "-m", "not stack or own_stack", *args], cwd=REPO)
            print("\nWaiting for the stack tier...", flush=True)
            stacked = stack.wait()
        finally:
            if stack.poll() is None:
                stack.kill()
    print(f"\n{'=' * 30} the stack tier (tests/stack, less own_stack) {'=' * 25}", flush=True)
    sys.stdout.write(STACK_LOG.read_text(encoding="utf-8", errors="replace"))
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    verdict = "passed" if not (others or stacked) else "FAILED"
    print(
        f"\nmake test {verdict} in {minutes}:{seconds:02d}: the other tiers exited {others}, "
        f"the stack tier {stacked}",
        flush=True,
    )
    return others or stacked


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
