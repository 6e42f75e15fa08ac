"""The real-world corpus: pages and API responses nobody on this project wrote
(tests/fixtures/corpus, where each comes from is in its PROVENANCE.md), served by the session's
nginx as production servers serve them (gzip, chunked, ETag; the APIs' Link headers and query
strings by tests/fixtures/corpus/nginx-locations.conf), each loaded from its YAML alone
(tests/fixtures/corpus/sites) through dag.test(), and compared field by field with a reference
computed here without our code: lxml for the HTML pages, the json module (numbers as Decimal)
for the API responses, pandas for the data files (read as text: every digit as written).

Every value is expected exact. A value that is truly malformed is listed in ``REJECTS`` with
why, and must be rejected with a reason instead (none so far).

An entry whose YAML the config models refuse (a feature of issue 22 not there yet) is skipped,
naming the config error; once the models accept it, it must load exactly."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_pipeline import run_dag

from support import REPO
from support.dagsync import scrape_dags, shipped_config_with
from support.queries import load_audit, own_schema

pytestmark = pytest.mark.integration

CORPUS = REPO / "tests/fixtures/corpus"
SITES = CORPUS / "sites"
REGION = "americas"
DAY = date(2026, 8, 4)

# Values that are truly malformed, per entry: {natural key: why}. Such a record must be
# rejected (counted in the load audit), every other one loaded exactly.
REJECTS: dict[str, dict[Any, str]] = {}

# Entries that do not load exactly yet, and why: each is a defect to fix in our code, not in
# the entry (strict: once it loads exactly, the marker must go).
WAITING: dict[str, str] = {}


# ------------------------------------------------------------------ references (no code of ours)


def _collapse(text: str | None) -> str | None:
    """What a browser shows of an HTML text: whitespace runs as one space, trimmed."""
    if text is None:
        return None
    return " ".join(text.split()) or None


def _html(path: str):
    import lxml.html

    return lxml.html.parse(str(CORPUS / path))


def _cells(path: str, section: str) -> list[list[str | None]]:
    doc = _html(path)
    rows = doc.xpath(f"//section[@id='{section}']//table/tbody/tr")
    return [[_collapse(td.text_content()) for td in row.xpath("./td")] for row in rows]


def _first_p(td) -> str | None:
    """The text of a cell's own paragraph (a "New in version" note is a div after it)."""
    paragraphs = td.xpath("./p")
    return _collapse(paragraphs[0].text_content()) if paragraphs else None


def ref_py_http_status() -> dict[Any, dict]:
    out = {}
    for code, name, details in _cells("py_http_status/library/http.html", "http-status-codes"):
        out[int(code)] = {"code": int(code), "enum_name": name, "details": details}
    return out


def ref_py_struct_formats() -> dict[Any, dict]:
    out = {}
    for fmt, c_type, py_type, size, notes in _cells(
        "py_struct_formats/library/struct.html", "format-characters"
    ):
        out[fmt] = {
            "format": fmt, "c_type": c_type, "python_type": py_type,
            "standard_size": None if size is None else int(size), "notes": notes,
        }  # fmt: skip
    return out


def ref_py_codecs() -> dict[Any, dict]:
    doc = _html("py_codecs/library/codecs.html")
    out = {}
    for row in doc.xpath("//section[@id='standard-encodings']//table/tbody/tr"):
        codec, aliases, languages = (_first_p(td) for td in row.xpath("./td"))
        out[codec] = {"codec": codec, "aliases": aliases, "languages": languages}
    return out


def ref_py_resource_usage() -> dict[Any, dict]:
    out = {}
    for index, field, resource in _cells(
        "py_resource_usage/library/resource.html", "resource-usage"
    ):
        out[int(index)] = {"tuple_index": int(index), "field": field, "resource": resource}
    return out


def ref_py_faq() -> dict[Any, dict]:
    import re

    index = _html("py_faq/faq/index.html")
    out = {}
    links = "//div[@class='toctree-wrapper compound']//li[@class='toctree-l1']/a/@href"
    for href in index.xpath(links):
        page = _html(f"py_faq/faq/{href}")
        title = _collapse(page.xpath("//h1")[0].text_content()).removesuffix("¶").rstrip()
        h2 = page.xpath("//h2")
        first = _collapse(h2[0].text_content()).removesuffix("¶").rstrip() if h2 else None
        footer = " ".join(page.xpath("//div[@class='footer']")[0].itertext())
        updated = re.search(r"Last updated on (\w+ \d+, \d{4})", footer)[1]
        years = re.search(r"(\d{4}-\d{4}), Python Software Foundation", footer)[1]
        out[title] = {
            "title": title, "first_section": first,
            "updated": datetime.strptime(updated, "%B %d, %Y").date(), "copyright": years,
        }  # fmt: skip
    return out


