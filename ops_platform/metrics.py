"""`ops-platform metrics [serve]`: Prometheus metrics of the jobs, schedules, queues,
partitions and daemon, read at scrape time from the Dagster instance and the app database.

Every family is computed on each scrape with bounded queries: a few indexed ones per job
(newest run, newest success, runs since the last success, counts by status), one per
queue state on the app database, one partition-status read per partitioned asset, and
the daemon heartbeats — so a scrape costs the same at 100 runs or 100,000.

A source that cannot be read (the app database down, say) does not fail the scrape: its
families are left out and `ops_metrics_source_up{source}` is 0, which is itself alerted.
`prometheus_client` is imported only when metrics are asked for (metric_families.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import dagster as dg
from sqlalchemy import Engine

from ops_platform.app_database_metrics import queue_families
from ops_platform.db.engine import utcnow
from ops_platform.instance_metrics import (
    RunLedger,
    daemon_family,
    job_families,
    partition_family,
    schedule_families,
)
from ops_platform.maintenance import maintenance_family
from ops_platform.metric_families import gauge

# The families are built in ops_platform.instance_metrics and ops_platform.app_database_metrics.
__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "OpsCollector",
    "exposition",
    "partition_family",
    "queue_families",
    "registry_for",
    "run_metrics_command",
    "serve",
    "wsgi_app",
]

log = logging.getLogger("ops_platform.metrics")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


# --- the collector -----------------------------------------------------------------------------


class OpsCollector:
    """A prometheus_client collector computing every family at scrape time."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        defs: dg.Definitions,
        engine: Engine,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.instance, self.defs, self.engine, self.clock = instance, defs, engine, clock
        self._lock = threading.Lock()  # one scrape at a time: concurrent ones would only queue
        self._rows_changed: dict[str, int | None] = {}
        self._ledger = RunLedger()

    def collect(self) -> Iterator:
        with self._lock:
            started = time.perf_counter()
            now = self.clock()
            up = gauge(
                "ops_metrics_source_up", "1 when the source could be read this scrape.", ["source"]
            )
            sources = (
                ("instance", lambda: self._instance_families(now)),
                (
                    "app_database",
                    lambda: [
                        *queue_families(self.engine, now),
                        maintenance_family(self.engine, now),
                    ],
                ),
            )
            for source, read in sources:
                try:
                    yield from read()
                    up.add_metric([source], 1)
                except Exception:  # one source down must not hide the other's metrics
                    log.exception("metrics: reading the %s failed", source.replace("_", " "))
                    up.add_metric([source], 0)
            yield up
            took = gauge(
                "ops_metrics_scrape_duration_seconds", "Time this scrape took to compute.", []
            )
            took.add_metric([], time.perf_counter() - started)
            yield took

    def _rows_cache(self) -> dict:
        if len(self._rows_changed) > 10_000:  # only the newest success per job is ever asked
            self._rows_changed.clear()
        return self._rows_changed

    def _instance_families(self, now: datetime) -> list:
        return [
            *job_families(self.instance, self.defs, self._rows_cache(), self._ledger),
            *schedule_families(self.instance, self.defs),
            partition_family(self.instance, self.defs, now),
            daemon_family(self.instance, now),
        ]


def registry_for(collector: OpsCollector):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(registry)


# --- serving -----------------------------------------------------------------------------------


def wsgi_app(registry):
    """/metrics (the exposition), /healthz (the process answers), anything else 404."""
    from prometheus_client import CONTENT_TYPE_LATEST

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = exposition(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


def serve(registry, host: str, port: int, ready: Callable[[str], None] = print) -> None:
    """Serve until interrupted."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # scrapes every 15 s would flood the log
            log.debug(format, *args)

    with make_server(
        host, port, wsgi_app(registry), ThreadingWSGIServer, handler_class=QuietHandler
    ) as server:
        ready(f"serving metrics on http://{host}:{server.server_port}/metrics (and /healthz)")
        server.serve_forever()


def run_metrics_command(serve_it: bool, host: str, port: int) -> int:
    """`ops-platform metrics [serve]` on the instance of DAGSTER_HOME and the app database."""
    import sys

    from ops_platform.settings import load_settings
    from ops_platform.status import instance_from_env

    settings = load_settings()
    try:
        instance = instance_from_env()
    except RuntimeError as error:
        print(f"ops-platform: {error}", file=sys.stderr)
        return 2
    from ops_platform.db.engine import make_engine
    from ops_platform.definitions import defs

    engine = make_engine(settings.app_database_url)  # the project's tables too
    with instance:
        registry = registry_for(OpsCollector(instance, defs, engine))
        if not serve_it:
            sys.stdout.write(exposition(registry).decode())
            return 0
        try:
            serve(registry, host, port, ready=lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            pass
        finally:
            engine.dispose()
    return 0
