"""Finding a secret where it must not be: in any spelling a URL or a log gives it."""

from __future__ import annotations

from collections.abc import Callable

from offpeak.crawl.contract import redact


def hits(text: str, key: str) -> list[str]:
    """The lines of ``text`` that hold ``key`` in any spelling (as is, percent-encoded in
    either case, ``+`` for a space)."""
    return [line[:200] for line in text.splitlines() if redact(line, key) != line]


def metadata_hits(query: Callable[..., list[tuple]], key: str) -> dict[str, list[str]]:
    """``{"metadata table <name>": lines}`` of every table of Airflow's metadata DB (XCom,
    rendered templates, run conf, task instances ...) whose rows hold ``key``; ``query`` runs
    SQL there and returns the rows."""
    tables = query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE'"
    )
    assert {"xcom", "rendered_task_instance_fields", "dag_run"} <= {t for (t,) in tables}
    found = {}
    for (table,) in tables:
        rows = query(f'SELECT t::text FROM public."{table}" t')
        if bad := hits("\n".join(r[0] for r in rows), key):
            found[f"metadata table {table}"] = bad
    return found
