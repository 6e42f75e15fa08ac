"""The crawl -> load path passes typed values, not long argument lists: no public function or
method of offpeak.crawl, offpeak.pipeline or offpeak.warehouse takes more than 6 parameters.

Every parameter counts except ``self`` and ``cls``: positional, keyword-only (a keyword-only
argument is still one more thing each caller names) and ``*args``/``**kwargs``. A dataclass's
generated ``__init__`` is not counted: its fields are the typed value this rule asks for
(offpeak.partition.Partition, offpeak.warehouse.load.CleanFile); a constructor written by
hand is.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest

PACKAGES = ("offpeak.crawl", "offpeak.pipeline", "offpeak.warehouse")
MAX_PARAMETERS = 6


def modules() -> Iterator[object]:
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            yield importlib.import_module(info.name)


def written_in(fn: object, module: object) -> bool:
    """``fn`` is a function whose source is in ``module`` (not generated, not imported)."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_filename == getattr(module, "__file__", None)


def functions() -> Iterator[tuple[str, object]]:
    """(qualified name, function) of each public function and method of the packages."""
    for module in modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) and written_in(obj, module):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    fn = getattr(member, "__func__", member)  # classmethod, staticmethod
                    if inspect.isfunction(fn) and written_in(fn, module):
                        yield f"{module.__name__}.{name}.{attr}", fn


def parameters(fn: object) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]


def test_the_rule_sees_the_functions_of_the_path():
    found = dict(functions())
    for name in (
        "offpeak.warehouse.load.load_partition",
        "offpeak.crawl.output.pointer",
        "offpeak.crawl.verdict.decide",
        "offpeak.crawl.operator.ScrapeOperator.__init__",
        "offpeak.crawl.operator.ScrapeOperator.run_crawl",
        "offpeak.crawl.runner.CrawlRequest.at",
        "offpeak.pipeline.transform.transform_file",
    ):
        assert name in found
    assert parameters(found["offpeak.crawl.runner.CrawlRequest.at"]) == [
        "connection", "site", "partition", "kwargs"
    ]  # fmt: skip


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_on_the_crawl_to_load_path_takes_more_than_six_parameters(package):
    too_many = {
        name: parameters(fn)
        for name, fn in functions()
        if name.startswith(f"{package}.") and len(parameters(fn)) > MAX_PARAMETERS
    }
    assert too_many == {}, (
        f"more than {MAX_PARAMETERS} parameters: pass a typed value (a Partition, a CleanFile, "
        f"a CrawlRequest) instead of its parts"
    )
