"""Every relative link of README.md and docs/*.md resolves: to a file of the checkout, and for
an `#anchor` to a heading of that file, by GitHub's anchor rules."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from support import REPO

DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target); the text may run over a line break.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans (links in code are not links)."""
    kept, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            kept.append("")
        else:
            kept.append("" if fenced else line)
    return CODE_SPAN.sub("", "\n".join(kept))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup and punctuation dropped, lower case, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in ``path``; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every relative link in ``path``."""
    text = _prose(path.read_text(encoding="utf-8"))
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in LINK.finditer(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", m.group(1), flags=re.IGNORECASE)
    ]


CASES = [(path, line, target) for path in DOCS for line, target in links(path)]


def test_the_slug_follows_githubs_rules():
    assert slug("Fields: how a value is taken from the page") == (
        "fields-how-a-value-is-taken-from-the-page"
    )
    assert slug("Coverage: what data do I have, and what is missing?") == (
        "coverage-what-data-do-i-have-and-what-is-missing"
    )
    assert slug("Concurrent `airflow dags test` on a new metadata DB (issue 29)") == (
        "concurrent-airflow-dags-test-on-a-new-metadata-db-issue-29"
    )
    assert slug("Running it locally: `make run`") == "running-it-locally-make-run"


def test_the_readme_and_docs_have_links_to_check():
    readme = [c for c in CASES if c[0].name == "README.md"]
    assert len(readme) >= 10
    assert any("#" in target for _, _, target in readme)


@pytest.mark.parametrize(
    ("path", "line", "target"),
    CASES,
    ids=[f"{p.relative_to(REPO)}:{line}:{target}" for p, line, target in CASES],
)
def test_every_relative_link_resolves(path, line, target):
    where = f"{path.relative_to(REPO)} line {line}: link {target!r}"
    file_part, _, anchor = unquote(target).partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    assert dest.exists(), f"{where}: {dest} does not exist"
    assert dest.is_relative_to(REPO), f"{where}: {dest} is outside the checkout"
    if anchor:
        assert dest.suffix == ".md", f"{where}: an anchor into a file that is not Markdown"
        assert anchor in anchors(dest), (
            f"{where}: no heading of {dest.relative_to(REPO)} has the anchor #{anchor}; "
            f"it has {sorted(anchors(dest))}"
        )
