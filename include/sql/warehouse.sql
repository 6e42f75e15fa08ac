-- Warehouse objects shared by every site. Site tables are created from the site's YAML by
-- offpeak.warehouse (one column per field, primary key = natural key + region + trading_date).
-- {schema} is replaced with the quoted warehouse schema name. Safe to run again.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.load_audit (
    id              bigserial PRIMARY KEY,
    site            text        NOT NULL,
    region          text        NOT NULL,
    trading_date    date        NOT NULL,
    dag_id          text        NOT NULL,
    run_id          text        NOT NULL,
    raw_uri         text,
    raw_sha256      text,
    clean_uri       text        NOT NULL,
    rows_in_file    bigint      NOT NULL,
    rows_rejected   bigint      NOT NULL,
    rows_inserted   bigint      NOT NULL,
    rows_updated    bigint      NOT NULL,
    rows_unchanged  bigint      NOT NULL,
    rows_deleted    bigint      NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS load_audit_partition_idx
    ON {schema}.load_audit (site, region, trading_date);
