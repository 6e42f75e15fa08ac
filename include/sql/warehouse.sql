-- Warehouse objects shared by every site. Site tables are created from the site's YAML by
-- offpeak.warehouse.schema (one column per field, primary key = natural key + region + trading_date).
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
    -- false: the crawl was stopped by the end of its off-peak window (quality.on_window_end:
    -- partial); the load upserted what it got and deleted nothing.
    complete        boolean     NOT NULL DEFAULT true,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    -- Natural keys on more than one record of the crawl, settled by the site's
    -- on_duplicate_key (every copy rejected, or the first or last loaded).
    duplicate_keys  bigint      NOT NULL DEFAULT 0
);

-- Warehouses created before the column existed get it once; checking first keeps every later
-- load from taking ALTER TABLE's exclusive lock on the audit table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{schema}.load_audit'::regclass
                   AND attname = 'complete' AND NOT attisdropped) THEN
        ALTER TABLE {schema}.load_audit ADD COLUMN complete boolean NOT NULL DEFAULT true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{schema}.load_audit'::regclass
                   AND attname = 'duplicate_keys' AND NOT attisdropped) THEN
        ALTER TABLE {schema}.load_audit
            ADD COLUMN IF NOT EXISTS duplicate_keys bigint NOT NULL DEFAULT 0;
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS load_audit_partition_idx
    ON {schema}.load_audit (site, region, trading_date);

-- Rollups (rollup__<region>, rollup__global): rebuilt for a (region, trading date) or a
-- trading date by each run, so re-running gives the same rows.
CREATE TABLE IF NOT EXISTS {schema}.rollup_site_day (
    region          text        NOT NULL,
    trading_date    date        NOT NULL,
    site            text        NOT NULL,
    rows_loaded     bigint      NOT NULL,  -- rows in the site table's partition
    rows_rejected   bigint,                -- by the latest load's transform
    loads           integer     NOT NULL,  -- load runs of the partition so far
    complete        boolean,               -- the latest load's crawl was not cut short
    first_loaded_at timestamptz,
    last_loaded_at  timestamptz,
    rolled_up_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region, trading_date, site)
);

CREATE TABLE IF NOT EXISTS {schema}.rollup_measure_day (
    region          text        NOT NULL,
    trading_date    date        NOT NULL,
    site            text        NOT NULL,
    measure         text        NOT NULL,  -- a field marked `measure: true` in the site file
    n               bigint      NOT NULL,  -- non-null values
    min_value       numeric,
    max_value       numeric,
    avg_value       numeric,
    PRIMARY KEY (region, trading_date, site, measure)
);

CREATE TABLE IF NOT EXISTS {schema}.rollup_global_day (
    trading_date    date        NOT NULL,
    region          text        NOT NULL,
    sites           integer     NOT NULL,
    rows_loaded     bigint      NOT NULL,
    rows_rejected   bigint,
    last_loaded_at  timestamptz,
    rolled_up_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trading_date, region)
);
