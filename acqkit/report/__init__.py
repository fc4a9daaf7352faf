"""Turning results files into tables, statistics and plots (no models needed)."""
