"""sensors of ops_platform: one module per domain, each exposing `defs`."""
