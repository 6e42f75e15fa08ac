-- Runs once when the compose PostgreSQL volume is created: the warehouse lives beside the
-- metadata DB here; point AIRFLOW_CONN_WAREHOUSE elsewhere to use a separate server.
CREATE DATABASE warehouse OWNER airflow;
