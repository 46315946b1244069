"""A peer that stops answering fails a run in bounded time with one clear line; it never
hangs it. The app database (a listener that accepts and never answers; a throw-away
Postgres cluster whose backend is frozen with SIGSTOP mid-job), S3, SMTP, Redis, the
payment provider and the alert webhook."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, text

from ops_platform.db.engine import psycopg_url
from ops_platform.db.migrate import upgrade
from ops_platform.jobs.sessions import session_cleanup
from ops_platform.resources.alerts import AlertDeliveryError, Alerts
from ops_platform.resources.database import Database
from ops_platform.resources.mailer import Mailer, MailServerUnavailable
from ops_platform.resources.object_store import TransientObjectStoreError
from ops_platform.resources.payments import PaymentProvider, ProviderUnavailable
from ops_platform.resources.realtime import RealtimePublisher, RealtimeUnavailable
from ops_platform.resources.s3_object_store import S3ObjectStore
from ops_platform.retries import MAX_TRANSIENT_RETRIES
from tests import pg_cluster

# The op's transient retries: every attempt, plus the longest backoff before each retry.
ATTEMPTS = MAX_TRANSIENT_RETRIES + 1
MAX_BACKOFF_S = sum(2**n for n in range(MAX_TRANSIENT_RETRIES))


class Listener:
    """A TCP listener on 127.0.0.1 that accepts every connection and never says a word, until
    `answer_from(port)`: from then on each new connection is relayed to that port (a server
    that comes back). Connections accepted while silent stay silent."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.upstream: int | None = None
        self.held: list[socket.socket] = []
        self.called = threading.Event()  # set at the first connection
        threading.Thread(target=self._accept, daemon=True).start()

    def answer_from(self, port: int) -> None:
        self.upstream = port

    def _accept(self) -> None:
        while True:
            try:
                client = self.server.accept()[0]
            except OSError:
                return
            self.held.append(client)
            self.called.set()
            if self.upstream is not None:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
                self.held.append(upstream)
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_relay, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def silent_port(listener):
    """A TCP listener on 127.0.0.1 that accepts every connection and never says a word."""
    return listener.port


def _timed(call) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        call()
    return caught.value, time.monotonic() - started


def test_dagster_job_execute_against_a_silent_database_fails_in_bounded_time(silent_port, tmp_path):
    connect_timeout = 2
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "OPS_DATABASE_URL": f"postgresql://ops:secret@127.0.0.1:{silent_port}/app",
        "OPS_DATABASE_CONNECT_TIMEOUT": str(connect_timeout),
        "OPS_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
    }
    dagster = Path(sys.executable).parent / "dagster"
    command = [dagster, "job", "execute", "-m", "ops_platform.definitions", "-j", "session_cleanup"]
    started = time.monotonic()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - started
    output = finished.stdout + finished.stderr
    line = f"app database at 127.0.0.1:{silent_port} did not answer within {connect_timeout} s"
    assert finished.returncode != 0
    assert f"{line} (connect timeout) ({ATTEMPTS} attempts in" in output, output
    # The run's set-up retried; reading the failed run's result afterwards waited no more.
    assert output.count(f"transient fault, retry {MAX_TRANSIENT_RETRIES} in") == 1, output
    assert "secret" not in output
    # Every attempt waits the connect timeout, plus the backoffs, plus process start-up.
    assert elapsed < ATTEMPTS * connect_timeout + MAX_BACKOFF_S + 60, elapsed
    print(f"dagster job execute against a silent database ended after {elapsed:.1f} s")


def _seed_sessions(url: str, expired: int, live: int) -> None:
    upgrade(url)
    engine = create_engine(psycopg_url(url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at) "
                "SELECT n, n, 'user', now() - interval '2 days', now() - interval '1 hour', "
                "CASE WHEN n <= :expired THEN now() - interval '1 hour' "
                "ELSE now() + interval '1 day' END "
                "FROM generate_series(1, :total) AS n"
            ),
            {"expired": expired, "total": expired + live},
        )
    engine.dispose()


def _counts(engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE expires_at < now()), "
                "count(*) FILTER (WHERE expires_at >= now()) FROM sessions"
            )
        ).one()


