"""Heavy libraries imported when first used, not when the definitions load.

Every run, step process and code-server reload imports `ops_platform.definitions`; pandas,
matplotlib, boto3, redis, cryptography or urllib3 are needed by a few assets and resources
only. A module that uses one declares it once, at its top::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        pd = lazy_module("pandas")

and the library is imported on the first attribute read (`pd.read_sql(...)`), that is inside
the function that needs it; type checkers still see the real module.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for the module `name` and imports it on the first attribute access."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_module(name: str) -> ModuleType:
    """A stand-in for `import name` that imports on first use."""
    return LazyModule(name)  # type: ignore[return-value]
