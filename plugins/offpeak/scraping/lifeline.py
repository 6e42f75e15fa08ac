"""The crawl subprocess dies with the task process that started it, by any signal."""

from __future__ import annotations

import ctypes
import os
import signal

from offpeak.crawl import contract

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the task) dies, then check the
    parent is still the task: it may have died before the request took effect. SIGKILL, not
    SIGTERM: an orphaned crawl's feed is never published, so there is nothing to finish.
    Done here, in the child, rather than in a preexec_fn, which may deadlock in a threaded
    parent such as a task process."""
    parent = os.environ.get(contract.PARENT_PID_ENV)
    if not parent:
        return  # not started by ScrapeOperator (a scrapy crawl by hand)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: on_kill still stops the crawl when the task is stopped
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):
        os._exit(1)
