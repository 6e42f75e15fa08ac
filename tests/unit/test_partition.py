"""Partition: one run's (site, region, trading date) through XCom, file names and messages."""

from __future__ import annotations

import json
from datetime import date

import pytest

from offpeak.partition import Partition
from offpeak.pipeline import storage

PART = Partition("equities", "europe", date(2026, 11, 18), "scheduled__2026-11-18T06:00:00+00:00")


def test_it_travels_through_xcom_as_json_and_comes_back_equal():
    value = json.loads(json.dumps(PART.to_xcom()))
    assert value == {
        "site": "equities",
        "region": "europe",
        "trading_date": "2026-11-18",
        "run_id": "scheduled__2026-11-18T06:00:00+00:00",
    }
    assert Partition.from_xcom(value) == PART


def test_an_xcom_without_the_run_takes_it_from_the_caller_or_says_so():
    older = {"site": "equities", "region": "europe", "trading_date": "2026-11-18", "uri": "x"}
    assert Partition.from_xcom(older, PART.run_id) == PART
    with pytest.raises(ValueError, match=r"the XCom names no run_id \(its keys: \['region'"):
        Partition.from_xcom(older)


def test_its_files_are_named_by_a_file_safe_run_key(monkeypatch, tmp_path):
    monkeypatch.setenv("OFFPEAK_DATA_ROOT", tmp_path.as_uri())
    assert PART.run_key == "scheduled__2026-11-18T06_00_00_00_00"
    assert Partition("s", "r", date(2026, 1, 2), "///").run_key == "run"
    path = storage.partition("clean", PART)
    assert path.path.endswith(
        "/clean/site=equities/region=europe/date=2026-11-18/scheduled__2026-11-18T06_00_00_00_00.csv"
    )


def test_messages_name_it_as_the_verdict_always_did():
    assert str(PART) == "site 'equities' region 'europe' 2026-11-18"
