"""Rollups: the sensors that wait for site runs, and the region and global summaries."""
