"""Mails per second from `email_queue` into a local SMTP server (aiosmtpd).

Queues `--batches` due notification batches (3 notifications each) on SQLite and/or
Postgres, then drains the queue with `send_due_emails` — the rule behind the
`email_queue` op — in runs of `--per-run` batches (the job's default is 50), all through
one reused SMTP connection, and prints mails/s. A raw smtplib loop over the same server
gives the ceiling the server and this machine allow. Target: >= 200 mails/s.

    .venv/bin/python -m benchmarks.email [--batches 2000] [--per-run 50] [--databases sqlite,postgres]

The Postgres schema and the SQLite file are its own and are removed at the end.
"""

import argparse
import multiprocessing
import smtplib
import socket
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, insert, select, text
from tabulate import tabulate

from benchmarks import BENCH_POSTGRES_URL
from ops_platform.db import schema
from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    drop_schemas,
    make_engine,
    psycopg_url,
    schema_url,
    utcnow,
)
from ops_platform.db.migrate import upgrade
from ops_platform.jobs.email import send_due_emails
from ops_platform.resources.mailer import Mailer

TARGET_MAILS_PER_S = 200


class CountingHandler:
    def __init__(self, counter, peers):
        self.counter, self.peers = counter, peers

    async def handle_DATA(self, server, session, envelope):
        with self.counter.get_lock():
            self.counter.value += 1
        self.peers.put(session.peer[1])
        return "250 OK"


def _serve(port: int, counter, peers, ready, stop) -> None:
    controller = Controller(CountingHandler(counter, peers), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class SmtpServerProcess:
    """aiosmtpd in a process of its own, as a mail server would be (no shared GIL)."""

    def __init__(self):
        self.port = _free_port()
        self.counter = multiprocessing.Value("i", 0)
        self._peers = multiprocessing.SimpleQueue()
        self._ready, self._stop = multiprocessing.Event(), multiprocessing.Event()
        self._process = multiprocessing.Process(
            target=_serve,
            args=(self.port, self.counter, self._peers, self._ready, self._stop),
            daemon=True,
        )

    def __enter__(self):
        self._process.start()
        if not self._ready.wait(30):
            raise RuntimeError("the SMTP server did not start")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._process.join(10)

    @property
    def count(self) -> int:
        return self.counter.value

    def connections(self) -> int:
        ports = set()
        while not self._peers.empty():
            ports.add(self._peers.get())
        return len(ports)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fill_queue(engine, batches: int) -> None:
    now = utcnow()
    users = [{"id": i, "email": f"user{i}@example.com"} for i in range(1, batches + 1)]
    notes, queue = [], []
    for i in range(1, batches + 1):
        ids = [3 * i - 2, 3 * i - 1, 3 * i]
        notes += [
            {"id": n, "user_id": i, "title": f"Notification {n}", "body": "Something happened " * 5}
            for n in ids
        ]
        queue.append(
            {
                "id": i,
                "user_id": i,
                "notification_ids": ids,
                "status": "pending",
                "scheduled_for": now,
                "attempts": 0,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(schema.users), users)
        connection.execute(insert(schema.notifications), notes)
        connection.execute(insert(schema.notification_email_queue), queue)


def drain(engine, url: str, per_run: int) -> tuple[int, float, int]:
    """(mails sent, seconds, runs) draining the whole queue through one connection."""
    sent, runs = 0, 0
    started = time.perf_counter()
    with Mailer(smtp_url=url) as mailer:
        while True:
            result = send_due_emails(engine, mailer, utcnow(), max_batches=per_run)
            if not result.claimed:
                break
            sent += result.sent
            runs += 1
    return sent, time.perf_counter() - started, runs


def smtp_ceiling(url_port: int, count: int) -> float:
    """Raw smtplib sends of a prebuilt message over one connection: mails/s."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "ops@localhost",
        "user@example.com",
        "ceiling",
    )
    message.set_content("Something happened " * 15)
    with smtplib.SMTP("127.0.0.1", url_port) as client:
        started = time.perf_counter()
        for number in range(count):
            del message["Message-ID"]
            message["Message-ID"] = f"<ceiling-{number}@ops-platform>"
            client.send_message(message)
        return count / (time.perf_counter() - started)


def bench_database(
    name: str, batches: int, per_run: int, url: str, server: "SmtpServerProcess"
) -> tuple:
    admin = None
    schema_name = None
    if name == "postgres":
        schema_name = f"bench_email_{uuid.uuid4().hex[:8]}"
        admin = create_engine(psycopg_url(BENCH_POSTGRES_URL))
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema_name}"'))
        base = psycopg_url(BENCH_POSTGRES_URL)
        db_url = schema_url(base, schema_name)
        folder = None
    else:
        folder = tempfile.TemporaryDirectory(prefix="bench_email_")
        db_url = f"sqlite:///{Path(folder.name) / 'app.db'}"
    try:
        upgrade(db_url)
        engine = make_engine(db_url, statement_timeout_s=LONG_STATEMENT_TIMEOUT_S)
        fill_queue(engine, batches)
        before = server.count
        sent, seconds, runs = drain(engine, url, per_run)
        with engine.connect() as connection:
            unsent = connection.execute(
                select(func.count())
                .select_from(schema.notification_email_queue)
                .where(schema.notification_email_queue.c.status != "sent")
            ).scalar_one()
        engine.dispose()
        received = server.count - before
        return (
            name,
            batches,
            per_run,
            runs,
            sent,
            received,
            unsent,
            server.connections(),
            f"{seconds:.2f}",
            f"{sent / seconds:,.0f}",
        )
    finally:
        if admin is not None:
            with admin.begin() as connection:
                drop_schemas(connection, schema_name)
            admin.dispose()
        if folder is not None:
            folder.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--per-run", type=int, default=50)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args(argv)

    rows = []
    with SmtpServerProcess() as server:
        url = f"smtp://127.0.0.1:{server.port}"
        ceiling = smtp_ceiling(server.port, min(args.batches, 1000))
        server.connections()
        for name in args.databases.split(","):
            rows.append(bench_database(name.strip(), args.batches, args.per_run, url, server))
            print(f"  {name}: done")
    print(
        tabulate(
            rows,
            headers=(
                "database",
                "batches",
                "per run",
                "runs",
                "sent",
                "received",
                "left unsent",
                "SMTP connections",
                "seconds",
                "mails/s",
            ),
            tablefmt="github",
        )
    )
    print(f"raw smtplib ceiling on this server and machine: {ceiling:,.0f} mails/s")
    ok = all(float(row[-1].replace(",", "")) >= TARGET_MAILS_PER_S and row[6] == 0 for row in rows)
    print(
        f"target >= {TARGET_MAILS_PER_S} mails/s with every batch sent: {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
