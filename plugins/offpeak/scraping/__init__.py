"""The Scrapy project ScrapeOperator runs in a subprocess, its modules named by Scrapy role."""
