"""The site's secret in the crawl process: read from the environment, kept out of what is stored."""

from __future__ import annotations

import os

from offpeak.crawl import contract


def site_secret() -> str | None:
    """The site's API key, handed over in the environment (never argv)."""
    return os.environ.get(contract.API_KEY_ENV) or None


def stored_url(url: str) -> str:
    """A URL as it may be stored or logged: without the site's secret."""
    return contract.strip_secret(url, site_secret())


def redacted(text: str) -> str:
    """``text`` as it may be logged: every spelling of the site's secret replaced."""
    return contract.redact(text, site_secret())
