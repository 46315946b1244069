"""Schedules: one table (`catalog.py`) and the code that turns it into Dagster schedules."""
