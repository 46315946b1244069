"""Resources that hold one connection for a whole run."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr


class HeldConnection(dg.ConfigurableResource):
    """Keeps the connection a subclass opens on first use (in `_connection`, anything with a
    `close()`) for the rest of the run; closed by `close()` and after every run."""

    _connection: Any = PrivateAttr(default=None)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()
