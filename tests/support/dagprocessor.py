"""Parse every DAG file of a folder the way Airflow 3.3's dag-processor does, and time it.

The dag-processor's manager imports Airflow once, then forks one process per DAG file; that
process runs ``airflow.dag_processing.processor._parse_file`` (the stability check, a
``BundleDagBag`` of the file, ``DagSerialization.to_dict`` of every DAG) and sends the result
back as one msgpack frame; the manager kills it after ``[dag_processor]
dag_file_processor_timeout``. ``python -m support.dagprocessor FOLDER --timeout S`` does the
same: it imports what the manager has, pre-imports the `airflow.*` modules each file imports
and freezes the GC as the manager does before forking, forks a process per file (sorted, one at
a time so the times are the file's own) that runs
``_parse_file`` and encodes the frame, and kills it after ``S`` seconds. It prints one JSON
line per file: wall and CPU seconds, the DAG ids, the import errors, the frame's size, and
``timed_out``. Airflow's environment (AIRFLOW_HOME, the plugins folder, OFFPEAK_CONFIG_DIR) is
the caller's. Used by tests/dags/test_parse_at_scale.py and `make bench` (bench_parse.py).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
from pathlib import Path

MARK = "@@file "


def dag_files(folder: Path) -> list[Path]:
    """The Python files of ``folder`` and its subfolders, as the manager lists them."""
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _parse_in_child(file: Path, folder: Path, out: int) -> None:
    import gc

    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file
    from airflow.sdk.execution_time.comms import _RequestFrame

    wall, cpu = time.perf_counter(), time.process_time()
    request = DagFileParseRequest(file=str(file), bundle_path=folder, bundle_name="dags-folder")
    result = _parse_file(request, structlog.get_logger(logger_name="task"))
    frame = _RequestFrame(id=0, body=result.model_dump()).as_bytes()
    answer = {
        "file": str(file.relative_to(folder)),
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "dags": sorted(d.dag_id for d in result.serialized_dags),
        "import_errors": {str(k): str(v)[-1500:] for k, v in result.import_errors.items()},
        "frame_bytes": len(frame),
        "timed_out": False,
    }
    os.write(out, (json.dumps(answer) + "\n").encode())
    gc.collect()


def parse_folder(folder: Path, timeout: float) -> list[dict]:
    """Each file of ``folder`` parsed in a forked process, as above; one answer per file."""
    import gc

    import structlog
    from airflow.dag_processing.processor import _pre_import_airflow_modules

    gc.freeze()
    log = structlog.get_logger(logger_name="processor")
    answers = []
    for file in dag_files(folder):
        # What the manager does before it forks a file's parse: import the `airflow.*` modules
        # the file imports ([dag_processor] parsing_pre_import_modules, on by default).
        _pre_import_airflow_modules(str(file), log)
        gc.freeze()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the parse process
            os.close(read)
            code = 0
            try:
                _parse_in_child(file, folder, write)
            except BaseException as exc:
                os.write(write, (json.dumps({"crash": repr(exc)}) + "\n").encode())
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        answers.append(_collect(pid, read, file, folder, timeout))
    return answers


def _collect(pid: int, read: int, file: Path, folder: Path, timeout: float) -> dict:
    started = time.perf_counter()
    data = b""
    while True:
        left = timeout - (time.perf_counter() - started)
        ready, _, _ = select.select([read], [], [], max(left, 0))
        if not ready:  # the manager kills a parse at its timeout
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return {
                "file": str(file.relative_to(folder)),
                "wall": time.perf_counter() - started,
                "timed_out": True,
            }
        chunk = os.read(read, 1 << 16)
        if not chunk:
            break
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    answer = json.loads(data.decode() or '{"crash": "no answer"}')
    if "crash" in answer:
        raise RuntimeError(f"parsing {file} crashed: {answer['crash']}")
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args()
    for answer in parse_folder(args.folder.resolve(), args.timeout):
        print(MARK + json.dumps(answer), flush=True)


def read_answers(stdout: str) -> list[dict]:
    """The per-file answers in ``stdout`` of ``python -m support.dagprocessor``."""
    return [json.loads(line[len(MARK) :]) for line in stdout.splitlines() if line.startswith(MARK)]


if __name__ == "__main__":
    sys.exit(main())
