"""The rules of `secret_rotation`, applied in paced batches.

- An `active` secret with `expires_at <= now` that is the latest version of its name gets a
  new version: `version + 1`, a fresh value from `secrets.token_urlsafe`, status `active`,
  expiring after `validity`. The old version becomes `retiring` (`rotated_at = now`,
  `retire_after = now + grace`, kept in the project's `secret_retirements`): the app
  still accepts it during the grace period.
- An expired `active` secret that already has a newer version only becomes `retiring`.
- A `retiring` secret past `retire_after` becomes `retired` (a version made `retiring`
  by someone else, with no `retire_after`, falls back to `rotated_at + grace`).
- Bad rows are skipped and counted by kind (`SKIPPED_WHERE`).

Concurrency: claiming an old version is a conditional `UPDATE … WHERE status = 'active'`
and the new version is inserted only where its (name, version) does not exist yet, so two
runs can never both rotate one secret; each batch is one short transaction, so a crash half
way leaves every finished secret consistent and a re-run does the rest.
"""

import secrets as secrets_module
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, insert, select, text

from ops_platform.db import schema
from ops_platform.db.batching import SAMPLE_SIZE
from ops_platform.db.engine import state_table, upsert
from ops_platform.db.pacing import run_paced
from ops_platform.jobs._common import MAX_LISTED, count_done
from ops_platform.jobs._gate import Preview
from ops_platform.jobs._secret_cipher import SecretCipher
from ops_platform.log_line import LogLine

_LATEST_EXPIRED = (
    "s.status = 'active' AND s.expires_at <= :now "
    "AND NOT EXISTS (SELECT 1 FROM secrets n WHERE n.name = s.name AND n.version > s.version)"
)
_SUPERSEDED = (
    "s.status = 'active' AND s.expires_at <= :now "
    "AND EXISTS (SELECT 1 FROM secrets n WHERE n.name = s.name AND n.version > s.version)"
)
# The end of a retiring version's grace period is the project's own state, kept beside the
# app's row in `secret_retirements`; {retire_after} is that lookup.
_RETIRE_AFTER = "(SELECT r.retire_after FROM {retirements} r WHERE r.secret_id = s.id)"
_RETIRABLE = (
    "s.status = 'retiring' AND ({retire_after} <= :now "
    "OR ({retire_after} IS NULL AND s.rotated_at <= :fallback_cutoff))"
)
_RETIRING_WITHOUT_DATES = (
    "s.status = 'retiring' AND {retire_after} IS NULL AND s.rotated_at IS NULL"
)


# Rows no rule can judge: skipped, and counted by kind as `skipped_<kind>`.
SKIPPED_WHERE = {
    "unknown_status": "s.status IS NULL OR s.status NOT IN ('active', 'retiring', 'retired')",
    "null_expiry": "s.status = 'active' AND s.expires_at IS NULL",
    "retiring_without_dates": _RETIRING_WITHOUT_DATES,
}


@dataclass
class RotationResult:
    rotated: int = 0  # secrets that got a new version
    new_versions: int = 0  # rows inserted (less than rotated only under a race)
    superseded: int = 0  # expired active rows that already had a newer version
    retired: int = 0
    skipped: Counter = field(default_factory=Counter)  # bad rows by kind of SKIPPED_WHERE
    batches: int = 0
    longest_transaction_s: float = 0.0
    names_rotated: list[str] = field(default_factory=list)
    sample_ids: list[int] = field(default_factory=list)  # dry runs: a few of the rows matched

    @property
    def rows_changed(self) -> int:
        return self.rotated + self.new_versions + self.superseded + self.retired

    def preview(self) -> Preview:
        """For the blast-radius gate: existing rows updated; new versions are added rows."""
        updated = self.rotated + self.superseded + self.retired
        return Preview(
            rows=self.rows_changed,
            tables={"secrets": updated} if updated else {},
            samples={"secrets": self.sample_ids} if self.sample_ids else {},
        )


def _with_retire_after(bind, where: str) -> str:
    lookup = _RETIRE_AFTER.format(retirements=state_table(bind, "secret_retirements"))
    return where.format(retire_after=lookup)


def _record_retire_after(connection: Connection, ids: list[int], retire_after: datetime) -> None:
    rows = [{"secret_id": id_, "retire_after": retire_after} for id_ in ids]
    for start in range(0, len(rows), 1000):
        upsert(connection, schema.secret_retirements, rows[start : start + 1000], ("secret_id",))


def _count(connection: Connection, where: str, params: dict) -> int:
    return connection.execute(
        text(f"SELECT count(*) FROM secrets s WHERE {where}"), params
    ).scalar_one()


def _insert_ignoring_duplicates(connection: Connection, rows: list[dict]) -> int:
    """Insert new versions; a (name, version) that exists already is left alone. Checked
    with NOT EXISTS, not ON CONFLICT: the app's own table need not have that unique key."""
    if not rows:
        return 0
    s = schema.secrets
    columns = list(rows[0])
    statement = insert(s).from_select(
        columns,
        select(*(bindparam(name, type_=s.c[name].type) for name in columns)).where(
            ~select(s.c.id)
            .where(s.c.name == bindparam("name"), s.c.version == bindparam("version"))
            .exists()
        ),
    )
    statement = statement.returning(s.c.id)  # counted by RETURNING: rowcount is not reliable
    return sum(len(connection.execute(statement, row).all()) for row in rows)


def _paced_figures(pacer, label: str, result: RotationResult) -> None:
    mine = [t for t in pacer.timings if t.label == label]
    result.batches += len(mine)
    result.longest_transaction_s = max([result.longest_transaction_s, *(t.seconds for t in mine)])


