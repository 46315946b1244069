"""sensors of ops_platform: one module per domain, each exposing `build_sensors(settings)`."""
