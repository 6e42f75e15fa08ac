"""Alerts: failure notifications to a webhook, and the deadline alert at window end."""
