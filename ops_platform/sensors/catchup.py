"""Catch-up sensors: `<asset>_catchup` for every scheduled asset with time partitions
(prize pools, OG bonus, analytics, reports…), built by `schedules.build.catchup_sensors`
from the assets found in `ops_platform.assets`. Each targets the asset's job
`<asset>_job` by name, so the runs carry the tags of its schedule-table row."""

import importlib
import pkgutil

import dagster as dg

from ops_platform import assets as assets_pkg
from ops_platform.schedules.build import catchup_sensors
from ops_platform.settings import load_settings


def discovered_assets() -> dict[str, dg.AssetsDefinition]:
    """Every asset of the modules of `ops_platform.assets`, by name."""
    found: dict[str, dg.AssetsDefinition] = {}
    for info in pkgutil.iter_modules(assets_pkg.__path__):
        if info.name.startswith("_"):
            continue
        module_defs = getattr(importlib.import_module(f"{assets_pkg.__name__}.{info.name}"), "defs", None)
        for asset in getattr(module_defs, "assets", None) or []:
            if isinstance(asset, dg.AssetsDefinition):
                for key in asset.keys:
                    found[key.to_user_string()] = asset
    return found


defs = dg.Definitions(sensors=catchup_sensors(discovered_assets(), load_settings()))
