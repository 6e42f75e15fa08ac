"""Three thousand (site, region) DAGs through the dag-processor's own path: every DAG file of
dags/ parsed and serialised in a process of its own (tests/support/dagprocessor.py), killed at
Airflow's ``dag_file_processor_timeout`` as the manager would. No file may time out, fail or
lose a DAG. How long each file takes is `make bench`'s to report (docs/benchmarks.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from offpeak.config import load_project
from offpeak.factory import dag_ids
from offpeak.naming import ROLLUP_SHARDS, SCRAPE_SHARDS
from support import REPO
from support.bigconfig import make_config
from support.dagprocessor import read_answers

SITES = 600  # x 5 shipped regions = 3,000 (site, region) DAGs


def test_three_thousand_dags_parse_in_every_file_within_the_dag_processors_timeout(tmp_path):
    from airflow.configuration import conf

    expected_scrape = make_config(tmp_path / "config", SITES)
    assert len(expected_scrape) == 3000
    expected = dag_ids(load_project(tmp_path / "config"))
    timeout = conf.getfloat("dag_processor", "dag_file_processor_timeout")
    env = {**os.environ, "OFFPEAK_CONFIG_DIR": str(tmp_path / "config")}
    argv = [sys.executable, "-m", "support.dagprocessor", str(REPO / "dags")]
    done = subprocess.run(
        [*argv, "--timeout", str(timeout)],
        cwd=REPO / "tests", env=env, capture_output=True, text=True, timeout=20 * timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answers = {a["file"]: a for a in read_answers(done.stdout)}
    shards = [f"scrape/shard_{n}.py" for n in range(SCRAPE_SHARDS)]
    rollups = [f"rollups/shard_{n}.py" for n in range(ROLLUP_SHARDS)]
    assert set(answers) >= {"config_check.py", *rollups, *shards}
    assert [f for f, a in answers.items() if a["timed_out"]] == []
    assert {f: a["import_errors"] for f, a in answers.items() if a["import_errors"]} == {}
    built = Counter(d for a in answers.values() for d in a["dags"])
    ours = sorted(d for d in built if d.startswith(("scrape__", "rollup__")))
    assert ours == expected  # every DAG id, the rollups' included
    assert [d for d, n in built.items() if n > 1] == []  # each in one file only
    # Every shard holds some of the 600 sites: none carries the whole load.
    per_shard = [len(answers[s]["dags"]) for s in shards]
    assert min(per_shard) > 0 and max(per_shard) < 3000 / 4, per_shard
