"""deploy/prometheus/alerts.yml is generated from the schedule table and stays so; Prometheus'
own promtool accepts it and its unit tests (alerts.test.yml) pass."""

import subprocess
from pathlib import Path

from ops_platform.alert_rules import alert_rules, render_alert_rules
from ops_platform.schedules.overdue import missed_run_window_s, scheduled_rows
from tests.prometheus_tools import prometheus_tool

RULES_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def test_alerts_file_is_generated_from_the_schedule_table():
    assert (RULES_DIR / "alerts.yml").read_text() == render_alert_rules(), (
        "deploy/prometheus/alerts.yml is out of date: "
        "ops-platform metrics rules > deploy/prometheus/alerts.yml"
    )


def test_one_missed_run_rule_per_schedule_with_its_window():
    runs = next(g for g in alert_rules()["groups"] if g["name"] == "ops_platform_runs")["rules"]
    missed = {r["labels"]["schedule"]: r["expr"] for r in runs if r["alert"] == "OpsMissedRun"}
    rows = scheduled_rows()
    assert set(missed) == {row.name for row in rows}
    for row in rows:
        expr = missed[row.name]
        assert f'ops_job_last_success_timestamp_seconds{{job="{row.job_name}"}}' in expr
        assert f'{{schedule="{row.name}"}})) > {missed_run_window_s(row)} and' in expr


def test_promtool_check_rules():
    result = subprocess.run(
        [prometheus_tool("promtool"), "check", "rules", str(RULES_DIR / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules():
    result = subprocess.run(
        [prometheus_tool("promtool"), "test", "rules", "alerts.test.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_maintenance_rules_follow_the_maximum_window(monkeypatch, capsys):
    import yaml

    from ops_platform.cli import main

    def maintenance(document):
        group = next(g for g in document["groups"] if g["name"] == "ops_platform_maintenance")
        return {rule["alert"]: rule for rule in group["rules"]}

    rules = maintenance(alert_rules())
    assert rules["OpsMaintenanceActive"]["labels"]["severity"] == "info"
    assert rules["OpsMaintenanceTooLong"]["for"] == "24h"
    # `ops-platform metrics rules` uses the deployment's OPS_MAINTENANCE_MAX_HOURS.
    monkeypatch.setenv("OPS_MAINTENANCE_MAX_HOURS", "6")
    assert main(["metrics", "rules"]) == 0
    rules = maintenance(yaml.safe_load(capsys.readouterr().out))
    assert rules["OpsMaintenanceTooLong"]["for"] == "6h"
    assert "over 6 hours" in rules["OpsMaintenanceTooLong"]["annotations"]["summary"]
