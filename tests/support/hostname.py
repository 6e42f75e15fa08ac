"""``[core] hostname_callable`` of the Celery stack's workers: the name the test gave the
worker (OFFPEAK_TEST_WORKER), which Airflow records as the task instance's hostname, as
separate machines would each record theirs. Kept apart so a worker imports nothing else."""

import os
import socket


def worker_name() -> str:
    return os.environ.get("OFFPEAK_TEST_WORKER") or socket.getfqdn()
