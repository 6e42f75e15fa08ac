"""Data files (the data_file kind): a download opened (zip, gzip) within the size cap, its
text read as CSV rows or XML records, and the day's downloads kept for conditional requests.

Nothing here is extracted to disk: a zip member is read in memory, so no member path can
reach the work folder; an archive naming one that would leave it (absolute, or with ``..``)
is refused all the same, as hostile. XML is parsed without loading a DTD, resolving an
entity or touching the network, and a file that declares entities is refused.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"


class Refused(Exception):
    """A file not read, and why: ``cause`` (the dead letter's) and ``why`` (its words)."""

    def __init__(self, cause: str, why: str) -> None:
        super().__init__(why)
        self.cause, self.why = cause, why


# ------------------------------------------------------------------ opening the download


def opened(body: bytes, section: Any, maxsize: int, url: str) -> bytes:
    """The file's bytes: ``body`` itself, or the zip member or gzip stream it holds,
    inflated up to ``maxsize`` bytes (politeness.download_maxsize) and no further."""
    kind = section.compression
    if kind == "auto":
        magic = {"zip": ZIP_MAGIC, "gzip": GZIP_MAGIC}
        kind = next((k for k, first in magic.items() if body.startswith(first)), "none")
    if kind == "zip":
        return _member(body, section.member, maxsize, url)
    if kind == "gzip":
        return _inflated(
            gzip.GzipFile(fileobj=io.BytesIO(body)), maxsize, f"the gzip stream of {url}"
        )
    return body


def leaves_folder(name: str) -> bool:
    """Whether a member path would land outside the folder it is extracted into."""
    path = PurePosixPath(name.replace("\\", "/"))
    drive = len(name) > 1 and name[1] == ":"
    return path.is_absolute() or drive or ".." in path.parts


def _member(body: bytes, name: str | None, maxsize: int, url: str) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile as exc:
        raise Refused("unreadable_page", f"{url} is not a zip archive: {exc}") from None
    members = [i for i in archive.infolist() if not i.is_dir()]
    unsafe = [i.filename for i in members if leaves_folder(i.filename)]
    if unsafe:
        raise Refused(
            "zip_slip",
            f"{url}: member path(s) {unsafe} leave the archive's folder (absolute, or through "
            "'..'); a hostile archive is not read",
        )
    names = [i.filename for i in members]
    if name is None:
        if len(members) != 1:
            raise Refused(
                "unreadable_page",
                f"{url} holds {len(members)} members {names}: name one in data_file.member",
            )
        info = members[0]
    else:
        found = [i for i in members if i.filename == name]
        if not found:
            raise Refused(
                "unreadable_page",
                f"{url} has no member {name!r} (data_file.member); it holds {names}",
            )
        info = found[0]
    what = f"member {info.filename!r} of {url}"
    if info.file_size > maxsize:
        raise Refused(
            "too_large",
            f"{what} inflates to {info.file_size:,} bytes (as the archive declares), over "
            f"politeness.download_maxsize ({maxsize:,} bytes); not read",
        )
    with archive.open(info) as stream:
        return _inflated(stream, maxsize, what)


def _inflated(stream: Any, maxsize: int, what: str) -> bytes:
    """At most ``maxsize`` bytes of ``stream``: a stream that inflates past it is refused
    after reading ``maxsize + 1`` bytes, whatever its header declared."""
    try:
        data = stream.read(maxsize + 1)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise Refused("unreadable_page", f"{what} does not inflate: {exc}") from None
    if len(data) > maxsize:
        raise Refused(
            "too_large",
            f"{what} inflates past politeness.download_maxsize ({maxsize:,} bytes); not read",
        )
    return data


def text_of(data: bytes, encoding: str, url: str) -> str:
    """``data`` decoded; a UTF-8 byte-order mark dropped (never part of a column's name)."""
    codec = codecs.lookup(encoding).name
    try:
        return data.decode("utf-8-sig" if codec == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        raise Refused(
            "charset",
            f"bytes {exc.start}-{exc.end} of {url} are not valid {codec} (data_file.encoding): "
            "the file is not stored rather than stored garbled",
        ) from None


# ------------------------------------------------------------------ CSV


@dataclass(frozen=True)
class Table:
    """A CSV file's columns (their header texts) and data rows."""

    columns: list[str]
    rows: list[list[str]]
    skipped: int  # blank rows


def csv_table(text: str, section: Any, url: str) -> Table:
    """The header and data rows of a CSV file, as data_file's csv options say."""
    lines: Iterable[str] = io.StringIO(text, newline="")
    for _ in range(section.skip_lines):
        next(lines, None)
    if section.comment:
        lines = (line for line in lines if not line.startswith(section.comment))
    reader = csv.reader(lines, delimiter=section.delimiter, quotechar=section.quotechar)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise Refused(
            "unreadable_page", f"{url} is not readable as CSV at line {reader.line_num}: {exc}"
        ) from None
    header, rows = rows[: section.header_rows], rows[section.header_rows :]
    if len(header) < section.header_rows:
        raise Refused(
            "unreadable_page",
            f"{url} has no header row (data_file.header_rows {section.header_rows})",
        )
    if section.skip_footer:
        rows = rows[: -section.skip_footer]
    width = max(len(r) for r in header)
    columns = [
        " ".join(c for r in header if i < len(r) and (c := r[i].strip())) for i in range(width)
    ]
    data = [r for r in rows if any(cell.strip() for cell in r)]
    return Table(columns, data, len(rows) - len(data))


def melted(columns: list[str], melt: dict[str, Any]) -> list[tuple[int, str]]:
    """The value columns melt reads, as (index, header): the ones it names, else every
    column with a header that is not an id column."""
    if melt["value_columns"]:
        return [(columns.index(c), c) for c in melt["value_columns"]]
    ids = set(melt["id_columns"])
    return [(i, c) for i, c in enumerate(columns) if c and c not in ids]


# ------------------------------------------------------------------ XML


def xml_records(data: bytes, section: Any, url: str) -> list[Any]:
    """The record selectors of an XML file (data_file.records, with its namespaces)."""
    from lxml import etree
    from parsel import Selector

    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True,
        remove_pis=True, huge_tree=False,
    )  # fmt: skip
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if b"<!ENTITY" in data:  # lxml refuses some uses of an unexpanded entity outright
            raise Refused("xml_entity", _entities_refused(url, "")) from None
        raise Refused("unreadable_page", f"{url} is not well-formed XML: {exc}") from None
    dtd = root.getroottree().docinfo.internalDTD
    entities = [e.name for e in dtd.iterentities()] if dtd is not None else []
    if entities:
        raise Refused("xml_entity", _entities_refused(url, f" {entities}"))
    selector = Selector(root=root, type="xml")
    for prefix, uri in section.namespaces.items():
        selector.register_namespace(prefix, uri)
    try:
        return selector.xpath(section.records)
    except ValueError as exc:
        raise Refused(
            "unreadable_page", f"data_file.records {section.records!r} on {url}: {exc}"
        ) from None


def _entities_refused(url: str, names: str) -> str:
    return (
        f"{url} declares the entities{names} in its DOCTYPE: an XML file's entities are never "
        "expanded or fetched (they can read local files or the network, or inflate without "
        "end); the file is not read"
    )


# ------------------------------------------------------------------ the day's downloads


def cache_key(url: str) -> str:
    """A download's name in the cache: a hash of its stored URL (no secret in it)."""
    return hashlib.sha256(url.encode()).hexdigest()[:24]


class Downloads:
    """The downloads of a data_file site kept in the crawl's ``folder`` (restored from and
    kept on the data root by offpeak.crawl.downloads): ``<key>.body`` and ``<key>.json`` (its
    URL, ETag and Last-Modified). A run sends the validators back, and a 304 reads the copy."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = Path(folder) if folder else None

    def validators(self, key: str) -> dict[str, str]:
        """The conditional request headers for a kept download, if any."""
        meta = self._meta(key)
        if meta is None:
            return {}
        headers = {}
        if meta.get("etag"):
            headers["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = meta["last_modified"]
        return headers

    def body(self, key: str) -> bytes | None:
        if self._meta(key) is None:
            return None
        return (self.folder / f"{key}.body").read_bytes()

    def keep(
        self, key: str, url: str, body: bytes, etag: str | None, last_modified: str | None
    ) -> None:
        """Keep a full download (its body first, its validators last: a reader needs both)."""
        if self.folder is None or not (etag or last_modified):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        _write(self.folder / f"{key}.body", body)
        meta = {"url": url, "etag": etag, "last_modified": last_modified, "bytes": len(body)}
        _write(self.folder / f"{key}.json", json.dumps(meta).encode())

    def _meta(self, key: str) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        meta, body = self.folder / f"{key}.json", self.folder / f"{key}.body"
        if not (meta.exists() and body.exists()):
            return None
        found = json.loads(meta.read_text())
        return found if body.stat().st_size == found.get("bytes") else None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
