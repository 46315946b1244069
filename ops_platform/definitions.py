"""The one `Definitions` of the code location.

Every module of `ops_platform.assets` and `ops_platform.jobs` exposes a `defs` object;
they are merged here. Everything the settings govern is built from the settings passed to
`build_definitions`: the sensors of `ops_platform.sensors` (each module's
`build_sensors(settings)`), the schedule table's asset jobs, schedules and catch-up
sensors, the reports' automation sensors, the freshness checks and their sensors, and the
resources. Settings are read from the environment once, here.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import pkgutil
import sys
import zlib
from types import ModuleType

import dagster as dg

from ops_platform import assets as assets_pkg
from ops_platform import jobs as jobs_pkg
from ops_platform import sensors as sensors_pkg
from ops_platform.config_checks import check_config_at_launch, op_defs_of
from ops_platform.executors import build_executor
from ops_platform.held_sensors import hold_sensors_in_windows
from ops_platform.resources import build_resources
from ops_platform.schedules.automation import automation_sensors
from ops_platform.schedules.build import build_schedules, catchup_sensors
from ops_platform.schedules.freshness import freshness_definitions
from ops_platform.settings import Settings, SettingsError, load_settings


def _modules(package: ModuleType) -> list[ModuleType]:
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    ]


def domain_modules() -> list[ModuleType]:
    """Asset and job modules: each exposes a `defs`."""
    return [
        module
        for package in (assets_pkg, jobs_pkg)
        for module in _modules(package)
        if isinstance(getattr(module, "defs", None), dg.Definitions)
    ]


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """Every sensor module's sensors, their default status from `settings` (the group
    switches), like the schedules."""
    sensors = []
    for module in _modules(sensors_pkg):
        if hasattr(module, "build_sensors"):
            sensors.extend(module.build_sensors(settings))
        elif isinstance(getattr(module, "defs", None), dg.Definitions):
            sensors.extend(module.defs.sensors or [])  # a sensor no group switch governs
    return sensors


DATABASE_KINDS = {"postgres", "sqlite"}


def database_kind(settings: Settings):
    """Asset specs' kind tags name the database actually configured, not always Postgres."""
    configured = "sqlite" if settings.database_url.startswith("sqlite") else "postgres"

    def replace(spec: dg.AssetSpec) -> dg.AssetSpec:
        if not spec.kinds & DATABASE_KINDS:
            return spec
        return spec.replace_attributes(kinds=(spec.kinds - DATABASE_KINDS) | {configured})

    return replace


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    domain = dg.Definitions.merge(*(module.defs for module in domain_modules()))
    domain = domain.map_asset_specs(func=database_kind(settings))
    check_config_at_launch(op_defs_of(domain))  # bad run config never becomes a run
    assets_by_name = {}
    for asset in domain.assets or []:
        if isinstance(asset, dg.AssetsDefinition):
            for key in asset.keys:
                assets_by_name[key.to_user_string()] = asset
    op_jobs = {job.name: job for job in domain.jobs or [] if isinstance(job, dg.JobDefinition)}
    asset_jobs, schedules = build_schedules(op_jobs, assets_by_name, settings)
    freshness_checks, freshness_sensors = freshness_definitions(assets_by_name, settings)
    return dg.Definitions.merge(
        domain,
        dg.Definitions(
            jobs=asset_jobs,
            schedules=schedules,
            asset_checks=freshness_checks,
            # One seam: every sensor of a group skips its ticks during a maintenance window
            # (the schedules do the same where they are built).
            sensors=hold_sensors_in_windows(
                [
                    *build_sensors(settings),
                    *catchup_sensors(assets_by_name, settings),
                    *automation_sensors(assets_by_name, settings),
                    *freshness_sensors,
                ],
                settings,
            ),
            resources=build_resources(settings),
            executor=build_executor(settings),
        ),
    )


class BadSettingsError(SettingsError, dg.DagsterError):
    """A `SettingsError` that Dagster's user-code boundary passes through unwrapped: a code
    server's load error (what the webserver shows) then starts with the bad variable, not
    with "Error occurred during the loading of Dagster definitions"."""


SETTINGS_HINT = "ops_platform: bad settings (README.md, section Environment, describes each one)"


def _report_settings_error(previous_hook):
    """An excepthook printing a `SettingsError` as its own lines, without the traceback
    through Dagster's command line and module loader."""

    def hook(kind, error, traceback):
        if isinstance(error, SettingsError):
            print(f"{error}\n{SETTINGS_HINT}", file=sys.stderr)
        else:
            previous_hook(kind, error, traceback)

    return hook


# The commands of Dagster's run worker (`dagster api …`): the process that loads the code
# location to run one run, in a container or subprocess of its own.
RUN_WORKER_COMMANDS = ("execute_run", "resume_run")


def _run_worker_args():
    """The arguments of the run this process is a run worker for, or None elsewhere (a code
    server, the webserver, `dagster job execute`, tests)."""
    import click
    from dagster._serdes import deserialize_value

    context = click.get_current_context(silent=True)
    if context is None or context.info_name not in RUN_WORKER_COMMANDS:
        return None
    if context.parent is None or context.parent.info_name != "api":
        return None
    raw = context.params.get("input_json")
    if not raw and context.params.get("compressed_input_json"):
        raw = zlib.decompress(base64.b64decode(context.params["compressed_input_json"])).decode()
    return deserialize_value(raw) if raw else None


def _fail_the_run_with(error: SettingsError) -> None:
    """In a run worker, fail the run with the settings error itself: its failure event (what
    the UI shows first, what failure alerts quote) then starts with the bad variable, not
    with Dagster's "marked as failed from outside the execution context". Dagster sees the
    run finished and only adds its own "Could not load job definition" after it."""
    from dagster._core.events import JobFailureData, RunFailureReason
    from dagster_shared.error import SerializableErrorInfo

    args = _run_worker_args()
    if args is None:
        return
    ref = getattr(args, "instance_ref", None)
    with dg.DagsterInstance.from_ref(ref) if ref else dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(args.run_id)
        if run is None or run.is_finished:
            return
        info = SerializableErrorInfo(message=str(error), stack=[], cls_name="BadSettingsError")
        failure = JobFailureData(error=info, failure_reason=RunFailureReason.RUN_EXCEPTION)
        instance.report_run_failed(
            run, message=f"{error}\n{SETTINGS_HINT}", job_failure_data=failure
        )


def load_definitions() -> dg.Definitions:
    """The code location from the process environment. Every bad setting is found here, at
    load, all at once. A command that stops on it (`dagster job execute`, `dagster asset
    materialize`) prints them from the first line; a code server reports the same message as
    its load error, which the webserver shows; a run worker fails its run with it."""
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.excepthook = _report_settings_error(sys.excepthook)
        with contextlib.suppress(Exception):  # the load error below is raised whatever happens
            _fail_the_run_with(error)
        raise BadSettingsError(*error.problems) from None
    return build_definitions(settings)


defs = load_definitions()