def test_a_frozen_backend_fails_the_run_in_bounded_time_and_the_next_run_finishes():
    expired, live, blocker_id = 20_000, 5_000, 10_000
    connect_timeout, statement_timeout = 2, 3
    if pg_cluster.missing():
        pytest.skip(pg_cluster.missing())
    with pg_cluster.cluster_folder() as root:
        cluster = pg_cluster.start_primary(root)
        frozen: dict = {}
        try:
            _seed_sessions(cluster.url, expired, live)
            monitor = create_engine(psycopg_url(cluster.url))
            database = Database(
                url=cluster.url,
                connect_timeout_s=connect_timeout,
                statement_timeout_s=statement_timeout,
            )

            def freeze_the_job_mid_statement() -> None:
                """Hold one expired row so the job's batch waits on it, freeze (SIGSTOP) the
                backend running that DELETE, then let go of the row."""
                with monitor.connect() as holder:
                    holder.execute(
                        text("SELECT id FROM sessions WHERE id = :id FOR UPDATE"),
                        {"id": blocker_id},
                    )
                    with monitor.connect() as watch:
                        for _ in range(600):
                            pid = watch.execute(
                                text(
                                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND query LIKE 'DELETE FROM sessions%'"
                                )
                            ).scalar()
                            if pid:
                                break
                            watch.commit()  # activity is a snapshot per transaction
                            time.sleep(0.05)
                    os.kill(pid, signal.SIGSTOP)
                    frozen.update(pid=pid, at=time.monotonic())
                    holder.rollback()

            watcher = threading.Thread(target=freeze_the_job_mid_statement)
            watcher.start()
            time.sleep(0.5)  # the row lock is held before the job starts
            # The retry meets the frozen backend's row locks: the batch pacing gives way to
            # them (lock_timeout) and stops cleanly after max_wait_seconds.
            max_wait = 5
            config = {"batch_size": 1000, "confirm_large": True, "max_wait_seconds": max_wait}
            run_config = {"ops": {"cleanup_sessions": {"config": config}}}
            instance = dg.DagsterInstance.ephemeral()
            result = session_cleanup.execute_in_process(
                run_config=run_config,
                resources={"database": database},
                raise_on_error=False,
                instance=instance,
            )
            ended = time.monotonic()
            watcher.join()
            stalled = ended - frozen["at"]
            print(
                f"run ended {stalled:.1f} s after its backend was frozen; success={result.success}"
            )
            # The frozen attempt gives up after statement + connect timeout; a retry gives way
            # to the locks the frozen backend still holds for at most max_wait_seconds.
            answer = statement_timeout + connect_timeout
            assert stalled < ATTEMPTS * (answer + max_wait) + MAX_BACKOFF_S + 10
            logs = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
            assert f"did not answer within {answer} s" in logs
            expired_left, live_left = _counts(monitor)
            assert 0 < expired_left < expired and live_left == live  # batches before it committed

            os.kill(frozen["pid"], signal.SIGCONT)
            database = Database(url=cluster.url)
            again = session_cleanup.execute_in_process(
                run_config=run_config, resources={"database": database}, raise_on_error=False
            )
            assert again.success
            assert _counts(monitor) == (0, live)  # every expired row gone, no live row touched
            monitor.dispose()
        finally:
            if "pid" in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(frozen["pid"], signal.SIGCONT)
            cluster.stop()


def _entry_text(entry) -> str:
    """An event log entry's message and, for a failure, its error."""
    data = getattr(entry.dagster_event, "event_specific_data", None)
    error = getattr(data, "error", None)
    return entry.user_message + ("\n" + error.to_string() if error is not None else "")


def _run_session_cleanup(database: Database) -> tuple[dg.ExecuteInProcessResult, str, float]:
    """session_cleanup in process: its result, its whole event log and how long it took."""
    config = {"batch_size": 1000, "max_wait_seconds": 5}
    instance = dg.DagsterInstance.ephemeral()
    started = time.monotonic()
    result = session_cleanup.execute_in_process(
        run_config={"ops": {"cleanup_sessions": {"config": config}}},
        resources={"database": database},
        raise_on_error=False,
        instance=instance,
    )
    elapsed = time.monotonic() - started
    logs = "\n".join(map(_entry_text, instance.all_logs(result.run_id)))
    return result, logs, elapsed


def test_a_database_silent_at_run_start_fails_the_run_within_the_retry_bound(silent_port):
    """The resource's table check retries like an op does, then gives up with one line."""
    connect_timeout = 2  # libpq's minimum
    database = Database(
        url=f"postgresql://ops:secret@127.0.0.1:{silent_port}/app",
        connect_timeout_s=connect_timeout,
    )
    result, logs, elapsed = _run_session_cleanup(database)
    print(f"run against a database silent at start-up ended after {elapsed:.1f} s")
    assert not result.success
    line = f"app database at 127.0.0.1:{silent_port} did not answer within {connect_timeout} s"
    assert f"{line} (connect timeout) ({ATTEMPTS} attempts in" in logs, logs
    assert f"transient fault, retry {MAX_TRANSIENT_RETRIES} in" in logs
    assert "secret" not in logs
    # Every attempt waited its connect timeout; none waited longer, and backoffs are bounded.
    assert ATTEMPTS * connect_timeout <= elapsed < ATTEMPTS * connect_timeout + MAX_BACKOFF_S + 5


