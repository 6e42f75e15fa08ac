"""The headless browser of a rendered site (``browser`` in its YAML): how it is launched, what
it does not load, and what the spiders ask of it per page (offpeak.crawl.spec.browser_settings
switches scrapy-playwright on for such a site only)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from offpeak.crawl import contract

# Debian's chromium (make test and the image install it): never a browser download.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "OFFPEAK_CHROMIUM"


def launch_options() -> dict[str, Any]:
    """Playwright's launch options: Debian's chromium, headless, and the site's proxy when it
    has one (from the environment, so its password is never on a command line)."""
    options: dict[str, Any] = {
        "executable_path": os.environ.get(CHROMIUM_ENV, CHROMIUM),
        "headless": True,
    }
    if proxy := os.environ.get(contract.PROXY_URL_ENV):
        parts = urlsplit(proxy)
        options["proxy"] = {"server": f"{parts.scheme}://{parts.hostname}:{parts.port}"}
        if parts.username:
            options["proxy"]["username"] = unquote(parts.username)
            options["proxy"]["password"] = unquote(parts.password or "")
    return options


@lru_cache(maxsize=1)
def _blocked() -> frozenset[str]:
    return frozenset(filter(None, os.environ.get(contract.BROWSER_BLOCK, "").split(",")))


def abort_request(request: Any) -> bool:
    """PLAYWRIGHT_ABORT_REQUEST: a resource the site's ``browser.block`` names is not loaded."""
    return request.resource_type in _blocked()


def page_meta(browser: Any, role: str) -> dict[str, Any]:
    """The request meta that has a page of ``role`` ("listing" or "detail") rendered, or
    nothing when the site's ``browser.pages`` leaves that role to a plain fetch."""
    if browser is None or browser.pages not in ("all", role):
        return {}
    from scrapy_playwright.page import PageMethod

    ms = browser.timeout_seconds * 1000
    meta: dict[str, Any] = {
        "playwright": True,
        "playwright_page_goto_kwargs": {"wait_until": browser.wait_until, "timeout": ms},
    }
    if browser.wait_for:
        meta["playwright_page_methods"] = [
            PageMethod("wait_for_selector", browser.wait_for, timeout=ms)
        ]
    return meta
