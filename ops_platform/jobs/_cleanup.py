"""The thin op layer shared by the cleanup and expiry jobs.

A rule function does the work (`rule(engine, config, now, log) -> RuleOutcome`); the op
(`job_op`: the job's singleton lock, transient faults as retries) runs the rule as a dry
run first for the blast-radius gate (`_gate`), then for real with its batches paced
(`ops_platform.db.pacing`), and reports rows examined and changed per table, bad rows
skipped, the gate's figures, the pacing and the duration. `rule_job` builds such a job: a
module states its rule (its config class and docstring with it) and the job's description,
nothing else.
"""

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import get_type_hints

import dagster as dg
from sqlalchemy import Engine

from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.batching import BatchResult
from ops_platform.db.engine import utcnow
from ops_platform.db.pacing import use_pacer
from ops_platform.jobs._common import (
    GuardedJobConfig,
    attempts_metadata,
    job_op,
    one_op_job,
    rows_metadata,
    with_earlier_attempts,
)
from ops_platform.jobs._gate import Preview, check_blast_radius, pacer_for
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database


@dataclass
class RuleOutcome:
    results: list[BatchResult] = field(default_factory=list)
    # Bad rows skipped, by kind, e.g. {"skipped_null_expiry": 3}; also other counts to report.
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows_changed(self) -> int:
        return sum(result.changed for result in self.results)

    @property
    def rows_matched(self) -> int:
        return sum(result.matched for result in self.results)

    def changed(self, label: str) -> int:
        return sum(r.changed for r in self.results if r.label == label)

    def matched(self, label: str) -> int:
        return sum(r.matched for r in self.results if r.label == label)


Rule = Callable[[Engine, GuardedJobConfig, datetime, LogLine | None], RuleOutcome]


def guarded_rule(context, database, config, rule, gate, pacer) -> tuple[RuleOutcome, dict]:
    """The rule behind the gate: a real run is previewed by a dry run of the same rule first."""
    engine, now = database.engine, utcnow()
    if config.dry_run:
        outcome = rule(engine, config, now, context.log.info)
        return outcome, check_blast_radius(
            context, engine, config, gate, Preview.of(outcome.results)
        )
    preview = rule(engine, config.model_copy(update={"dry_run": True}), now, None)
    gate_metadata = check_blast_radius(context, engine, config, gate, Preview.of(preview.results))
    with use_pacer(pacer):
        return rule(engine, config, now, context.log.info), gate_metadata


def run_rule_op(
    context: dg.OpExecutionContext,
    database: Database,
    config: GuardedJobConfig,
    rule: Rule,
    **extra_metadata,
) -> dg.Output[int]:
    """Run `rule` behind the blast-radius gate, its batches paced; output rows changed with
    metadata. (The op around it holds the job's lock and retries transient faults.)"""
    started = time.perf_counter()
    gate, pacer = pacer_for(context, config)
    outcome, gate_metadata = guarded_rule(context, database, config, rule, gate, pacer)
    results = with_earlier_attempts(context, outcome.results)
    bad_rows = job_bad_rows(context, database.engine)
    metadata = rows_metadata(
        results,
        started,
        config.dry_run,
        **attempts_metadata(context, outcome.results, results),
        **outcome.counts,
        **bad_rows,
        **extra_metadata,
        **gate_metadata,
        **pacer.summary(),
    )
    if pacer.stopped:
        context.log.warning(
            f"{context.job_name} {pacer.stopped.describe()}; the next run continues"
        )
    verb = "would change" if config.dry_run else "changed"
    per_label = ", ".join(f"{r.label}={r.matched}" for r in results) or "nothing to do"
    bad = ", ".join(f"{k}={v}" for k, v in outcome.counts.items() if v)
    context.log.info(
        f"{context.job_name} {verb} {metadata['rows_matched']} rows ({per_label})"
        + (f"; {bad}" if bad else "")
    )
    return dg.Output(metadata["rows_changed"], metadata=metadata)


def rule_job(
    job_name: str,
    op_name: str,
    rule: Rule,
    *,
    description: str,
    metadata: Callable[[GuardedJobConfig], dict] | None = None,
) -> dg.JobDefinition:
    """A one-op job whose op `op_name` runs `rule` through `run_rule_op`. As with a Dagster op
    of its own, the rule's docstring is the op's description and its `config` annotation the
    run config class; tags come from the schedule table. `metadata(config)` adds what the run
    was asked to do (e.g. the mode) to the output."""
    config_class = get_type_hints(rule)["config"]

    # The annotation is the class itself: Dagster builds the op's config schema from it.
    @job_op(job_name, inspect.getdoc(rule), name=op_name, when_lock_held={"rows_changed": 0})
    def apply_rule(
        context: dg.OpExecutionContext, config: config_class, database: Database
    ) -> dg.Output[int]:
        extra = metadata(config) if metadata else {}
        return run_rule_op(context, database, config, rule, **extra)

    return one_op_job(job_name, apply_rule, description)
