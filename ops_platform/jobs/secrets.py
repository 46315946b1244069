"""`secret_rotation` (daily 05:00): rotate secrets past their expiry.

An expired `active` secret gets a new version (a fresh value, encrypted) and the old one
becomes `retiring`: the app still accepts it for `grace_hours`, then it becomes `retired`.
The rules, their batches and the bad rows they skip are in `_secret_rotation`; the key the
values are encrypted with, from `OPS_SECRETS_KEY` or the data folder's key file, is in
`_secret_cipher`. Values are never logged and never put in metadata.
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.engine import utcnow
from ops_platform.db.pacing import use_pacer
from ops_platform.jobs._common import GuardedJobConfig, add_earlier_counts, job_op, one_op_job
from ops_platform.jobs._gate import check_blast_radius, pacer_for
from ops_platform.jobs._secret_cipher import load_cipher
from ops_platform.jobs._secret_rotation import SKIPPED_WHERE, RotationResult, rotate_secrets
from ops_platform.resources.database import Database
from ops_platform.resources.folders import Folders


class SecretRotationConfig(GuardedJobConfig):
    grace_hours: float = Field(
        default=24, gt=0, description="How long a rotated-out version stays valid."
    )
    validity_days: float = Field(default=90, gt=0, description="Expiry of a new version.")


def rotation_metadata(
    result: RotationResult, config: SecretRotationConfig, key_source: str
) -> dict:
    metadata = {
        "dry_run": config.dry_run,
        "secrets_rotated": result.rotated,
        "new_versions": result.new_versions,
        "superseded_to_retiring": result.superseded,
        "retired": result.retired,
        **{f"skipped_{kind}": result.skipped[kind] for kind in SKIPPED_WHERE},
        "rows_matched": result.rows_changed,
        "rows_changed": 0 if config.dry_run else result.rows_changed,
        "batches": result.batches,
        "longest_transaction_s": round(result.longest_transaction_s, 3),
        "key_source": key_source,
    }
    if result.names_rotated:
        metadata["names_rotated"] = ", ".join(result.names_rotated)
    return metadata


@job_op(
    "secret_rotation",
    "Rotate expired secrets: new encrypted version, old one retiring, then retired.",
    when_lock_held={"rows_changed": 0},
)
def rotate_expired_secrets(
    context: dg.OpExecutionContext,
    config: SecretRotationConfig,
    database: Database,
    folders: Folders,
) -> dg.Output[int]:
    gate, pacer = pacer_for(context, config)
    now = utcnow()
    options = {
        "grace": timedelta(hours=config.grace_hours),
        "validity": timedelta(days=config.validity_days),
        "batch_size": config.batch_size,
    }
    # The dry run is the blast-radius gate's preview; a real run follows if it passes.
    result = rotate_secrets(database.engine, now, dry_run=True, **options)
    gate_metadata = check_blast_radius(context, database.engine, config, gate, result.preview())
    key_source = "not needed (dry run)"
    if not config.dry_run:
        cipher = load_cipher(data_dir=Path(folders.data_dir))
        key_source = cipher.source
        with use_pacer(pacer):
            result = rotate_secrets(
                database.engine, now, cipher=cipher, progress=context.log.info, **options
            )
    retried = add_earlier_counts(context, result)
    context.log.info(
        f"secret_rotation {'would rotate' if config.dry_run else 'rotated'} {result.rotated} secrets, "
        f"{result.superseded} superseded versions to retiring, {result.retired} retired; "
        f"{result.skipped.total()} bad rows skipped"
    )
    metadata = {
        **rotation_metadata(result, config, key_source),
        **gate_metadata,
        **pacer.summary(),
        **job_bad_rows(context, database.engine),
        **retried,
    }
    if pacer.stopped:
        context.log.warning(f"secret_rotation {pacer.stopped.describe()}; the next run continues")
    return dg.Output(metadata["rows_changed"], metadata=metadata)


secret_rotation = one_op_job(
    "secret_rotation", rotate_expired_secrets, "Daily: rotate expired secrets with a grace period."
)


defs = dg.Definitions(jobs=[secret_rotation])
