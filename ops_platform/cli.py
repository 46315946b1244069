"""`ops-platform`: db upgrade | seed | demo | status | metrics | dead | pause | resume."""

from __future__ import annotations

import argparse
import sys
import time

from ops_platform.demo_guard import DemoTargetRefused
from ops_platform.settings import SettingsError, load_settings, redact_url


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ops_platform.db.migrate import upgrade, upgrade_sql

    settings = load_settings()
    if args.sql:
        print(upgrade_sql(settings.app_database_url), end="")
        return 0
    tables = upgrade(settings.app_database_url)
    print(f"app database at {redact_url(settings.database_url)} is at head: {len(tables)} tables")
    return 0


def _cmd_db_check(args: argparse.Namespace) -> int:
    from ops_platform.db.check import check_database, render
    from ops_platform.db.engine import make_engine

    settings = load_settings()
    engine = make_engine(settings.app_database_url)
    try:
        findings = check_database(engine)
    finally:
        engine.dispose()
    print(render(findings))
    errors = [f for f in findings if f.level == "error"]
    if errors:
        print(
            f"\n{len(errors)} problem(s) stop jobs: {', '.join(f.where for f in errors)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_db_grants(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from ops_platform.db.engine import is_postgres, make_engine, state_schema
    from ops_platform.db.grants import grant_statements

    settings = load_settings()
    engine = make_engine(settings.app_database_url)
    try:
        if not is_postgres(engine):
            print("ops-platform db grants: roles and grants are a Postgres matter", file=sys.stderr)
            return 2
        with engine.connect() as connection:
            app_schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        for statement in grant_statements(args.role, app_schema, state_schema(engine)):
            print(f"{statement};")
    finally:
        engine.dispose()
    return 0


def _cmd_seed(args: argparse.Namespace) -> int:
    from ops_platform.db.migrate import upgrade
    from ops_platform.db.seed import seed_database
    from ops_platform.demo_guard import check_demo_database, mark_demo_database

    settings = load_settings()
    verdict = check_demo_database(settings, "seed", args.reset_database)
    upgrade(settings.app_database_url)
    started = time.perf_counter()
    try:
        counts = seed_database(
            settings.app_database_url, users=args.users, seed=args.seed, progress=print
        )
    except RuntimeError as refused:  # the schema cannot take the data set: nothing written
        print(f"ops-platform seed: {refused}", file=sys.stderr)
        return 1
    if verdict.mark:
        mark_demo_database(settings.app_database_url)
    total = sum(counts.values())
    print(
        f"seeded {total:,} rows in {time.perf_counter() - started:.1f}s "
        f"({args.users:,} users, seed {args.seed})"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ops_platform.demo import run_demo

    return run_demo(
        users=args.users,
        seed=args.seed,
        reset_database=args.reset_database,
        reset_object_store=args.reset_object_store,
    )


def _cmd_status(args: argparse.Namespace) -> int:
    from ops_platform.status import print_status

    return print_status(
        as_json=args.json,
        last_n=args.last,
        check=args.check,
        database_url=load_settings().app_database_url,
    )


def _cmd_metrics(args: argparse.Namespace) -> int:
    from ops_platform.metrics import run_metrics_command

    if getattr(args, "metrics_command", None) == "rules":
        from ops_platform.alert_rules import render_alert_rules

        sys.stdout.write(render_alert_rules(load_settings().maintenance_max_hours))
        return 0
    return run_metrics_command(
        serve_it=getattr(args, "metrics_command", None) == "serve",
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _cmd_worker(args: argparse.Namespace) -> int:
    from ops_platform.executors import start_worker

    queues = [queue.strip() for queue in args.queues.split(",") if queue.strip()]
    if not queues:
        print("ops-platform worker: --queues names no queue", file=sys.stderr)
        return 2
    return start_worker(
        load_settings(), queues=queues, name=args.name, concurrency=args.concurrency
    )


def _reset_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reset-database",
        metavar="NAME",
        help="erase the data of this app database (its name, repeated) although it is not "
        "the embedded default nor one ops-platform created",
    )


def _cmd_dead_list(args: argparse.Namespace) -> int:
    from ops_platform.dead_items import QUEUES, print_dead_list

    settings = load_settings()
    return print_dead_list(
        settings.database_url, [args.queue] if args.queue else QUEUES, args.limit
    )


def _cmd_dead_replay(args: argparse.Namespace) -> int:
    from ops_platform.dead_items import print_replay

    settings = load_settings()
    return print_replay(
        settings.database_url, args.queue, None if args.all else args.id, dry_run=args.dry_run
    )


def _cmd_pause(args: argparse.Namespace) -> int:
    from ops_platform.maintenance_commands import print_pause

    return print_pause(load_settings(), args)


def _cmd_resume(args: argparse.Namespace) -> int:
    from ops_platform.maintenance_commands import print_resume

    return print_resume(load_settings(), args)


def _maintenance_parsers(commands) -> None:
    pause = commands.add_parser(
        "pause",
        help="open a maintenance window: the schedules and sensors of its groups skip their ticks",
    )
    scope = pause.add_mutually_exclusive_group(required=True)
    scope.add_argument("--groups", help="comma-separated groups (cleanup,email,...)")
    scope.add_argument("--all", action="store_true", help="every group")
    pause.add_argument("--reason", required=True, help="why (the skip message of every tick)")
    end = pause.add_mutually_exclusive_group()
    end.add_argument("--until", help="end, ISO 8601 (UTC without a zone); may pass the maximum")
    end.add_argument(
        "--for", dest="duration", help="length: 90m, 2h, 1h30m (at most OPS_MAINTENANCE_MAX_HOURS)"
    )
    pause.add_argument("--from", dest="starts", help="start of a planned window (default: now)")
    pause.add_argument("--by", help="who (default: OPS_OPERATOR or the OS user)")
    pause.add_argument(
        "--drain",
        action="store_true",
        help="then wait until no run of the paused groups is running or queued (held ones excepted)",
    )
    pause.add_argument(
        "--drain-timeout", type=float, default=900.0, help="seconds --drain waits (default 900)"
    )
    pause.set_defaults(func=_cmd_pause)
    resume = commands.add_parser(
        "resume", help="end the maintenance windows (of some groups); the catch-up follows"
    )
    resume.add_argument("--groups", help="comma-separated groups (default: every window)")
    resume.add_argument("--by", help="who (default: OPS_OPERATOR or the OS user)")
    resume.set_defaults(func=_cmd_resume)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ops-platform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="app database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_commands.add_parser(
        "upgrade",
        help="create what is missing: contract tables, the project's own schema (Alembic)",
    )
    db_upgrade.add_argument(
        "--sql", action="store_true", help="print the DDL it would run, without running it"
    )
    db_upgrade.set_defaults(func=_cmd_db_upgrade)
    db_commands.add_parser(
        "check",
        help="missing tables/columns, unusable types, missing indexes; exit 1 if a job cannot run",
    ).set_defaults(func=_cmd_db_check)
    db_grants = db_commands.add_parser(
        "grants", help="print the least-privilege grants for the jobs' database role"
    )
    db_grants.add_argument("--role", required=True, help="the role the jobs connect as")
    db_grants.set_defaults(func=_cmd_db_grants)

    seed = commands.add_parser("seed", help="fill the app database with a synthetic data set")
    seed.add_argument(
        "--users", type=int, required=True, help="number of users; other tables scale from it"
    )
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    _reset_database_option(seed)
    seed.set_defaults(func=_cmd_seed)

    demo = commands.add_parser(
        "demo", help="seed a small data set and run every job and asset in-process"
    )
    demo.add_argument("--users", type=int, default=300)
    demo.add_argument("--seed", type=int, default=42)
    _reset_database_option(demo)
    demo.add_argument(
        "--reset-object-store",
        metavar="NAME",
        help="let the demo write into and clean this object store (its bucket or folder, "
        "repeated) although it holds objects the demo did not create",
    )
    demo.set_defaults(func=_cmd_demo)

    status = commands.add_parser(
        "status", help="per-job run history and schedules from the Dagster instance"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--last", type=int, default=20, help="runs per job for the success rate")
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 1 naming each stale daemon heartbeat and each overdue schedule (a probe)",
    )
    status.set_defaults(func=_cmd_status)

    metrics = commands.add_parser(
        "metrics", help="Prometheus metrics: print the exposition once, or serve /metrics"
    )
    metrics.set_defaults(func=_cmd_metrics)
    metrics_commands = metrics.add_subparsers(dest="metrics_command")
    serve = metrics_commands.add_parser("serve", help="serve /metrics and /healthz over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9464, help="port (default 9464)")
    metrics_commands.add_parser(
        "rules",
        help="print the Prometheus alerting rules generated from the schedule table "
        "(and OPS_MAINTENANCE_MAX_HOURS)",
    )

    worker = commands.add_parser(
        "worker",
        help="start a Celery worker for OPS_EXECUTOR=celery (wraps `dagster-celery worker start`)",
    )
    worker.add_argument(
        "--queues", default="light,heavy", help="comma-separated queues to take steps from"
    )
    worker.add_argument("--name", default=None, help="worker name (default: a random one)")
    worker.add_argument(
        "--concurrency", type=int, default=None, help="steps run at once (default: CPU count)"
    )
    worker.set_defaults(func=_cmd_worker)

    dead = commands.add_parser("dead", help="dead items of the email, payments and outbox queues")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_commands.add_parser(
        "list", help="dead items, oldest first: id, age, attempts, last error"
    )
    dead_list.add_argument("--queue", choices=("email", "payments", "outbox"))
    dead_list.add_argument("--limit", type=int, default=100, help="items shown per queue")
    dead_list.set_defaults(func=_cmd_dead_list)
    replay = dead_commands.add_parser(
        "replay", help="put dead items back to pending with attempts reset (audited)"
    )
    replay.add_argument("--queue", choices=("email", "payments"), required=True)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, nargs="+", help="item ids")
    which.add_argument("--all", action="store_true", help="every dead item of the queue")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    replay.set_defaults(func=_cmd_dead_replay)
    _maintenance_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "users", 1) is not None and getattr(args, "users", 1) < 1:
        print("ops-platform: --users must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except SettingsError as error:
        print(f"{error}\nops-platform: bad settings, nothing done", file=sys.stderr)
        return 2
    except DemoTargetRefused as error:
        print(f"ops-platform: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
