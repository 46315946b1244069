"""Resources, each picked by the environment: embedded default or the real service."""

from __future__ import annotations

from typing import Any

from ops_platform.maintenance import MaintenancePolicy
from ops_platform.resources._environment import from_environment
from ops_platform.resources.alerts import build_alerts
from ops_platform.resources.database import Database
from ops_platform.resources.folders import build_folders
from ops_platform.resources.mailer import build_mailer
from ops_platform.resources.object_store import build_object_store
from ops_platform.resources.payments import build_payments
from ops_platform.resources.realtime import build_realtime
from ops_platform.settings import Settings


def build_resources(settings: Settings) -> dict[str, Any]:
    """Every resource of the code location, configured from `settings`."""
    return {
        "database": Database(
            url=settings.database_url
            if settings.embedded_database
            else from_environment("OPS_DATABASE_URL", settings.database_url),
            state_schema=settings.state_schema,
            connect_timeout_s=settings.database_connect_timeout_s,
            statement_timeout_s=settings.database_statement_timeout_s,
        ),
        "object_store": build_object_store(settings),
        "mailer": build_mailer(settings),
        "alerts": build_alerts(settings),
        "payments": build_payments(settings),
        "realtime": build_realtime(settings),
        "folders": build_folders(settings),
        "maintenance_policy": MaintenancePolicy(max_hours=settings.maintenance_max_hours),
    }