def _debref(path: str, summary: str) -> list[dict]:
    """A Debian Reference package table: package, popcon (votes, installs), size, and the
    rest of its cells by header."""
    import re

    table = _html(path).xpath(f"//table[@summary='{summary}']")[0]
    heads = [_collapse(th.text_content()) for th in table.xpath("./thead/tr/th")]
    out = []
    for row in table.xpath("./tbody/tr"):
        cells = dict(zip(heads, row.xpath("./td"), strict=True))
        popcon = _collapse(cells["popcon"].text_content())
        votes = re.search(r"V:(\d+)", popcon)
        record = {
            "package": _collapse(cells["package"].xpath(".//code")[0].text_content()),
            "votes": int(votes[1]) if votes else None,
            "installs": int(re.search(r"I:(\d+)", popcon)[1]),
            "size_kib": int(_collapse(cells["size"].text_content())),
        }
        for head in heads[3:]:
            record[head] = _collapse(cells[head].text_content())
        out.append(record)
    return out


def ref_debref_graphics() -> dict[Any, dict]:
    rows = _debref("debref_graphics/ch11.en.html", "List of graphic data tools")
    return {r["package"]: r for r in rows}


def ref_debref_merge_tools() -> dict[Any, dict]:
    rows = _debref("debref_merge_tools/ch10.en.html", "List of source code merge tools")
    return {(r["package"], r["command"]): r for r in rows}


def _json(path: Path) -> Any:
    """A saved response as the API sent it: numbers exact (Decimal), strings verbatim."""
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


def _dig(data: Any, path: str) -> Any:
    for step in path.split("."):
        data = data.get(step) if isinstance(data, dict) else None
    return data


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def ref_github_issues() -> dict[Any, dict]:
    # An empty string ("body": "" in 16 issues) loads as NULL, as an empty text does everywhere.
    out = {}
    for n in range(1, 15):
        for r in _json(CORPUS / f"github_issues/pages/{n}.json"):
            out[r["number"]] = {
                "number": r["number"], "id": r["id"], "title": r["title"], "state": r["state"],
                "user_login": _dig(r, "user.login"), "assignee": _dig(r, "assignee.login"),
                "milestone": _dig(r, "milestone.title"), "comments": r["comments"],
                "labels": r["labels"], "body": r["body"] or None,
                "created_at": _instant(r["created_at"]), "updated_at": _instant(r["updated_at"]),
            }  # fmt: skip
    return out


def ref_github_comments() -> dict[Any, dict]:
    out = {}
    for n in range(1, 4):
        for r in _json(CORPUS / f"github_comments/pages/{n}.json"):
            out[r["id"]] = {
                "id": r["id"], "user_login": _dig(r, "user.login"),
                "author_association": r["author_association"], "body": r["body"] or None,
                "reactions": r["reactions"], "app": r["performed_via_github_app"],
                "created_at": _instant(r["created_at"]), "updated_at": _instant(r["updated_at"]),
            }  # fmt: skip
    return out


def ref_reddit_spez() -> dict[Any, dict]:
    out = {}
    for page in sorted((CORPUS / "reddit_spez/pages").glob("*.json")):
        for child in _json(page)["data"]["children"]:
            d = child["data"]
            out[d["name"]] = {
                "name": d["name"], "kind": child["kind"], "subreddit": d["subreddit"],
                "author": d["author"], "score": d["score"], "created_utc": d["created_utc"],
                "stickied": d["stickied"], "archived": d["archived"], "edited": d["edited"],
                "distinguished": d["distinguished"], "link_title": d.get("link_title") or None,
                "body": d.get("body") or None,
            }  # fmt: skip
    return out


