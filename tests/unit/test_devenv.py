"""`make run` helpers that a user touches directly."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
import yaml

from dev import devenv
from dev.devenv import write_cli_env
from dev.localpg import LocalPostgres
from support import REPO


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


# ---------------------------------------------------------------- tables that line up


def _columns(line: str) -> list[tuple[int, int]]:
    """(start, end) of each space-free cell of a printed line."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", line)]


def test_make_counts_columns_line_up_with_a_long_site_name(monkeypatch, capsys):
    rows = [
        ("equities", "americas", 90),
        ("corporate_bond_quotes_eu", "asia_pacific", 123456),
        ("fx", "india", 7),
    ]
    monkeypatch.setattr(devenv, "row_counts", lambda pg, dates=None: rows)

    assert devenv.counts() == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["site", "region", "rows"],
        ["equities", "americas", "90"],
        ["corporate_bond_quotes_eu", "asia_pacific", "123456"],
        ["fx", "india", "7"],
    ]
    cells = [_columns(line) for line in lines]
    # Names start in one column each; the counts end in one column (right-aligned).
    assert len({c[0][0] for c in cells}) == 1
    assert len({c[1][0] for c in cells}) == 1
    assert len({c[2][1] for c in cells}) == 1
    # Each column clears the longest value before it.
    assert cells[0][1][0] > len("corporate_bond_quotes_eu")
    assert cells[0][2][1] - cells[0][1][0] > len("asia_pacific")


def test_make_run_tables_size_to_their_content():
    text = devenv.table(
        [
            ("success", "scrape__corporate_bond_quotes_eu__asia_pacific"),
            ("failed", "rollup__india"),
        ],
        "  ",
    )
    lines = text.splitlines()
    assert lines == [
        "  success  scrape__corporate_bond_quotes_eu__asia_pacific",
        "  failed   rollup__india",
    ]
    assert devenv.counts_table([], "  ") == "  (no rows loaded yet)"


# ---------------------------------------------------------------- trading dates

TODAY = date(2026, 8, 10)


def _error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        devenv.parse_args(list(argv), today=TODAY)
    assert exc.value.code == 2  # argparse's usage error, before anything starts
    return capsys.readouterr().err.splitlines()[-1]


def test_without_a_date_make_run_runs_the_latest_trading_date():
    args = devenv.parse_args([], today=TODAY)
    assert args.dates is None and args.timeout == 900


def test_date_and_range_options():
    one = devenv.parse_args(["--date", "2026-08-04"], today=TODAY)
    assert (one.dates.first, one.dates.last, str(one.dates)) == (
        date(2026, 8, 4), date(2026, 8, 4), "2026-08-04",
    )  # fmt: skip
    week = devenv.parse_args(["--from", "2026-08-03", "--to", "2026-08-07"], today=TODAY)
    assert str(week.dates) == "2026-08-03 to 2026-08-07"
    assert week.timeout == 5 * 900  # the wait grows with the range
    assert devenv.parse_args(["--date", "2026-08-04", "--timeout", "60"], today=TODAY).timeout == 60


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--date", "04/08/2026"],
         "argument --date: '04/08/2026' is not a date: expected YYYY-MM-DD"),
        (["--date", "2026-02-30"], "argument --date: '2026-02-30' is not a day of the calendar"),
        (["--from", "2026-8-3", "--to", "2026-08-07"], "argument --from: '2026-8-3' is not a date"),
        (["--from", "2026-08-03", "--to", "tomorrow"], "argument --to: 'tomorrow' is not a date"),
        (["--from", "2026-08-07", "--to", "2026-08-03"],
         "--from 2026-08-07 is after --to 2026-08-03"),
        (["--from", "2026-08-03"], "--from needs --to"),
        (["--to", "2026-08-03"], "--to needs --from"),
        (["--date", "2026-08-04", "--from", "2026-08-03", "--to", "2026-08-05"],
         "give one or the other"),
        (["--date", "2026-08-10"], "--date 2026-08-10 is not before today (2026-08-10)"),
        (["--from", "2026-08-03", "--to", "2026-09-01"], "--to 2026-09-01 is not before today"),
    ],
)  # fmt: skip
def test_a_bad_date_option_is_named_in_the_error(capsys, argv, message):
    assert message in _error(capsys, *argv)


