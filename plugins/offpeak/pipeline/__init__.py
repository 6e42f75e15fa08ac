"""Pipeline: the files of a run (storage), raw strings to typed values, raw to clean feed,
and the checks on a crawl's stats."""
