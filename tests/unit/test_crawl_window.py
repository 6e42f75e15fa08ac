"""A crawl's time budget in its off-peak window, against the site's own closespider_timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from offpeak.crawl.window import WindowBudget, window_budget

NOW = datetime(2026, 11, 18, 6, 0, tzinfo=UTC)


def test_the_window_limits_a_crawl_when_it_closes_before_the_sites_timeout():
    closes = NOW + timedelta(seconds=300.04)
    assert window_budget(600, closes, "Europe/London", NOW) == WindowBudget(
        closes=closes, timezone="Europe/London", seconds=300.0
    )


def test_the_sites_timeout_applies_when_it_comes_first():
    assert window_budget(600, NOW + timedelta(hours=2), "Europe/London", NOW) is None
    assert window_budget(600, NOW + timedelta(seconds=600), "Europe/London", NOW) is None


def test_a_site_without_a_timeout_of_its_own_gets_the_rest_of_the_window():
    budget = window_budget(0, NOW + timedelta(hours=2), "Asia/Tokyo", NOW)
    assert budget is not None and budget.seconds == 7200.0


def test_a_window_closing_now_still_gives_one_second():
    assert window_budget(600, NOW - timedelta(seconds=5), "UTC", NOW).seconds == 1.0


def test_no_window_no_budget():
    assert window_budget(600, None, "UTC", NOW) is None
