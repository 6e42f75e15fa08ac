"""Finding a secret where it must not be: in any spelling a URL or a log gives it."""

from __future__ import annotations

from offpeak.crawl.contract import redact


def hits(text: str, key: str) -> list[str]:
    """The lines of ``text`` that hold ``key`` in any spelling (as is, percent-encoded in
    either case, ``+`` for a space)."""
    return [line[:200] for line in text.splitlines() if redact(line, key) != line]
