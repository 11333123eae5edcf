"""Security fixtures: the alert sinks as a real process (shared with tests/alerts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.conftest import Sinks, start_sinks


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    running = start_sinks(tmp_path / "outbox")
    yield running
    running.process.terminate()
    running.process.wait(10)