def test_a_database_that_comes_back_during_run_start_lets_the_run_finish(listener):
    """The app database (a throw-away cluster) is down when the run starts: the run's first
    attempts meet a silent listener, the cluster starts a few seconds after the first and the
    listener relays to it; the resource's retries carry the run through and it deletes what
    it should."""
    if pg_cluster.missing():
        pytest.skip(pg_cluster.missing())
    expired, live = 500, 100
    with pg_cluster.cluster_folder() as root:
        cluster = pg_cluster.start_primary(root)
        try:
            _seed_sessions(cluster.url, expired, live)
            with create_engine(cluster.url).connect() as connection:
                connection.execute(text("CHECKPOINT"))  # the stop below loses nothing
            cluster.stop()

            def come_back() -> None:
                listener.called.wait(timeout=120)  # the run's first attempt is under way
                time.sleep(2)
                cluster.start()
                listener.answer_from(cluster.port)

            returning = threading.Thread(target=come_back)
            returning.start()
            url = cluster.url.replace(f":{cluster.port}/", f":{listener.port}/")
            # Each silent attempt waits 3 s: the cluster has until the last one to start.
            database = Database(url=url, connect_timeout_s=3)
            result, logs, elapsed = _run_session_cleanup(database)
            returning.join()
            print(f"run through a database coming back finished after {elapsed:.1f} s")
            assert result.success, logs
            assert "transient fault, retry 1 in" in logs
            monitor = create_engine(psycopg_url(cluster.url))
            assert _counts(monitor) == (0, live)
            monitor.dispose()
        finally:
            cluster.stop()


def _one_line_naming(error: BaseException, peer: str) -> str:
    """The error's message: one line, naming the silent peer, without the URL's secret."""
    message = str(error)
    assert "\n" not in message.strip(), message
    assert peer in message, message
    assert "hunter2" not in message, message
    return message


def test_s3_silent_endpoint_fails_a_call_in_seconds(silent_port, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    store = S3ObjectStore(
        bucket="uploads",
        endpoint_url=f"http://127.0.0.1:{silent_port}",
        region_name="us-east-1",
        max_attempts=1,
        connect_timeout_s=1,
        read_timeout_s=1,
        retry_attempts=2,
        retry_base_seconds=0.1,
        retry_cap_seconds=0.2,
    )
    assert store.client is not None  # built first: loading botocore's model takes a while
    error, elapsed = _timed(lambda: store.stat("uploads/a.txt"))
    # Our attempts × botocore's (max_attempts retries + the first) × the read timeout.
    assert elapsed < 2 * (1 + 1) * 1 + 0.2 + 2, elapsed
    assert isinstance(error, TransientObjectStoreError), error
    message = _one_line_naming(error, f"127.0.0.1:{silent_port}")
    assert "Read timeout" in message and "after 2 attempts" in message


def test_smtp_silent_server_fails_a_send_in_seconds(silent_port):
    message = EmailMessage()
    message["Message-ID"] = "<1@test>"
    message["To"] = "a@example.com"
    for scheme in ("smtp", "smtps"):  # a silent greeting, and a silent TLS handshake
        mailer = Mailer(smtp_url=f"{scheme}://ops:hunter2@127.0.0.1:{silent_port}?timeout=1")
        error, elapsed = _timed(lambda mailer=mailer: mailer.send(message))
        assert isinstance(error, MailServerUnavailable), error
        assert elapsed < 1 + 2, elapsed
        assert "timed out" in _one_line_naming(error, f"SMTP server 127.0.0.1:{silent_port}")


def test_redis_silent_server_fails_a_publish_in_seconds(silent_port):
    publisher = RealtimePublisher(
        url=f"redis://:hunter2@127.0.0.1:{silent_port}/0", socket_timeout_s=1
    )
    error, elapsed = _timed(lambda: publisher.publish_many([("channel", "message")]))
    assert isinstance(error, RealtimeUnavailable), error
    # Each attempt waits the socket timeout; redis-py's backoff is capped at 2 s.
    assert elapsed < (publisher.retries + 1) * (1 + 2) + 2, elapsed
    assert "Timeout" in _one_line_naming(error, f"Redis at redis://127.0.0.1:{silent_port}/0")


def test_payment_provider_silent_fails_a_check_in_seconds(silent_port):
    provider = PaymentProvider(
        url=f"http://127.0.0.1:{silent_port}/hunter2",
        read_timeout_s=1,
        max_retries=1,
        backoff_cap_s=0.1,
    )
    error, elapsed = _timed(lambda: provider.get_status("ref-1"))
    assert isinstance(error, ProviderUnavailable), error
    assert elapsed < 2 * 1 + 0.1 + 2, elapsed
    message = _one_line_naming(error, f"at 127.0.0.1:{silent_port}")
    assert "timed out (no answer within 1 s) after 2 attempts" in message


def test_alert_webhook_silent_fails_in_seconds(silent_port, tmp_path):
    alerts = Alerts(
        webhook_url=f"http://127.0.0.1:{silent_port}/hooks/hunter2",
        log_file=str(tmp_path / "alerts.log"),
        timeout_s=1,
        attempts=2,
        retry_base_s=0.1,
    )
    error, elapsed = _timed(lambda: alerts.send("title", "text"))
    assert isinstance(error, AlertDeliveryError), error
    assert elapsed < 2 * 1 + 0.2 + 2, elapsed
    message = _one_line_naming(error, f"webhook http://127.0.0.1:{silent_port}/…")
    assert "timed out" in message
    assert "title" in (tmp_path / "alerts.log").read_text()  # the log channel still has it
