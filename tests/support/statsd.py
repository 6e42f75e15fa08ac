"""StatsD for tests: a UDP receiver for the packets Airflow sends, and a model of
statsd_exporter's glob mapping (include/docker/statsd/mapping.yml) to read them as Prometheus
would see them."""

from __future__ import annotations

import re
import select
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from support import REPO

MAPPING_FILE = REPO / "include/docker/statsd/mapping.yml"
# StatsD line types -> the metric types statsd_exporter matches (match_metric_type).
EXPORTER_TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}


@dataclass(frozen=True)
class Line:
    """One StatsD line: ``name:value|type`` (a sample rate or tags after it are kept apart)."""

    name: str
    value: float
    type: str

    @classmethod
    def parse(cls, text: str) -> Line:
        name, _, rest = text.partition(":")
        value, kind, *_ = rest.split("|")
        return cls(name, float(value), kind)


class StatsdReceiver:
    """A UDP socket on 127.0.0.1 and a free port, collecting every StatsD line sent to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for every packet of a run while the receiver is not reading.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.lines: list[Line] = []

    def env(self, prefix: str = "airflow") -> dict[str, str]:
        """Airflow's [metrics] settings that send its StatsD here."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "true",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": prefix,
        }

    def drain(self, wait: float = 0.0) -> None:
        """Read whatever has arrived, waiting up to ``wait`` seconds for the first packet."""
        if wait and not select.select([self.sock], [], [], wait)[0]:
            return
        while True:
            try:
                packet = self.sock.recv(65535)
            except BlockingIOError:
                return
            self.lines += [Line.parse(t) for t in packet.decode().splitlines() if t.strip()]

    def named(self, name: str) -> list[Line]:
        return [line for line in self.lines if line.name == name]

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------- statsd_exporter's mapping
# What the exporter (pkg/mapper) accepts, from its source: the keys of a mapping and of the
# defaults, and the checks it makes when it loads the file.
MAPPING_KEYS = {
    "match", "name", "labels", "observer_type", "timer_type", "buckets", "quantiles",
    "match_type", "help", "action", "match_metric_type", "ttl", "summary_options",
    "histogram_options", "scale",
}  # fmt: skip
DEFAULTS_KEYS = {
    "observer_type", "timer_type", "buckets", "quantiles", "match_type",
    "glob_disable_ordering", "ttl", "summary_options", "histogram_options",
}  # fmt: skip
# The first part of a match cannot start with a digit; later parts can.
_FIRST = r"[a-zA-Z_](-?[a-zA-Z0-9_])*"
_LATER = r"[a-zA-Z0-9_](-?[a-zA-Z0-9_])*"
_TEMPLATE = r"(\$\{?\d+\}?)"
METRIC_LINE = re.compile(rf"^(\*|{_FIRST})(\.\*|\.{_LATER})*$")
METRIC_NAME = re.compile(rf"^([a-zA-Z_]|{_TEMPLATE})([a-zA-Z0-9_]|{_TEMPLATE})*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
CAPTURE_REF = re.compile(r"\$\{?([a-zA-Z0-9_$]+)\}?")


class MappingError(ValueError):
    """The exporter would refuse to load the mapping file."""


@dataclass(frozen=True)
class Mapped:
    """A StatsD name as Prometheus sees it after the mapping."""

    name: str
    labels: dict[str, str]
    observer_type: str | None


class Mapping:
    """statsd_exporter's glob mapping, modelled: ``*`` matches one whole dot-free part of the
    name, ``$n``/``${n}`` in a name or label value is the part the n-th ``*`` matched (an
    index past the captures gives ""), a rule's ``match_metric_type`` limits it to counters,
    gauges or observers (timers), and with ordering on (glob_disable_ordering false, the
    default) the first rule in the file that matches wins. An unmatched name is not mapped:
    the exporter passes it through with its dots as underscores."""

    def __init__(self, data: dict) -> None:
        if not isinstance(data, dict) or set(data) - {"defaults", "mappings"}:
            raise MappingError("the file holds `defaults` and `mappings` only")
        self.defaults = data.get("defaults") or {}
        self.rules = data.get("mappings") or []
        unknown = set(self.defaults) - DEFAULTS_KEYS
        if unknown:
            raise MappingError(f"unknown defaults: {sorted(unknown)}")
        if self.defaults.get("match_type", "glob") != "glob":
            raise MappingError("this model covers glob rules only")
        if self.defaults.get("glob_disable_ordering", False):
            raise MappingError("this model covers glob rules in file order only")
        for i, rule in enumerate(self.rules):
            self._check(i, rule)

    @classmethod
    def load(cls, path: Path = MAPPING_FILE) -> Mapping:
        return cls(yaml.safe_load(path.read_text()))

    @staticmethod
    def _check(i: int, rule: dict) -> None:
        where = f"mapping {i} ({rule.get('match')!r})"
        unknown = set(rule) - MAPPING_KEYS
        if unknown:
            raise MappingError(f"{where}: unknown keys {sorted(unknown)}")
        if rule.get("match_type", "glob") != "glob":
            raise MappingError(f"{where}: this model covers glob rules only")
        if not METRIC_LINE.match(str(rule.get("match", ""))):
            raise MappingError(f"{where}: invalid match")
        if not rule.get("name") or not METRIC_NAME.match(rule["name"]):
            raise MappingError(f"{where}: invalid or missing name {rule.get('name')!r}")
        for label in rule.get("labels") or {}:
            if not LABEL_NAME.match(label):
                raise MappingError(f"{where}: invalid label key {label!r}")
        if rule.get("match_metric_type", "counter") not in ("counter", "gauge", "observer"):
            raise MappingError(f"{where}: invalid metric type {rule['match_metric_type']!r}")
        observer = rule.get("observer_type")
        if observer not in (None, "histogram", "summary"):
            raise MappingError(f"{where}: invalid observer_type {observer!r}")
        if observer == "histogram" and "summary_options" in rule:
            raise MappingError(f"{where}: histogram observer with summary options")
        if observer == "summary" and "histogram_options" in rule:
            raise MappingError(f"{where}: summary observer with histogram options")
        buckets = (rule.get("histogram_options") or {}).get("buckets")
        if buckets is not None and (
            not all(isinstance(b, int | float) for b in buckets) or buckets != sorted(set(buckets))
        ):
            raise MappingError(f"{where}: buckets must be increasing numbers")

    def map(self, name: str, statsd_type: str) -> Mapped | None:
        """What the exporter makes of a StatsD line of this name and type (``c``, ``ms`` ...);
        None when no rule matches."""
        kind = EXPORTER_TYPES[statsd_type]
        parts = name.split(".")
        for rule in self.rules:
            if rule.get("match_metric_type", kind) != kind:
                continue
            pattern = rule["match"].split(".")
            if len(pattern) != len(parts):
                continue
            if any(p != "*" and p != part for p, part in zip(pattern, parts, strict=True)):
                continue
            captures = [part for p, part in zip(pattern, parts, strict=True) if p == "*"]
            labels = {k: _format(v, captures) for k, v in (rule.get("labels") or {}).items()}
            observer = rule.get("observer_type", self.defaults.get("observer_type"))
            return Mapped(_format(rule["name"], captures), labels, observer)
        return None


def _format(template: str, captures: list[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        ref = m[1]
        if not ref.isdigit() or not 1 <= int(ref) <= len(captures):
            return ""
        return captures[int(ref) - 1]

    return CAPTURE_REF.sub(sub, str(template))
