"""The Prometheus tools some tests run, skipped where they are not installed unless
OPS_REQUIRE_PROMETHEUS=1 says they must be."""

import os
import shutil

import pytest


def prometheus_tool(name: str) -> str:
    """The path of `name` (`prometheus`, `promtool`) from the Debian package prometheus."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("OPS_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"OPS_REQUIRE_PROMETHEUS=1 but {name} is not installed")
        pytest.skip(f"{name} not installed (Debian package prometheus)")
    return found
