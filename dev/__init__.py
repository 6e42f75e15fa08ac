"""Developer tooling: `make run`'s supervisor and the local PostgreSQL. Never shipped:
the image and the compose services mount plugins/, dags/ and include/ only."""
