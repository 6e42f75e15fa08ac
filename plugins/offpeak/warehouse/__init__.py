"""Warehouse: SQL, schema, the partition load (stage, upsert, prune, audit) and its checks."""
