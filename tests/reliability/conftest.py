"""Reliability fixtures: the alert sinks as a real process (shared with tests/alerts)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.conftest import Sinks, start_sinks


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    running = start_sinks(tmp_path / "outbox")
    yield running
    running.process.terminate()
    running.process.wait(10)


def soak() -> bool:
    """`make soak` (KAMWATCH_SOAK=1) runs the fault tests at full size."""
    return os.environ.get("KAMWATCH_SOAK") == "1"


skip_unless_soak = pytest.mark.skipif(not soak(), reason="full size runs under `make soak` (KAMWATCH_SOAK=1)")


REPORTS: list[str] = []


def report(line: str) -> None:
    """Print what a fault/hostile-input test tried and checked; repeated in the terminal summary
    so `make test` and `make soak` show the counts even when output is captured."""
    REPORTS.append(line)
    print(line, flush=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("reliability and security: what was tried and checked")
        for line in REPORTS:
            terminalreporter.write_line(line)
