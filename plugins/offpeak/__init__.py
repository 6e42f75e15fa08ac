"""Off-peak scraping: config-driven Scrapy crawls loaded into PostgreSQL by Airflow 3."""
