"""Malformed app rows as the assets report them: the counts of `ops_platform.db.bad_rows`
for the app tables each asset reads (`JOB_TABLES`, by asset name), in its metadata, and a
non-blocking check per asset that warns while any are there."""

import dagster as dg

from ops_platform.db.bad_rows import JOB_TABLES, bad_rows_metadata, no_bad_rows_check
from ops_platform.resources.database import Database


def asset_bad_rows(context: dg.AssetExecutionContext, database: Database) -> dict:
    """`bad_rows` and `bad_rows_total` of the tables the running asset reads; a warning in
    its log when not zero. The asset's rule skips these rows and never changes them."""
    name = context.asset_key.path[-1]
    return bad_rows_metadata(database.engine, JOB_TABLES[name], context.log.warning)


def malformed_rows_checks(*assets: dg.AssetsDefinition) -> list[dg.AssetChecksDefinition]:
    """The WARN check `no_malformed_app_rows` of each asset."""
    return [no_bad_rows_check(asset, asset.key.path[-1]) for asset in assets]
