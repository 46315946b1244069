"""`replay_dead_items`: `ops-platform dead replay` as a job, launched from the UI with its
run config. Dead email batches (or payments that expired without a final answer) go back
to pending with their attempts reset; the replay is audited like the command's, with the
run id, and `requested_by` (or the run id) as who asked."""

from typing import Literal

import dagster as dg
from pydantic import Field

from ops_platform import dead_items
from ops_platform.db.engine import utcnow
from ops_platform.jobs._common import job_op, one_op_job
from ops_platform.resources.database import Database


class ReplayDeadItemsConfig(dg.Config):
    queue: Literal["email", "payments"] = Field(description="Which queue's dead items.")
    ids: list[int] = Field(default_factory=list, description="Item ids to replay (or all: true).")
    all: bool = Field(default=False, description="Replay every dead item of the queue.")
    dry_run: bool = Field(
        default=False, description="Report what would be replayed; change nothing."
    )
    requested_by: str = Field(default="", description="Who asks (recorded in the audit table).")


@job_op(
    "replay_dead_items",
    "Put dead items back to pending, attempts reset; audited.",
    alone=False,
    retried=False,  # a retry after the commit would do it twice
)
def replay_dead(context: dg.OpExecutionContext, config: ReplayDeadItemsConfig, database: Database):
    if bool(config.ids) == config.all:
        raise dg.Failure(description="give either `ids: [...]` or `all: true` (not both)")
    now = utcnow()
    result = dead_items.replay_dead(
        database.engine,
        config.queue,
        now,
        None if config.all else config.ids,
        dry_run=config.dry_run,
        requested_by=config.requested_by or f"dagster run {context.run_id}",
        run_id=context.run_id,
    )
    verb = "would replay" if config.dry_run else "replayed"
    context.log.info(
        f"{verb} {result.replayed} dead {config.queue} items"
        + (
            f"; not dead (sent, settled or unknown): {result.skipped[:50]}"
            if result.skipped
            else ""
        )
    )
    return dg.Output(
        result.replayed,
        metadata={
            "queue": config.queue,
            "dry_run": config.dry_run,
            "requested": result.requested,
            "rows_changed": 0 if config.dry_run else result.replayed,
            "would_replay" if config.dry_run else "replayed": result.replayed,
            "skipped": len(result.skipped),
            "still_dead": dead_items.count_dead(database.engine, config.queue, utcnow()),
        },
    )


replay_dead_items = one_op_job("replay_dead_items", replay_dead, __doc__.splitlines()[0])


defs = dg.Definitions(jobs=[replay_dead_items])
