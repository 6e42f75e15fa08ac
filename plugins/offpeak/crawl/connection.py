"""A site's HTTP connection: its base URL, and its API key, masked in every log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offpeak.crawl.contract import secret_forms


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
