-- Post-load quality checks, one statement per `-- name:` section, run by
-- offpeak.warehouse.checks.check_partition inside the load's transaction (a failure rolls the load back).
-- {schema} is the warehouse schema, {site_table} and {column} quoted identifiers; {blank_key}
-- is true for a row whose natural key has a NULL or blank part; %(...)s are parameters.

-- name: partition_keys
SELECT count(*), count(*) FILTER (WHERE {blank_key})
  FROM {site_table}
 WHERE region = %(region)s AND trading_date = %(trading_date)s;

-- name: previous_partition
-- The latest earlier trading date of the region whose latest load was complete (a crawl cut
-- short by its window is no baseline), and its rows; load_audit's index finds it.
SELECT p.trading_date,
       (SELECT count(*) FROM {site_table} t
         WHERE t.region = %(region)s AND t.trading_date = p.trading_date)
  FROM (SELECT DISTINCT ON (trading_date) trading_date, complete
          FROM {schema}.load_audit
         WHERE site = %(site)s AND region = %(region)s AND trading_date < %(trading_date)s
         ORDER BY trading_date DESC, id DESC) p
 WHERE p.complete
 ORDER BY p.trading_date DESC
 LIMIT 1;

-- name: range
SELECT count({column}),
       count(*) FILTER (WHERE {column} < %(min)s OR {column} > %(max)s),
       min({column}), max({column})
  FROM {site_table}
 WHERE region = %(region)s AND trading_date = %(trading_date)s;
