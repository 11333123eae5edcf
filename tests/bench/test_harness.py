"""Smoke test of the benchmark harness at a tiny size (the real benchmark is `make bench`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import endpoints, machine, report, run, scale, throughput
from bench.env import Service
from bench.stats import median, percentile
from bench.workload import build
from kamwatch.dev.broker import LocalBroker


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) is None
    assert median([3.0, None, 1.0, 2.0]) == 2.0


def test_window_rates_split_the_run_by_event_count() -> None:
    progress = [(10.0 + t, min(1000, 100 * t)) for t in range(1, 11)]
    assert throughput.window_rates(progress, started=10.0) == [100.0] * 5


def test_memory_summary_says_whether_rss_stayed_flat() -> None:
    flat = report.memory_summary([(float(t), 100 * 2**20) for t in range(20)])
    growing = report.memory_summary([(float(t), (100 + 10 * t) * 2**20) for t in range(20)])
    warming = report.memory_summary([(float(t), (100 + 20 * min(t, 4)) * 2**20) for t in range(20)])
    assert warming["flat"] is True
    assert flat["flat"] is True
    assert growing["flat"] is False


@pytest.mark.slow
def test_tiny_run_writes_json_markdown_and_png(broker: LocalBroker, tmp_path: Path) -> None:
    workload = build(accounts=8, min_events=120)

    def http(signals: Service, key: str, ids: list[str]) -> object:
        return endpoints.measure(
            signals, key, ids, tmp_path, seconds=0.3, repeats=1, concurrency=4, warm_s=0.1
        )

    one = throughput.run_once(broker, workload, tmp_path / "logs", 120, after=http, preload=False)
    assert (
        one["complete"]
        and one["processed"] == workload.events
        and one["accounts_scored"] == len(workload.accounts)
    )
    assert one["baseline"]["events"] == workload.events
    sizes = [scale.run_size(10, scale.template(datetime.now(UTC), accounts=10))]
    results = {
        "mode": "tiny",
        "plan": {},
        "machine": {**machine.describe(), "load_average_end": machine.load_average(), "shared": True},
        "throughput": run.throughput_summary([one]),
        "http": one.pop("after"),
        "scale": {"sizes": sizes, "history_days": scale.HISTORY_DAYS},
        "elapsed_s": 1.0,
    }
    run.write(results, tmp_path / "out")

    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {"machine", "throughput", "http", "scale"} <= set(written)
    assert written["machine"]["cores"] >= 1 and written["machine"]["cpu_model"]
    assert written["throughput"]["events_per_s"] > 0 and written["throughput"]["baseline_events_per_s"] > 0
    assert {"healthz", "risk", "portfolio"} <= set(written["http"])
    assert written["http"]["risk"]["errors"] == 0 and written["http"]["risk"]["p99_ms"] > 0
    assert written["scale"]["sizes"][0]["rebuild"]["seconds"] > 0
    assert written["scale"]["sizes"][0]["sweep"]["accounts"] == 10
    assert "| Benchmark |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "throughput_latency.png").read_bytes()[:4] == b"\x89PNG"
