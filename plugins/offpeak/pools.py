"""One Airflow pool per site, sized by ``politeness.max_concurrent_crawls``.

Every scrape task of a site runs in pool ``site_<name>``, so the site never sees more crawls
at once than its config allows, whatever mix of regions, scheduled runs and backfills is
running. A crawl deferred until its window opens holds no slot (``include_deferred`` off).

``python -m offpeak.pools`` creates or resizes the pools of every valid site in the metadata
DB; `make run`, the test stack and docker-compose's init run it. Run it after adding a site:
the scheduler does not start a task whose pool does not exist.
"""

from __future__ import annotations

import sys

from offpeak.config import Project, load_project
from offpeak.naming import pool_name


def pool_specs(project: Project) -> list[tuple[str, int, str]]:
    """(name, slots, description) for every valid site, sorted by name."""
    return [
        (
            pool_name(site.name),
            site.politeness.max_concurrent_crawls,
            f"Crawls of site {site.name} at once, across regions and backfills "
            f"(politeness.max_concurrent_crawls in sites/{site.name}.yaml)",
        )
        for site in (project.sites[name] for name in sorted(project.sites))
    ]


def sync_pools(project: Project | None = None) -> list[tuple[str, int, str]]:
    """Create or resize the sites' pools (never deletes one: a removed site's runs may still
    be queued). Needs the metadata DB, like the airflow CLI."""
    from airflow.models.pool import Pool

    specs = pool_specs(project or load_project())
    for name, slots, description in specs:
        Pool.create_or_update_pool(name, slots, description, include_deferred=False)
    return specs


def main() -> int:
    project = load_project()
    for name, slots, _ in sync_pools(project):
        print(f"pool {name}: {slots} slot(s)")
    for file, error in sorted(project.errors.items()):
        print(f"skipped {file}: {error.splitlines()[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
