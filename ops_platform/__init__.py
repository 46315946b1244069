"""ops_platform: a Dagster code location running the web platform's background operations."""

import warnings

# Dagster APIs in beta or preview that the project uses on purpose: `backfill_policy` (every partitioned
# asset backfills a range in one run), and sensor owners, which Dagster itself passes when it
# copies a sensor. Their warning on every command says nothing an operator can act on.
for _beta in (
    r"Parameter `backfill_policy` of function `asset` is currently in beta",
    r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta",
    # kind tags naming the configured database (definitions.database_kind)
    r"Function `Definitions.map_resolved_asset_specs` is currently in preview",
):
    warnings.filterwarnings("ignore", message=_beta)
# Dagster names the tags of a multi-partition run `dagster/partition/<dimension>` itself.
warnings.filterwarnings("ignore", message=r"Non-compliant tag keys like \['dagster/partition/")
