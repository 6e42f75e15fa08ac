"""`make run` helpers that a user touches directly."""

from __future__ import annotations

import subprocess

from dev.devenv import write_cli_env


def test_cli_env_file_sets_the_stack_settings_when_sourced(tmp_path):
    path = write_cli_env(
        tmp_path, {"AIRFLOW_HOME": "/x/y z", "AIRFLOW_CONN_A": "http://h:1/?a=1&b"}
    )
    out = subprocess.run(
        ["bash", "-c", f"source {path} && printf '%s|%s' \"$AIRFLOW_HOME\" \"$AIRFLOW_CONN_A\""],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout == "/x/y z|http://h:1/?a=1&b"
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the local JWT secret
