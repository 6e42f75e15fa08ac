"""A signed-in headless Chromium page (Debian's chromium, driven by Playwright) for the UI
tests of the stack tier, and their screenshots (test-artifacts/, git-ignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `make test` installs it when missing
TIMEOUT_MS = 30_000  # the UI is a single-page app: every check waits for its text up to this


@contextmanager
def signed_in_page(stack, shots: Path, first_shot: str | None = None) -> Iterator[Page]:
    """A 1440x900 page signed in as admin through the UI's login form; ``shots`` is emptied
    first, and ``first_shot`` names a screenshot of the login form."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto(f"{stack.api_url}/")
        expect(page.get_by_text("Sign into Airflow")).to_be_visible()
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(stack.password)
        if first_shot:
            screenshot(page, shots / first_shot)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="User")).to_be_visible()  # the nav bar, signed in
        try:
            yield page
        finally:
            browser.close()


def screenshot(page: Page, path: Path) -> Path:
    page.screenshot(path=path, animations="disabled")  # tooltips and dialogs fully shown
    assert path.stat().st_size > 0, path
    return path
