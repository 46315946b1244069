"""What a job's past runs reported, read back from the Dagster instance."""

import dagster as dg


def metadata_value(entry):
    return getattr(entry, "value", entry)


def run_output_metadata(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """The metadata of each output of the run, as plain values."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT).records
    return [
        {
            key: metadata_value(value)
            for key, value in record.event_log_entry.dagster_event.step_output_data.metadata.items()
        }
        for record in records
    ]


def rows_changed_of(outputs: list[dict]) -> int | None:
    """Sum of `rows_changed` over a run's outputs; None when the run does not tell (no such
    metadata, a dry run, or a run that stood down because another held the lock)."""
    total, found = 0, False
    for metadata in outputs:
        if metadata.get("dry_run") or "skipped" in metadata:
            return None
        if "rows_changed" in metadata:
            total += int(metadata["rows_changed"] or 0)
            found = True
    return total if found else None


def run_rows_changed(instance: dg.DagsterInstance, run_id: str) -> int | None:
    return rows_changed_of(run_output_metadata(instance, run_id))


def recent_rows_changed(
    instance: dg.DagsterInstance, job_name: str, scope: str, runs: int, lookback: int
) -> list[int]:
    """`rows_changed` of the job's latest successful, complete runs with the same scope (e.g.
    the same session_cleanup mode), newest first; at most `runs` of the last `lookback`."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=lookback
    )
    figures = []
    for record in records:
        outputs = run_output_metadata(instance, record.dagster_run.run_id)
        changed = rows_changed_of(outputs)
        if changed is None or any(m.get("stopped") for m in outputs):
            continue  # a run stopped early by the database did not do its usual amount
        if any(m.get("gate_scope", "") != scope for m in outputs):
            continue
        figures.append(changed)
        if len(figures) >= runs:
            break
    return figures
