"""The Airflow connections we read: a site's (base URL, masked API key), the warehouse's and
Airflow's own metadata DB's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from offpeak import settings

if TYPE_CHECKING:
    import psycopg


def connection_var(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def base_url_from_connection(conn: Any) -> str:
    """``http[s]://host[:port][/path]`` from an Airflow HTTP connection (a site's base URL, the
    alerts webhook): its host when that is a whole URL (the JSON form
    ``{"conn_type": "http", "host": "https://hooks.slack.com/services/..."}``), else built
    from its parts. ``schema`` is the scheme when it is ``http``/``https``, else the path: the
    URI form ``https://host/path`` puts the path there."""
    host = (conn.host or "").strip().rstrip("/")
    if "://" in host:
        return host
    schema = (conn.schema or "").strip("/")
    if schema in ("http", "https"):
        scheme, path = schema, ""
    else:
        scheme = "https" if conn.conn_type == "https" else "http"
        path = f"/{schema}" if schema else ""
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}{path}"


def secret_forms(secret: str | None) -> list[str]:
    """The spellings a secret takes in URLs and logs: as is, percent-quoted (either case of
    hex digits) and form-quoted; longest first so a replacement never leaves a tail."""
    if not secret:
        return []
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), f) for f in list(forms)}
    return sorted(forms, key=len, reverse=True)


@dataclass(frozen=True)
class SiteConnection:
    """Where a site is (``base_url``) and its API key, for start URLs with ``{api_key}``."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)


def site_connection(conn_id: str) -> SiteConnection:
    """Read the site's connection. Its password is the site's API key: it reaches Scrapy in its
    environment (never argv), is masked in every log line in each spelling a URL gives it, and
    is stripped from every stored URL."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if conn.password:
        from airflow.sdk.log import mask_secret

        for form in secret_forms(conn.password):
            mask_secret(form)
    return SiteConnection(base_url_from_connection(conn), conn.password or None)


@dataclass(frozen=True)
class Proxy:
    """A site's proxy (``proxy_conn_id``): ``url`` with its credentials, which reaches Scrapy
    in its environment only; ``name`` (address and connection, no secret) is what logs and
    dead letters show."""

    conn_id: str
    address: str
    url: str = field(repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"proxy {self.address} (connection {self.conn_id})"


def proxy_connection(conn_id: str) -> Proxy:
    """Read a proxy's connection: ``host`` and ``port``, ``login`` and ``password`` when the
    proxy asks for them (masked in every log), ``schema`` http (default) or https."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    conn = BaseHook.get_connection(conn_id)
    host = (conn.host or "").strip()
    if not host or not conn.port or "://" in host or "/" in host:
        raise ValueError(
            f"proxy connection {conn_id!r} needs a host name and a port (e.g. "
            f'{connection_var(conn_id)}={{"conn_type": "http", "host": "proxy.example", '
            '"port": 3128, "login": "...", "password": "..."}), not a URL'
        )
    for form in secret_forms(conn.password):
        mask_secret(form)
    scheme = conn.schema if conn.schema in ("http", "https") else "http"
    userinfo = ""
    if conn.login:
        userinfo = (
            quote(conn.login, safe="")
            + (f":{quote(conn.password, safe='')}" if conn.password else "")
            + "@"
        )
    address = f"{host}:{conn.port}"
    return Proxy(conn_id, address, f"{scheme}://{userinfo}{address}", conn.password or None)


def warehouse_connection() -> psycopg.Connection:
    """An open psycopg 3 connection to the warehouse, Airflow connection
    ``OFFPEAK_WAREHOUSE_CONN_ID`` (settings.warehouse_conn_id); the caller closes it."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=settings.warehouse_conn_id()).get_conn()
    if not hasattr(conn, "pgconn"):
        raise RuntimeError("the warehouse needs psycopg 3; install psycopg and SQLAlchemy 2")
    return conn


def metadata_db_uri() -> str:
    """The SQLAlchemy URI of Airflow's metadata DB, from the Airflow connection
    ``OFFPEAK_METADATA_CONN_ID`` (settings.metadata_conn_id), masked in the logs. A task's
    process has its ``[database] sql_alchemy_conn`` replaced by Airflow 3 (tasks may not touch
    the metadata DB), so maintenance__db_clean's `airflow db clean` needs it from there."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret

    conn_id = settings.metadata_conn_id()
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise LookupError(
            f"no Airflow connection {conn_id!r} (OFFPEAK_METADATA_CONN_ID): define it with the "
            "metadata DB's URI, the value of [database] sql_alchemy_conn, e.g. "
            f"{connection_var(conn_id)}=postgresql+psycopg2://airflow:<password>@postgres/airflow"
        ) from None
    if conn.password:
        for form in secret_forms(conn.password):
            mask_secret(form)
    uri = conn.get_uri()
    # An Airflow `postgres` connection prints as postgres://, a scheme SQLAlchemy refuses.
    return re.sub(r"^postgres://", "postgresql://", uri)
