"""The Dagster UI in a real browser: headless Chromium (Debian's package) driven by Playwright.

`dagster-webserver` serves the code location on a temporary instance whose run coordinator
launches runs directly (no daemon needed). The test opens the global asset lineage,
filters it to what feeds `user_trust_scores`, sees the app tables `users` and
`reputation_events` upstream of it, clicks the asset, clicks "Materialize", and checks
through the instance that the run succeeded and through the app database that the scores
were written. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, insert, text

from ops_platform.db import schema
from ops_platform.db.engine import utcnow
from ops_platform.db.migrate import upgrade
from tests.e2e._processes import (
    ARTIFACTS,
    BIN,
    Process,
    base_env,
    free_port,
    http_ok,
    keep_logs,
    wait_for,
)

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ARTIFACTS / "browser"
UI_TIMEOUT_MS = 120_000  # generous: the UI compiles the whole asset graph on a busy machine

INSTANCE_YAML = """\
# Runs launched from the UI start at once: no queue, so no daemon is needed.
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
nux:
  enabled: false
"""


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("OPS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"OPS_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _seed_users(app_url: str) -> None:
    """Three users, two with reputation events: their trust scores move off the base."""
    now = utcnow()
    engine = create_engine(app_url)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.users),
            [
                {"id": i, "email": f"user{i}@example.com", "created_at": now - timedelta(days=30)}
                for i in (1, 2, 3)
            ],
        )
        connection.execute(
            insert(schema.reputation_events),
            [
                {
                    "id": 1,
                    "user_id": 1,
                    "kind": "endorsement",
                    "weight": 20,
                    "created_at": now - timedelta(days=1),
                },
                {
                    "id": 2,
                    "user_id": 2,
                    "kind": "report",
                    "weight": -30,
                    "created_at": now - timedelta(days=1),
                },
            ],
        )
    engine.dispose()


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    _need_chromium()
    tmp = tmp_path_factory.mktemp("e2e_browser")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    app_url = f"sqlite:///{tmp / 'app.db'}"
    upgrade(app_url)
    _seed_users(app_url)

    port = free_port()
    env = base_env(home, tmp / "data", app_url)
    process = Process(
        "dagster-webserver",
        [
            str(BIN / "dagster-webserver"),
            "-m",
            "ops_platform.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env,
        tmp / "webserver.log",
    ).start()
    try:
        wait_for(
            "the webserver",
            lambda: http_ok(f"http://127.0.0.1:{port}/server_info"),
            240,
            interval_s=1,
            diagnostics=process.tail,
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield {
                "url": f"http://127.0.0.1:{port}",
                "instance": instance,
                "app_url": app_url,
                "process": process,
            }
    finally:
        process.stop()
        keep_logs([process], "browser")


@pytest.fixture
def page(webserver):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1200})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _show_upstream_of(page, asset: str) -> None:
    """Filter the global lineage to `asset` and what feeds it, with every group expanded."""
    page.locator(".CodeMirror").first.click()
    page.keyboard.type(f'+key:"{asset}"')
    page.keyboard.press("Enter")
    page.get_by_text(asset, exact=True).or_(
        page.locator('[aria-label="unfold_more"]')
    ).first.wait_for()
    for _ in range(10):  # collapsed group nodes carry an "unfold" toggle
        toggles = page.locator('[aria-label="unfold_more"]')
        if toggles.count() == 0:
            break
        toggles.first.click()
        time.sleep(0.5)


def _ui_runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    return [
        record
        for record in instance.get_run_records()
        if dg.AssetKey("user_trust_scores") in (record.dagster_run.asset_selection or ())
    ]


@pytest.mark.timeout(600)
def test_lineage_and_materialize_from_the_ui(webserver, page):
    from playwright.sync_api import expect

    instance, app_url = webserver["instance"], webserver["app_url"]
    page.goto(f"{webserver['url']}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    expect(page.get_by_text("app_database", exact=True).first).to_be_visible()

    _show_upstream_of(page, "user_trust_scores")
    for node in ("users", "reputation_events", "user_trust_scores"):
        expect(page.get_by_text(node, exact=True).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "lineage_users_to_user_trust_scores.png"))

    page.get_by_text("user_trust_scores", exact=True).first.click()
    page.get_by_role("button", name="Materialize").first.click()  # "Materialize selected"
    expect(page.get_by_text(re.compile(r"Launched run"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "materialize_launched.png"))

    [run] = wait_for(
        "the run launched from the UI",
        lambda: _ui_runs(instance),
        60,
        diagnostics=webserver["process"].tail,
    )
    run_id = run.dagster_run.run_id
    finished = wait_for(
        f"run {run_id} to finish",
        lambda: (r := instance.get_run_record_by_id(run_id)).dagster_run.is_finished and r,
        420,
        interval_s=1,
        diagnostics=webserver["process"].tail,
    )
    assert finished.dagster_run.status == dg.DagsterRunStatus.SUCCESS, webserver["process"].tail()

    page.goto(f"{webserver['url']}/runs/{run_id}")
    expect(page.get_by_text("Success").first).to_be_visible()
    # The event log fills in after the header; the picture is nicer with it.
    with contextlib.suppress(Exception):
        page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "run_success.png"))

    engine = create_engine(app_url)
    with engine.connect() as connection:
        scores = dict(connection.execute(text("SELECT id, trust_score FROM users")).all())
    engine.dispose()
    assert set(scores) == {1, 2, 3} and None not in scores.values()
    assert scores[1] > scores[3] > scores[2], scores
