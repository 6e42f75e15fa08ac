"""What every `make bench` section shares: a figure (repeated runs, optionally beside an anchor
measured in the same run), its summary, and the JSON hand-over to tests/bench/run.py."""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "plugins", REPO / "tests", REPO):  # offpeak, support, dev
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@dataclass
class Figure:
    """One measured quantity, run ``len(runs)`` times.

    ``runs`` are seconds (or MiB for ``unit="MiB"``). With ``anchor_runs`` (same length, run i
    of each taken back to back), the ratio is taken per pair and its median is compared with
    ``target`` (the largest ratio allowed). ``volume`` turns seconds into a rate
    (``volume / seconds`` ``per``, e.g. records/s) shown beside the figure; ``min_rate`` is a
    target on that rate.
    """

    section: str
    name: str
    runs: list[float]
    unit: str = "s"
    anchor: str | None = None
    anchor_runs: list[float] | None = None
    target: float | None = None
    volume: float | None = None
    per: str | None = None
    min_rate: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratios(self) -> list[float]:
        if not self.anchor_runs:
            return []
        return [r / a for r, a in zip(self.runs, self.anchor_runs, strict=True) if a]

    @property
    def rates(self) -> list[float]:
        if not self.volume:
            return []
        return [self.volume / r for r in self.runs if r]

    def verdicts(self) -> list[bool]:
        """One per target this figure has: ratio within ``target``, rate at least ``min_rate``."""
        out = []
        if self.target is not None and self.ratios:
            out.append(statistics.median(self.ratios) <= self.target)
        if self.min_rate is not None and self.rates:
            out.append(statistics.median(self.rates) >= self.min_rate)
        return out


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    """``median (min–max)``."""
    if not values:
        return ""
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def timed(fn) -> tuple[float, object]:
    """(seconds, result) of ``fn()``."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def write(figures: list[Figure], path: str | Path) -> None:
    Path(path).write_text(json.dumps([asdict(f) for f in figures], indent=1), encoding="utf-8")


def read(path: str | Path) -> list[Figure]:
    return [Figure(**d) for d in json.loads(Path(path).read_text(encoding="utf-8"))]


def main_args(argv: list[str] | None = None):
    """``--json PATH`` (where to write the figures) and ``--repeat N`` (default 3)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--json", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)
