"""The `database` resource: one engine per run on the app database."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from ops_platform.db.engine import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    database_peer,
    is_postgres,
    make_engine,
    silent_database_message,
    state_table,
    utcnow,
)
from ops_platform.db.faults import fault_line, permanent_database_fault
from ops_platform.retries import StillTransient, first_line, retry_transient_faults
from ops_platform.schedules.catalog import rows_for


class DatabaseMisconfigured(RuntimeError):
    """The app database cannot be used until a setting is fixed (see `db.faults`)."""


class DatabaseUnavailable(RuntimeError):
    """The app database stayed unreachable or silent through every retry of a run's set-up."""


class JobAlreadyRunning(RuntimeError):
    """Another run holds the singleton lock of this job."""


def advisory_lock_key(schema: str, job: str) -> int:
    """The Postgres advisory-lock key of `job` on the app tables in `schema`: two
    deployments (or test schemas) on one database never block each other."""
    digest = hashlib.blake2b(f"{schema}\x00{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def run_max_runtime_s(run: dg.DagsterRun | None) -> float | None:
    """The run's maximum runtime: its `dagster/max_runtime` tag (from the schedule table),
    else the table's row of its job or of the assets it materializes."""
    if run is None:
        return None
    tagged = run.tags.get("dagster/max_runtime")
    if tagged:
        return float(tagged)
    targets = [run.job_name, run.job_name.removesuffix("_job")]
    targets += [key.to_user_string() for key in run.asset_selection or ()]
    runtimes = [row.max_runtime_s for target in targets for row in rows_for(target)]
    return max(runtimes) if runtimes else None


def _run_targets(context: dg.InitResourceContext) -> set[str]:
    """The job and assets of the run the resource is set up for (none outside a run)."""
    run = getattr(context, "run", None)
    if run is None:
        return set()
    names = {run.job_name, run.job_name.removesuffix("_job")}
    names |= {key.path[-1] for key in run.asset_selection or ()}
    return names


def _run_is_over(context: dg.InitResourceContext) -> bool:
    """Whether the run is already finished: `execute_job` (and `dagster job execute`) builds
    the resources again after a run only to read its outputs. Nothing runs then, so nothing
    is checked: a database that failed the run is not waited for a second time."""
    run = getattr(context, "run", None)
    instance = getattr(context, "instance", None)
    if run is None or instance is None:
        return False
    current = instance.get_run_by_id(run.run_id)
    return current is not None and current.is_finished


class Database(dg.ConfigurableResource):
    """SQLAlchemy access to the app database (`OPS_DATABASE_URL`).

    On Postgres every connection has a connect timeout, TCP keepalives and a statement
    timeout (`statement_timeout_s`, never longer than the run's own max runtime); a server
    that stays silent past them fails the run with one line naming it (see `make_engine`).
    """

    url: str
    # The project's own schema; None: the one the URL names, else `ops`.
    state_schema: str | None = None
    connect_timeout_s: float = Field(default=DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    statement_timeout_s: float = Field(default=DEFAULT_STATEMENT_TIMEOUT_S, gt=0)

    _engine: Engine | None = PrivateAttr(default=None)

    def _make_engine(self, max_runtime_s: float | None = None) -> Engine:
        statement_timeout_s = min(self.statement_timeout_s, max_runtime_s or math.inf)
        return make_engine(
            self.url,
            state_schema=self.state_schema,
            connect_timeout_s=self.connect_timeout_s,
            statement_timeout_s=statement_timeout_s,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = self._make_engine(run_max_runtime_s(context.run))
        if _run_is_over(context):
            return
        targets = _run_targets(context)
        if targets:
            self._check_tables(context, targets)
        self._note_maintenance_window(context)

    def _check_tables(self, context: dg.InitResourceContext, targets: set[str]) -> None:
        """A short schema stops the run here with table.column and the job named, instead of
        a raw SQL error half way through. A database briefly unreachable here gets the ops'
        transient retries; one that stays so fails the run within their bound."""
        from ops_platform.db.check import require_tables_for

        started = time.monotonic()
        warn = context.log.warning if context.log is not None else lambda _message: None
        try:
            retry_transient_faults(lambda: require_tables_for(self._engine, targets), warn)
        except StillTransient as fault:
            elapsed = time.monotonic() - started
            raise DatabaseUnavailable(self._unavailable_line(fault, elapsed)) from None
        except DBAPIError as error:
            meaning = permanent_database_fault(error)
            if meaning is None:
                raise
            # No retry fixes it: one line naming the setting, not a driver trace.
            raise DatabaseMisconfigured(fault_line(error, meaning)) from None

    def _unavailable_line(self, fault: StillTransient, elapsed: float) -> str:
        """`app database at host:port did not answer within N s`, N the connect timeout,
        with the attempts made and the driver's last word when it said something else."""
        last = first_line(fault.last)
        tried = f"{fault.attempts} attempts in {elapsed:.0f} s"
        if self.url.startswith("sqlite"):  # a file locked by another writer all along
            return f"app database {self.url}: {last} ({tried})"
        line = silent_database_message(database_peer(self.url), self.connect_timeout_s)
        if last.startswith(line):
            return f"{last} ({tried})"
        return f"{line} ({tried}; last: {last[:200]})"

    def _note_maintenance_window(self, context: dg.InitResourceContext) -> None:
        """A run of a group a maintenance window holds, launched by hand during the window
        (the window holds the queued ones), runs: the operator chose it. Its log says so."""
        run = getattr(context, "run", None)
        group = run.tags.get("ops/group") if run is not None else None
        if not group or context.log is None:
            return
        from ops_platform.db.engine import utcnow
        from ops_platform.maintenance import active_windows, paused_groups

        now = utcnow()
        try:
            window = paused_groups(active_windows(self._engine, now), now).get(group)
        except Exception:  # no window table yet, or unreadable: nothing to say
            return
        if window is not None:
            context.log.warning(
                f"{window.describe()} holds the group {group}; this run was launched anyway "
                "(by hand during the window) and runs"
            )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        # Outside a run (tests, CLI) the engine is created on first use.
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.engine)

    def begin(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection inside one transaction, committed on exit."""
        return self.engine.begin()

    def connect(self) -> contextlib.AbstractContextManager[Connection]:
        return self.engine.connect()

    @contextlib.contextmanager
    def job_lock(self, name: str, lease: timedelta = timedelta(hours=6)) -> Iterator[None]:
        """Hold the singleton lock of `name` for the duration of the block.

        Postgres: a session-level advisory lock, released if the process dies, keyed by the
        app tables' schema and the job, so deployments sharing one database each have their own.
        SQLite: a lease row in the project's `job_locks`; a crashed holder's lease expires.
        Raises `JobAlreadyRunning` if another run holds it.
        """
        if self.is_postgres:
            with self.engine.connect() as connection:
                schema = connection.execute(text("SELECT current_schema()")).scalar() or ""
                key = advisory_lock_key(schema, name)
                got = connection.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": key}
                ).scalar()
                connection.commit()
                if not got:
                    raise JobAlreadyRunning(
                        f"{name} is already running on schema {schema!r} (advisory lock held)"
                    )
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    connection.commit()
            return

        holder = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        now = utcnow()
        locks = state_table(self.engine, "job_locks")
        with self.engine.begin() as connection:
            taken = connection.execute(
                text(
                    f"INSERT INTO {locks} AS held (name, holder, acquired_at, expires_at) "
                    "VALUES (:name, :holder, :now, :expires) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                    "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
                    "WHERE held.expires_at < :now"
                ),
                {"name": name, "holder": holder, "now": now, "expires": now + lease},
            ).rowcount
        if not taken:
            raise JobAlreadyRunning(f"{name} is already running (lease held in {locks})")
        try:
            yield
        finally:
            with self.engine.begin() as connection:
                connection.execute(
                    text(f"DELETE FROM {locks} WHERE name = :name AND holder = :holder"),
                    {"name": name, "holder": holder},
                )
