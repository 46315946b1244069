"""ops_platform: a Dagster code location running the web platform's background operations."""
