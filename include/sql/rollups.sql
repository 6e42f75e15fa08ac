-- Rollup statements, one per `-- name:` section, run by offpeak.rollups.summaries.
-- {schema} is the warehouse schema; {site_table} and {column} are quoted identifiers;
-- %(...)s are parameters.

-- name: reset_region
DELETE FROM {schema}.rollup_measure_day
 WHERE region = %(region)s AND trading_date = %(trading_date)s;
DELETE FROM {schema}.rollup_site_day
 WHERE region = %(region)s AND trading_date = %(trading_date)s;

-- name: site_day
INSERT INTO {schema}.rollup_site_day
       (region, trading_date, site, rows_loaded, rows_rejected, loads, complete,
        first_loaded_at, last_loaded_at)
SELECT %(region)s, %(trading_date)s, %(site)s,
       (SELECT count(*) FROM {site_table} t
         WHERE t.region = %(region)s AND t.trading_date = %(trading_date)s),
       latest.rows_rejected, audit.loads, latest.complete,
       audit.first_loaded_at, audit.last_loaded_at
  FROM (SELECT count(*) AS loads, min(loaded_at) AS first_loaded_at,
               max(loaded_at) AS last_loaded_at
          FROM {schema}.load_audit
         WHERE site = %(site)s AND region = %(region)s AND trading_date = %(trading_date)s) audit
  LEFT JOIN LATERAL (
        SELECT rows_rejected, complete FROM {schema}.load_audit
         WHERE site = %(site)s AND region = %(region)s AND trading_date = %(trading_date)s
         ORDER BY id DESC LIMIT 1) latest ON true;

-- name: measure_day
INSERT INTO {schema}.rollup_measure_day
       (region, trading_date, site, measure, n, min_value, max_value, avg_value)
SELECT %(region)s, %(trading_date)s, %(site)s, %(measure)s,
       count({column}), min({column}), max({column}), avg({column})
  FROM {site_table}
 WHERE region = %(region)s AND trading_date = %(trading_date)s;

-- name: region_totals
SELECT coalesce(sum(rows_loaded), 0), count(*) FROM {schema}.rollup_site_day
 WHERE region = %(region)s AND trading_date = %(trading_date)s;

-- name: global_day
DELETE FROM {schema}.rollup_global_day WHERE trading_date = %(trading_date)s;
INSERT INTO {schema}.rollup_global_day
       (trading_date, region, sites, rows_loaded, rows_rejected, last_loaded_at)
SELECT trading_date, region, count(*), sum(rows_loaded), sum(rows_rejected),
       max(last_loaded_at)
  FROM {schema}.rollup_site_day
 WHERE trading_date = %(trading_date)s AND region = ANY(%(regions)s)
 GROUP BY trading_date, region;
