"""Every id built from site and region names (DAG ids, pool names, the DAG file of a site),
and its parse-back."""

# A DAG id joins its parts with "__": scrape__<site>__<region>, rollup__<region> and
# rollup__global. So that an id names one (site, region) and reads back into it, a site or
# region name may not contain "__" (check_name, applied by the config models).

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

SEPARATOR = "__"
SCRAPE = "scrape"
ROLLUP = "rollup"
# The scope of the rollup across regions; config reserves it as a region name.
GLOBAL = "global"
POOL_PREFIX = "site_"
# The scrape DAGs are built by SCRAPE_SHARDS DAG files, dags/scrape/shard_<n>.py: a site's
# DAGs (every region of it) are in the file its name hashes to, so one file's parse stays
# about a sixteenth of the work at any size (docs/scaling.md). The rollups likewise, by region, in
# ROLLUP_SHARDS files dags/rollups/shard_<n>.py (rollup__global in the file "global" hashes
# to). Changing a number moves DAGs between files: add or remove the files with it
# (tests/unit/test_sharding.py checks both).
SCRAPE_SHARDS = 16
ROLLUP_SHARDS = 5

# A name starts with a letter (config.IDENTIFIER), so the site ends at the first separator
# followed by a letter: a site name may end with "_" ("scrape__fx___europe" is fx_, europe).
_DAG_ID = re.compile(
    rf"(?P<kind>{SCRAPE}){SEPARATOR}(?P<site>[a-z0-9_]+?){SEPARATOR}(?P<scope>[a-z][a-z0-9_]*)"
    rf"|(?P<rollup>{ROLLUP}){SEPARATOR}(?P<rollup_scope>[a-z][a-z0-9_]*)"
)


def check_name(name: str, what: str = "name") -> str:
    """``name`` (a site or region name, says ``what``) if it can be part of an id, else
    ValueError saying why; the config models report it with the file and the field."""
    if SEPARATOR in name:
        raise ValueError(
            f"{what} {name!r} contains {SEPARATOR!r}, which separates the parts of DAG ids "
            f"({scrape_dag_id('<site>', '<region>')}, {rollup_dag_id('<region>')}); "
            "use single underscores"
        )
    return name


# The daily purge of Airflow's run history (dags/maintenance.py): no site or region in it.
DB_CLEAN_DAG_ID = f"maintenance{SEPARATOR}db_clean"


def scrape_dag_id(site: str, region: str) -> str:
    """``scrape__<site>__<region>``: the DAG that crawls ``site`` for ``region``."""
    return f"{SCRAPE}{SEPARATOR}{site}{SEPARATOR}{region}"


def rollup_dag_id(scope: str) -> str:
    """``rollup__<region>``, or ``rollup__global`` for ``scope`` :data:`GLOBAL`."""
    return f"{ROLLUP}{SEPARATOR}{scope}"


def scrape_shard(site: str) -> int:
    """The shard (0 to SCRAPE_SHARDS - 1) whose DAG file builds ``site``'s DAGs: CRC-32 of the
    name, the same in every process and release (Python's hash() is salted per process)."""
    return zlib.crc32(site.encode("utf-8")) % SCRAPE_SHARDS


def rollup_shard(scope: str) -> int:
    """The shard (0 to ROLLUP_SHARDS - 1) whose DAG file builds ``rollup__<scope>``."""
    return zlib.crc32(scope.encode("utf-8")) % ROLLUP_SHARDS


def scrape_dag_file(site: str) -> str:
    """The DAG file, relative to the DAGs folder, that builds ``site``'s scrape DAGs."""
    return f"{SCRAPE}/shard_{scrape_shard(site)}.py"


def rollup_dag_file(scope: str) -> str:
    """The DAG file, relative to the DAGs folder, that builds ``rollup__<scope>``."""
    return f"{ROLLUP}s/shard_{rollup_shard(scope)}.py"


def pool_name(site: str) -> str:
    """``site_<site>``: the Airflow pool that caps the site's crawls at once."""
    return f"{POOL_PREFIX}{site}"


@dataclass(frozen=True)
class DagId:
    """A DAG id read back: ``kind`` is ``scrape`` or ``rollup``; ``site`` is None for a rollup;
    ``scope`` is the region whose trading days the DAG runs on, or ``global``."""

    kind: str
    site: str | None
    scope: str

    def __str__(self) -> str:
        if self.site is None:
            return rollup_dag_id(self.scope)
        return scrape_dag_id(self.site, self.scope)


def parse_dag_id(dag_id: str) -> DagId:
    """The parts of a ``scrape__<site>__<region>`` or ``rollup__<scope>`` DAG id; ValueError
    for any other id."""
    match = _DAG_ID.fullmatch(dag_id)
    parsed = None
    if match is not None and match["kind"]:
        parsed = DagId(SCRAPE, match["site"], match["scope"])
    elif match is not None:
        parsed = DagId(ROLLUP, None, match["rollup_scope"])
    if parsed is None or SEPARATOR in f"{parsed.site or ''}/{parsed.scope}":
        raise ValueError(f"{dag_id!r} is not a scrape__<site>__<region> or rollup__<scope> DAG")
    return parsed


def scope_of(dag_id: str) -> str:
    """Whose trading days a DAG runs on: its region, or ``global``."""
    return parse_dag_id(dag_id).scope
