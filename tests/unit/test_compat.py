"""Unit tests for plugins/offpeak/compat.py: a work-around applies only up to its guard."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG

from offpeak import compat


@pytest.mark.parametrize(
    ("version", "applies"),
    [
        ("3.3.1", True),
        ("3.3.2", True),
        ("3.3.2rc1", True),  # a pre-release of an affected release
        ("3.3.2.post1", True),
        ("3.3.3", False),  # the first release after the guard gets no patch
        ("3.4.0", False),
        (None, False),  # no airflow-core installed
    ],
)
def test_the_dag_test_deadline_fix_applies_up_to_the_last_release_known_to_need_it(
    version, applies
):
    assert compat.affected(version, compat.DAG_TEST_DEADLINES_UP_TO) is applies


def test_the_dag_test_deadline_fix_is_installed_once_on_an_affected_airflow():
    expected = compat.affected(compat.airflow_version(), compat.DAG_TEST_DEADLINES_UP_TO)
    assert compat.fix_dag_test_deadlines() is expected
    wrapped = DAG.test
    assert compat.fix_dag_test_deadlines() is expected
    assert DAG.test is wrapped  # a second call wraps nothing again