def _update_in_batches(
    engine: Engine,
    set_sql: str,
    where: str,
    params: dict,
    batch_size: int,
    result: RotationResult,
    label: str,
    counter: str,
    retire_after: datetime | None = None,
) -> None:
    """Update the matching secrets in paced batches, counting them in `result.<counter>`; with
    `retire_after`, record it for each."""

    def work(connection: Connection, size: int) -> tuple[int, int]:
        ids = (
            connection.execute(
                text(
                    f"UPDATE secrets SET {set_sql} WHERE id IN "
                    f"(SELECT s.id FROM secrets s WHERE {where} ORDER BY s.id "
                    "LIMIT :batch_size) RETURNING id"
                ),
                {**params, "batch_size": size},
            )
            .scalars()
            .all()
        )
        if retire_after is not None:
            _record_retire_after(connection, ids, retire_after)
        return len(ids), size

    def commit(done: tuple[int, int]) -> tuple[int, bool]:
        count, _ = done
        count_done(result, **{counter: count})
        return count, count > 0  # a concurrent run may take part of a batch: go on until none

    _paced_figures(run_paced(engine, "secrets", label, batch_size, work, commit), label, result)


def rotate_secrets(
    engine: Engine,
    now: datetime,
    *,
    grace: timedelta = timedelta(hours=24),
    validity: timedelta = timedelta(days=90),
    batch_size: int = 500,
    dry_run: bool = False,
    cipher: SecretCipher | None = None,
    new_value: Callable[[], str] = lambda: secrets_module.token_urlsafe(32),
    progress: LogLine | None = None,
) -> RotationResult:
    """Apply the three rules; a dry run counts what a real run would change."""
    result = RotationResult()
    params = {"now": now, "fallback_cutoff": now - grace}
    with engine.connect() as connection:
        for kind, where in SKIPPED_WHERE.items():
            result.skipped[kind] = _count(connection, _with_retire_after(connection, where), {})
        retirable = _with_retire_after(connection, _RETIRABLE)
        if dry_run:
            result.rotated = _count(connection, _LATEST_EXPIRED, params)
            result.new_versions = result.rotated
            result.superseded = _count(connection, _SUPERSEDED, params)
            result.retired = _count(connection, retirable, params)
            result.sample_ids = list(
                connection.execute(
                    text(
                        f"SELECT s.id FROM secrets s WHERE ({_LATEST_EXPIRED}) OR ({_SUPERSEDED}) "
                        f"OR ({retirable}) ORDER BY s.id LIMIT {SAMPLE_SIZE}"
                    ),
                    params,
                ).scalars()
            )
            result.names_rotated = list(
                connection.execute(
                    text(
                        f"SELECT s.name FROM secrets s WHERE {_LATEST_EXPIRED} ORDER BY s.name LIMIT {MAX_LISTED}"
                    ),
                    params,
                ).scalars()
            )
            return result
    if cipher is None:
        raise ValueError("rotate_secrets needs a cipher unless dry_run")

    # Retire first what is past its grace period, so this run's rotations (retire_after in
    # the future) are not touched and a second run changes nothing.
    _update_in_batches(
        engine,
        "status = 'retired'",
        retirable,
        params,
        batch_size,
        result,
        "secrets_retired",
        "retired",
    )
    if result.retired and progress:
        progress(f"secret_rotation: retired {result.retired} versions past their grace period")
    retire_after = now + grace
    _update_in_batches(
        engine,
        "status = 'retiring', rotated_at = :now",
        _SUPERSEDED,
        params,
        batch_size,
        result,
        "secrets_superseded",
        "superseded",
        retire_after=retire_after,
    )

    def claim_and_rotate(connection: Connection, size: int):
        # Claim: only a row still 'active' can be claimed, so a concurrent run that
        # picked the same rows gets none of them.
        claimed = connection.execute(
            text(
                "UPDATE secrets SET status = 'retiring', rotated_at = :now "
                f"WHERE status = 'active' AND id IN (SELECT s.id FROM secrets s WHERE {_LATEST_EXPIRED} "
                "ORDER BY s.id LIMIT :batch_size) RETURNING name, version, id"
            ),
            {**params, "batch_size": size},
        ).all()
        _record_retire_after(connection, [id_ for _, _, id_ in claimed], retire_after)
        rows = [
            {
                "name": name,
                "version": version + 1,
                "status": "active",
                "value_ciphertext": cipher.encrypt(new_value()),
                "created_at": now,
                "expires_at": now + validity,
            }
            for name, version, _ in claimed
        ]
        inserted = sum(
            _insert_ignoring_duplicates(connection, rows[start : start + 1000])
            for start in range(0, len(rows), 1000)
        )
        return claimed, inserted, size

    def rotated(done) -> tuple[int, bool]:
        claimed, inserted, size = done
        count_done(result, new_versions=inserted, rotated=len(claimed))
        if len(result.names_rotated) < MAX_LISTED:
            result.names_rotated.extend(
                sorted(name for name, _, _ in claimed)[: MAX_LISTED - len(result.names_rotated)]
            )
        # A concurrent run may claim part of a batch first: go on until a batch claims none.
        return len(claimed), bool(claimed)

    pacer = run_paced(
        engine,
        "secrets",
        "secrets_rotated",
        batch_size,
        claim_and_rotate,
        rotated,
        progress=progress,
        verb="rotated",
    )
    _paced_figures(pacer, "secrets_rotated", result)
    return result
