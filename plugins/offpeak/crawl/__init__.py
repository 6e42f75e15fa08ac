"""Crawl: the ScrapeOperator and what it needs to run, judge and publish one crawl."""
