"""The app database: contract schema, engine helpers, migrations and synthetic data."""
