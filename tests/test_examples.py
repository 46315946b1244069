"""The run config examples the README shows are valid for their jobs, and each asset's group
is the group `OPS_ENABLE_<GROUP>` switches."""

import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ops_platform.definitions import defs
from ops_platform.schedules.catalog import SCHEDULES, row_for

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "run_config").glob("*.yaml"))
REPO = defs.get_repository_def()


def _job_of(path: Path) -> dg.JobDefinition:
    """The job the example's first line runs (`-j <job>` or `--select <asset>`)."""
    command = path.read_text().splitlines()[0]
    job = re.search(r" -j (\w+)", command)
    if job:
        return REPO.get_job(job.group(1))
    asset = re.search(r"--select (\w+)", command).group(1)
    return REPO.get_job(row_for(asset).job_name)


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_is_valid_for_its_job(path):
    dg.validate_run_config(_job_of(path), yaml.safe_load(path.read_text()))


def test_each_asset_group_is_its_enable_group():
    groups = REPO.asset_graph
    for row in SCHEDULES:
        if row.kind == "asset":
            assert groups.get(dg.AssetKey(row.target)).group_name == row.group, row.target


@pytest.mark.parametrize(
    ("url", "kind"), [("sqlite:///x/app.db", "sqlite"), ("postgresql://u@h/app", "postgres")]
)
def test_kind_tags_name_the_configured_database(url, kind, tmp_path):
    from ops_platform.definitions import build_definitions
    from ops_platform.settings import load_settings

    settings = load_settings({"OPS_DATABASE_URL": url, "OPS_DATA_DIR": str(tmp_path)})
    graph = build_definitions(settings).get_repository_def().asset_graph
    for name in ("stream_rankings", "users"):
        kinds = graph.get(dg.AssetKey(name)).kinds
        assert kind in kinds and not (kinds & ({"sqlite", "postgres"} - {kind})), (name, kinds)
