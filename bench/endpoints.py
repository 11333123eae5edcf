"""Benchmark 3: the signals HTTP API under 50 concurrent clients, against /healthz of the same app.

The load generator (bench/httpload.py) is its own process; the three endpoints are measured in
turn, and the round is repeated, so every figure is a median of `repeats` runs made under the
same conditions as its baseline.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.env import Service
from bench.profile import finish_profiles, start_profiles
from bench.stats import median

ENDPOINTS = ("healthz", "risk", "portfolio")


def paths_for(endpoint: str, account_ids: list[str]) -> list[str]:
    if endpoint == "healthz":
        return ["/healthz"]
    if endpoint == "portfolio":
        return ["/v1/portfolio", "/v1/portfolio?band=amber", "/v1/portfolio?tier=strategic"]
    rng = random.Random(11)
    return [f"/v1/accounts/{a}/risk" for a in rng.sample(account_ids, min(len(account_ids), 2000))]


def measure(
    signals: Service,
    key: str,
    account_ids: list[str],
    work: Path,
    *,
    seconds: float,
    repeats: int,
    concurrency: int = 50,
    profiler: str | None = None,
    warm_s: float = 1.0,
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in ENDPOINTS}
    profiles: dict[str, Any] = {}
    for repeat in range(repeats):
        for endpoint in ENDPOINTS:
            profiling = start_profiles(
                profiler if repeat == 0 else None, [signals], work, seconds, f"-{endpoint}"
            )
            runs[endpoint].append(
                _one(signals, key, endpoint, account_ids, work, (seconds, warm_s), concurrency)
            )
            profiles.update(finish_profiles(profiling))
    result: dict[str, Any] = {"concurrency": concurrency, "seconds_per_run": seconds, "repeats": repeats}
    if profiles:
        result["profiles"] = profiles
    for endpoint, items in runs.items():
        result[endpoint] = {
            "p50_ms": median([r["p50_ms"] for r in items]),
            "p99_ms": median([r["p99_ms"] for r in items]),
            "requests_per_s": median([r["requests_per_s"] for r in items]),
            "errors": sum(r["errors"] for r in items),
            "runs": items,
        }
    for endpoint in ("risk", "portfolio"):
        base = result["healthz"]
        result[endpoint]["p99_vs_healthz"] = _ratio(result[endpoint]["p99_ms"], base["p99_ms"])
        result[endpoint]["rps_vs_healthz"] = _ratio(
            result[endpoint]["requests_per_s"], base["requests_per_s"]
        )
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _one(
    signals: Service,
    key: str,
    endpoint: str,
    account_ids: list[str],
    work: Path,
    timing: tuple[float, float],
    concurrency: int,
) -> dict[str, Any]:
    seconds, warm_s = timing
    paths_file = work / f"paths-{endpoint}.txt"
    paths_file.write_text("\n".join(paths_for(endpoint, account_ids)) + "\n")
    command = [sys.executable, "-m", "bench.httpload", str(paths_file), "--port", str(signals.port)]
    command += [
        "--key",
        key,
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
        "--warm",
        str(warm_s),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
