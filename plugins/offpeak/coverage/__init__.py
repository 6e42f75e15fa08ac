"""Coverage at a glance: per (site, region) and trading date, what the warehouse holds and
what Airflow did. The Coverage page (api.py), its JSON and ``python -m offpeak.coverage``
show the same matrix (matrix.py, from the sources in sources.py)."""
