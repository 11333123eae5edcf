"""The provisioned dashboards: generated from one script, fixed uids, the provisioned datasource."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

from tests.observability.dashboards import DASHBOARDS, dashboards, load, panel_queries

GRAFANA = DASHBOARDS.parent


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_are_what_the_builder_writes() -> None:
    rendered = _builder().render()
    assert sorted(rendered) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, (
            f"run python deploy/grafana/build_dashboards.py ({name})"
        )


def test_three_dashboards_with_fixed_uids() -> None:
    uids = {board["uid"] for board in dashboards().values()}
    assert uids == {"kamwatch-pipeline", "kamwatch-portfolio", "kamwatch-alerting"}
    titles = [p["title"] for p in load("pipeline-health.json")["panels"]]
    for word in ("lag", "Latency", "Dead letters", "Parked", "per second"):
        assert any(word in t for t in titles), f"pipeline health has no {word} panel"


def test_panels_use_the_provisioned_prometheus_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for board in dashboards().values():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"], f"{board['uid']}/{panel['title']} has no query"
    assert len(panel_queries()) >= 30


def test_dashboard_provider_reads_the_folder_compose_mounts(repo_root: Path) -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "kamwatch.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((repo_root / "deploy" / "docker-compose.yml").read_text())
    assert f"./grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