def ref_ecb_eurofxref() -> dict[Any, dict]:
    """pandas reads the zipped CSV as text (every digit as written), melts it wide to long,
    drops the "N/A" cells and the trailing comma's unnamed column, and keeps the year up to
    the run's date, as the YAML asks (history_days: 365)."""
    import pandas as pd

    wide = pd.read_csv(
        CORPUS / "ecb_eurofxref/eurofxref-hist.zip", dtype=str, keep_default_na=False
    )
    wide = wide.loc[:, [c for c in wide.columns if not c.startswith("Unnamed:")]]
    long = wide.melt(id_vars=["Date"], var_name="currency", value_name="rate")
    long = long[~long["rate"].isin(["", "N/A"])]
    days = pd.to_datetime(long["Date"]).dt.date
    long = long[(days >= DAY - timedelta(days=365)) & (days <= DAY)]
    out = {}
    for d, c, r in long.itertuples(index=False):
        day = date.fromisoformat(d)
        out[day, c] = {"date": day, "currency": c, "rate": Decimal(r)}
    return out


def ref_gpx_cerknica() -> dict[Any, dict]:
    """pandas.read_xml of the track points (lxml underneath, values as text)."""
    import pandas as pd

    points = pd.read_xml(
        CORPUS / "gpx_cerknica/cerknicko-jezero.gpx", xpath="/g:gpx/g:trk/g:trkseg/g:trkpt",
        namespaces={"g": "http://www.topografix.com/GPX/1/0"}, dtype=str,
    )  # fmt: skip
    out = {}
    for lat, lon, ele, time in points[["lat", "lon", "ele", "time"]].itertuples(index=False):
        out[_instant(time)] = {
            "lat": Decimal(lat), "lon": Decimal(lon), "ele": Decimal(ele), "time": _instant(time),
        }  # fmt: skip
    return out


REFERENCES: dict[str, Callable[[], dict[Any, dict]]] = {
    "debref_graphics": ref_debref_graphics,
    "debref_merge_tools": ref_debref_merge_tools,
    "py_http_status": ref_py_http_status,
    "py_struct_formats": ref_py_struct_formats,
    "py_codecs": ref_py_codecs,
    "py_resource_usage": ref_py_resource_usage,
    "py_faq": ref_py_faq,
    "github_issues": ref_github_issues,
    "github_comments": ref_github_comments,
    "reddit_spez": ref_reddit_spez,
    "ecb_eurofxref": ref_ecb_eurofxref,
    "gpx_cerknica": ref_gpx_cerknica,
}
ENTRIES = sorted(REFERENCES)


# ------------------------------------------------------------------------------- the loads


def _site(entry: str) -> dict:
    return yaml.safe_load((SITES / f"{entry}.yaml").read_text())


def _config_error(entry: str) -> str | None:
    """Why the config models refuse the entry's YAML, or None."""
    from offpeak import config

    try:
        config.Site.model_validate(
            {**_site(entry), "name": entry}, context={"compile_selectors": True}
        )
    except Exception as exc:  # pydantic's ValidationError, or a model's own ValueError
        return str(exc)
    return None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, nginx, airflow_db, pg):
    """The shipped config plus every corpus site, each site's connection the corpus entry's
    folder on the session's nginx; loads go to a warehouse schema of this module's own."""

    from offpeak.connections import connection_var

    config = shipped_config_with(
        tmp_path_factory.mktemp("corpus"), [SITES / f"{e}.yaml" for e in ENTRIES]
    )
    patch = pytest.MonkeyPatch()
    with own_schema(pg, "corpus") as schema:
        patch.setenv("OFFPEAK_CONFIG_DIR", str(config))
        patch.setenv("OFFPEAK_WAREHOUSE_SCHEMA", schema)
        for entry in ENTRIES:
            conn = _site(entry)["base_url_conn_id"]
            patch.setenv(connection_var(conn), f"{nginx.url}/corpus/{entry}")
        bag = scrape_dags()
        try:
            yield bag, schema
        finally:
            patch.undo()


def _loaded(warehouse, schema: str, entry: str) -> dict[Any, dict]:
    """The partition as the warehouse holds it, by natural key; jsonb read back exactly."""
    site = _site(entry)
    fields = site["fields"]
    columns = ", ".join(
        f'"{name}"::text' if spec["type"] == "json" else f'"{name}"'
        for name, spec in fields.items()
    )
    cur = warehouse.execute(
        f'SELECT {columns} FROM "{schema}"."{entry}" WHERE region = %s AND trading_date = %s',
        (REGION, DAY),
    )
    out = {}
    for row in cur.fetchall():
        record = {}
        for (name, spec), value in zip(fields.items(), row, strict=True):
            if spec["type"] == "json" and value is not None:
                value = json.loads(value, parse_float=Decimal)
            record[name] = value
        key = tuple(record[name] for name in site["natural_key"])
        out[key[0] if len(key) == 1 else key] = record
    return out


