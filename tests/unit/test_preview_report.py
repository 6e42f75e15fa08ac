"""The preview's report as a site author reads it: each reject names its row's key."""

from __future__ import annotations

from datetime import date

from offpeak.config import load_project
from offpeak.preview import Preview, report


def test_a_reject_names_its_rows_natural_key_beside_its_line():
    project = load_project()
    site = project.sites["equities"]
    assert site.natural_key == ["symbol"]
    preview = Preview(
        site=site, region=project.regions["europe"], trading_date=date(2026, 11, 20),
        base_url="http://127.0.0.1:8808", returncode=0, stats={},
        rejects=[
            {"line": 7, "reason": "price: 'n/a' is not a number",
             "record": {"symbol": "ACME", "price": "n/a"}},
            {"line": 9, "reason": "symbol: required field is empty",
             "record": {"symbol": "", "price": "1"}},
            {"line": 12, "reason": "malformed JSON line: Expecting value",
             "record": {"_raw": "{oops"}},
        ],
    )  # fmt: skip
    out = report(preview)
    assert "  line 7 (symbol='ACME'): price: 'n/a' is not a number" in out
    assert "  line 9: symbol: required field is empty" in out  # no key to name
    assert "  line 12: malformed JSON line: Expecting value" in out
