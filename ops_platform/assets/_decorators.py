"""`catalog_asset`: the `dg.asset` arguments every asset shares, written once.

Every asset is a row of the schedule table: its concurrency pool and its steps' tags come
from there. Every partitioned asset takes the range policy of `_ranges` (a backfill or
`--partition-range` is one run that yields a materialization per partition).
"""

import dagster as dg

from ops_platform.assets._ranges import RANGE_IN_ONE_RUN
from ops_platform.schedules.catalog import asset_pool, op_tags


def catalog_asset(name: str, partitions_def: dg.PartitionsDefinition | None = None, **kwargs):
    """`dg.asset` named `name`, its pool and step tags taken from the schedule table."""
    if partitions_def is not None:
        kwargs.update(
            partitions_def=partitions_def, backfill_policy=RANGE_IN_ONE_RUN, output_required=False
        )
    return dg.asset(name=name, pool=asset_pool(name), op_tags=op_tags(name), **kwargs)
