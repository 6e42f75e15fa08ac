"""The Scrapy project run by ScrapeOperator in a subprocess: settings, spiders, extensions."""