def _make_run_argv(*variables: str) -> list[str]:
    """The arguments `make run VAR=...` gives dev.devenv (make -n: nothing runs)."""
    out = subprocess.run(
        ["make", "-n", "run", *variables], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    (command,) = [line for line in out.splitlines() if "-m dev.devenv run" in line]
    return shlex.split(command.split("-m dev.devenv run", 1)[1])


def test_make_variables_become_the_date_options():
    week = devenv.parse_args(_make_run_argv("FROM=2026-08-03", "TO=2026-08-07"), today=TODAY)
    assert str(week.dates) == "2026-08-03 to 2026-08-07"
    one = _make_run_argv("DATE=2026-08-04", "RUN_ARGS=--exit-after-job")
    assert one == ["--date", "2026-08-04", "--exit-after-job"]
    assert _make_run_argv() == []


# ---------------------------------------------------------------- site connections

DEMO = "http://127.0.0.1:8808"
BONDS_VAR = "AIRFLOW_CONN_SITE_CORPORATE_BONDS"


@pytest.fixture
def config_with_a_new_site(tmp_path) -> Path:
    """The shipped config plus a site the demo sites do not serve (its own paths)."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    site = yaml.safe_load((config / "sites/equities.yaml").read_text())
    site["base_url_conn_id"] = "site_corporate_bonds"
    site["start_urls"] = ["/bonds/{region}/{trading_date}/board?page=1"]
    (config / "sites/corporate_bonds.yaml").write_text(yaml.safe_dump(site))
    return config


def test_a_new_sites_connection_is_taken_from_the_environment(config_with_a_new_site, tmp_path):
    sites = devenv.configured_sites(config_with_a_new_site)
    real = "https://user:s3cret@bonds.example.com/"
    environ = {BONDS_VAR: real, "AIRFLOW_CONN_SITE_EQUITIES": "https://equities.example.com"}

    sources = devenv.site_connection_sources(sites, DEMO, environ)

    env = devenv.airflow_env(tmp_path / "state", LocalPostgres(tmp_path, 5999), DEMO,
                             connections=sources)  # fmt: skip
    assert env[BONDS_VAR] == real
    assert env["AIRFLOW_CONN_SITE_EQUITIES"] == "https://equities.example.com"  # set: it wins
    assert env["AIRFLOW_CONN_SITE_FUNDS"] == env["AIRFLOW_CONN_SITE_FX_RATES"] == DEMO
    shown = devenv.connections_table(sources, DEMO)
    rows = {line.split()[0]: line for line in shown.splitlines()}
    assert f"{BONDS_VAR} from the environment" in rows["corporate_bonds"]
    assert f"demo sites {DEMO}" in rows["funds"]
    assert "s3cret" not in shown and "s3cret" not in repr(sources)  # the URL is never shown


def test_a_site_without_a_connection_nor_a_demo_stand_in_is_named(config_with_a_new_site):
    sites = devenv.configured_sites(config_with_a_new_site)

    with pytest.raises(SystemExit) as exc:
        devenv.site_connection_sources(sites, DEMO, {"AIRFLOW_CONN_SITE_FUNDS": ""})

    message = str(exc.value)
    assert "site corporate_bonds: connection 'site_corporate_bonds' is not set" in message
    assert f"export {BONDS_VAR}='https://" in message
    assert "equities" not in message and "funds" not in message  # the demo stands in for them


def test_the_tests_point_every_site_at_the_demo_sites(config_with_a_new_site, tmp_path,
                                                       monkeypatch):  # fmt: skip
    monkeypatch.setenv("OFFPEAK_CONFIG_DIR", str(config_with_a_new_site))
    monkeypatch.setenv(BONDS_VAR, "https://bonds.example.com")
    env = devenv.airflow_env(tmp_path / "state", LocalPostgres(tmp_path, 5999), DEMO)
    assert env[BONDS_VAR] == env["AIRFLOW_CONN_SITE_EQUITIES"] == DEMO


def test_the_summary_names_each_runs_trading_date_not_its_utc_logical_date():
    """India's 9 November starts at local midnight, 18:30 UTC on the 8th; Sydney's 4 December
    at 13:00 UTC on the 3rd (daylight time); New York's 20 November at 05:00 UTC that day."""
    from datetime import UTC, datetime

    def at(*args: int) -> datetime:
        return datetime(*args, tzinfo=UTC)

    assert devenv.trading_date_of("scrape__funds__india", at(2026, 11, 8, 18, 30)) == "2026-11-09"
    assert devenv.trading_date_of("rollup__oceania", at(2026, 12, 3, 13)) == "2026-12-04"
    assert devenv.trading_date_of("scrape__equities__americas", at(2026, 11, 20, 5)) == (
        "2026-11-20"
    )
    assert devenv.trading_date_of("scrape__equities__americas", None) == ""