def _differences(expected: dict[Any, dict], loaded: dict[Any, dict]) -> list[str]:
    diffs = [f"missing: {key!r}" for key in expected.keys() - loaded.keys()]
    diffs += [f"unexpected: {key!r}" for key in loaded.keys() - expected.keys()]
    for key in expected.keys() & loaded.keys():
        for name, want in expected[key].items():
            got = loaded[key][name]
            if (
                got != want
                or (type(got) is not type(want) and not _same_kind(got, want))
                or (isinstance(want, Decimal) and str(got) != str(want))  # digits as sent
            ):
                diffs.append(f"{key!r}.{name}: expected {want!r}, loaded {got!r}")
    return sorted(diffs)


def _same_kind(got: Any, want: Any) -> bool:
    """int and Decimal numbers of JSON values compare as numbers (never a bool as a number);
    everything else by type too."""
    numbers = (int, Decimal)
    return (
        not isinstance(got, bool)
        and not isinstance(want, bool)
        and (isinstance(got, numbers) and isinstance(want, numbers))
    )


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, marks=pytest.mark.xfail(strict=True, reason=WAITING[e]))
        if e in WAITING
        else e
        for e in ENTRIES
    ],
)
def test_corpus_entry_loads_exactly(entry, corpus, warehouse):
    error = _config_error(entry)
    if error:
        pytest.skip(f"the config models refuse {entry}.yaml (a feature of issue 22): {error}")
    bag, schema = corpus
    assert not bag.import_errors, bag.import_errors
    dag_id = f"scrape__{entry}__{REGION}"
    run = run_dag(bag, dag_id, DAY)
    assert run.state == "success", f"{dag_id} ended {run.state}"
    expected = REFERENCES[entry]()
    rejects = REJECTS.get(entry, {})
    for key in rejects:
        expected.pop(key)
    loaded = _loaded(warehouse, schema, entry)
    diffs = _differences(expected, loaded)
    assert not diffs, f"{len(diffs)} differences, first ones:\n" + "\n".join(diffs[:25])
    (audit,) = load_audit(warehouse, entry, REGION, DAY, schema=schema)
    assert audit["rows_rejected"] == len(rejects), audit
    assert audit["rows_inserted"] == len(expected), audit
    assert audit["complete"] is True, audit


def test_every_entry_has_its_provenance_and_its_files():
    """PROVENANCE.md names every entry, and every file of the corpus is under a named entry."""
    provenance = (CORPUS / "PROVENANCE.md").read_text()
    for entry in ENTRIES:
        assert f"`{entry}`" in provenance, entry
        assert (CORPUS / entry).is_dir(), entry
    for path in CORPUS.rglob("*"):
        if path.is_file() and path.parent != CORPUS and "sites" not in path.parts:
            assert path.relative_to(CORPUS).parts[0] in ENTRIES, path
    assert len(ENTRIES) >= 8
    kinds = {_site(entry)["kind"] for entry in ENTRIES}
    assert kinds == {"html_table", "json_api", "listing_detail", "data_file"}
    assert os.path.getsize(CORPUS / "nginx-locations.conf") > 0


def test_the_corpus_is_served_as_the_apis_served_it(nginx):
    """Through nginx: the saved bytes gzipped and chunked, the recorded Link header, the API's
    own query strings; a page the API never sent is a 404, never page 1 again."""
    import gzip
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(nginx.url)
    issues = "/corpus/github_issues/repos/openframeworks/openFrameworks/issues"

    def get(path: str) -> tuple[http.client.HTTPResponse, bytes]:
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response, body

    response, body = get(issues)
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert gzip.decompress(body) == (CORPUS / "github_issues/pages/1.json").read_bytes()
    assert response.getheader("Link").startswith(f'<{issues}?page=2>; rel="next", ')
    response, body = get(f"{issues}?page=14")
    assert gzip.decompress(body) == (CORPUS / "github_issues/pages/14.json").read_bytes()
    assert 'rel="next"' not in response.getheader("Link")
    for unknown in (
        f"{issues}?page=15",
        f"{issues}?page=1&x=2",
        "/corpus/reddit_spez/user/spez/?after=t1_zz",
    ):
        assert get(unknown)[0].status == 404, unknown
