"""The crawl's Scrapy extensions, one module each (enabled in offpeak.scraping.settings)."""
