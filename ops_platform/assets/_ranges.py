"""Partitioned assets whose run may cover a range of partitions.

A backfill from the UI, or `dagster asset materialize --partition-range A...B` (which only
accepts assets with `BackfillPolicy.single_run()`), gives one run the whole range. The
asset then does each partition in turn, oldest first, each committed on its own with the
same code as a scheduled run of that partition, so a range run gives the same result as
one run per partition and a failed one keeps (and reports) what it finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import dagster as dg

# Every partitioned asset: one run handles a range (the CLI requires this policy).
RANGE_IN_ONE_RUN = dg.BackfillPolicy.single_run()


@dataclass
class PartitionOutcome:
    """What one partition's materialization reports."""

    metadata: dict
    checks: Sequence[dg.AssetCheckResult] = field(default_factory=list)


def materialize_partitions(
    context: dg.AssetExecutionContext, one: Callable[[str], PartitionOutcome]
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
    """Materialize every partition of the run with `one(partition_key)`. One partition: a
    plain materialization. A range: a materialization per partition as each one is done
    (its own metadata), then each check once over the range (failed partitions named).
    The asset needs `output_required=False`."""
    keys = context.partition_keys
    if len(keys) == 1:
        outcome = one(keys[0])
        yield dg.MaterializeResult(metadata=outcome.metadata, check_results=list(outcome.checks))
        return
    context.log.info(
        f"{context.asset_key.to_user_string()}: {len(keys)} partitions, {keys[0]} to {keys[-1]}"
    )
    checks: dict[str, list[tuple[str, dg.AssetCheckResult]]] = {}
    for key in keys:
        outcome = one(key)
        yield dg.AssetMaterialization(
            asset_key=context.asset_key, partition=key, metadata=outcome.metadata
        )
        for check in outcome.checks:
            checks.setdefault(check.check_name, []).append((key, check))
    for name, results in checks.items():
        yield range_check(name, results)


def range_check(name: str, results: list[tuple[str, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    """One check's results over a range: passed when every partition passed."""
    failed = [(key, result) for key, result in results if not result.passed]
    warn_only = failed and all(r.severity == dg.AssetCheckSeverity.WARN for _, r in failed)
    severity = dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=severity,
        metadata={
            "partitions_checked": len(results),
            "failed_partitions": ", ".join(key for key, _ in failed) or "none",
        },
    )
