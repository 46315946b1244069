"""Every asset of the code location shows its kinds in the UI; every one that runs SQL on the
app database names the database actually configured (SQLite or Postgres)."""

import pytest

from ops_platform.definitions import build_definitions
from ops_platform.settings import load_settings


@pytest.mark.parametrize(
    ("url", "database"), [("sqlite:///x/app.db", "sqlite"), ("postgresql://u@h/app", "postgres")]
)
def test_every_asset_has_its_kinds(url, database, tmp_path):
    settings = load_settings({"OPS_DATABASE_URL": url, "OPS_DATA_DIR": str(tmp_path)})
    graph = build_definitions(settings).get_repository_def().asset_graph
    assets = [graph.get(key) for key in graph.materializable_asset_keys]
    assert assets
    for asset in assets:
        name = asset.key.to_user_string()
        assert asset.kinds, f"{name} has no kinds"
        if "sql" in asset.kinds:
            assert database in asset.kinds, (name, asset.kinds)
            assert not asset.kinds & ({"sqlite", "postgres"} - {database}), (name, asset.kinds)
