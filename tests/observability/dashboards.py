"""The provisioned dashboards' panel queries, as a Prometheus would run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
# Grafana's variables, replaced by fixed windows that cover the whole test run.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return data


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: load(path.name) for path in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL with Grafana variables resolved) for every target."""
    found = []
    for board in dashboards().values():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((board["uid"], panel["title"], expr))
    return found
