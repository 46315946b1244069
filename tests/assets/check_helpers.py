"""Asset check results of a materialization, by check name."""

import dagster as dg


def check_results(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def run_checks_only(database, asset, *checks) -> dict:
    """`checks` against `asset`'s table as it is now, without materializing it again."""
    result = dg.materialize(
        [asset, *checks],
        resources={"database": database},
        selection=dg.AssetSelection.checks_for_assets(asset),
    )
    return check_results(result)
