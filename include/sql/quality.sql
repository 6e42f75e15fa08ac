-- Post-load quality checks, one statement per `-- name:` section, run by
-- offpeak.warehouse.checks.check_partition inside the load's transaction (a failure rolls the load back).
-- {schema} is the warehouse schema, {site_table} a quoted identifier; {blank_key} is true for a
-- row whose natural key has a NULL or blank part; {ranges} holds, per configured range, the
-- column's count of values, count outside the range, min and max; {rows} is the partition
-- (or, for a brand-new partition, the staged rows it was loaded from); %(...)s are parameters.

-- name: partition_summary
-- Every check's numbers in one scan of the partition.
SELECT count(*), count(*) FILTER (WHERE {blank_key}){ranges}
  FROM {rows};

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
