"""Benchmark 1: end-to-end throughput, raw topics -> ingest -> signals risk state, vs. kafka-python.

One repeat: fresh schema and topics; signals and ingest as subprocesses; the registry imported
through the signals API (ingest reads it from the accounts topic); ingest stopped, the raw topics
pre-loaded with the simulated stream, ingest started again. The clock runs from ingest's first
stored event (its batch time) until signals holds every event, i.e. until the last batch's
risk re-score committed (events and scores are written in one transaction). Baseline in the
same repeat: a kafka-python consumer (the services' own client settings) reading and
json-decoding the same raw messages.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.env import RssSampler, Schema, Service, create_api_key, start_service, topic_settings, wait_until
from bench.profile import finish_profiles, start_profiles
from bench.workload import Workload, import_registry, produce_all
from kamwatch.dev.broker import LocalBroker
from shared.config import CommonSettings
from shared.kafka import make_consumer

# Progress is sampled once a second: count(*) over a table that grows to 250k rows took 25 ms of
# PostgreSQL time a call, so polling five times a second cost the measured pipeline a tenth of the
# database's CPU on this 2-core machine. The end time is late by under a second (conservative).
POLL_S = 1.0


def run_once(
    broker: LocalBroker,
    workload: Workload,
    logs: Path,
    cap_s: float,
    profiler: str | None = None,
    after: Callable[[Service, str, list[str]], Any] | None = None,
    preload: bool = True,
) -> dict[str, Any]:
    """One repeat, stopped after `cap_s` s of processing if the stream is not done by then.
    `after(signals, api_key, scored_ids)` then runs against a signals process serving the state
    the run left (its consumer idle). `preload=False` (smoke test) produces while ingest runs."""
    schema = Schema()
    running: list[Service] = []
    try:
        common = topic_settings(broker, schema.url)
        key = create_api_key(schema.url, ["accounts:write", "risk:read"])
        signals = _start(running, "signals", common, logs)
        ingest = _start(running, "ingest", common, logs)
        import_registry(signals.url, key, workload.accounts)
        expected = len(workload.accounts)
        wait_until(
            lambda: schema.scalar("SELECT count(*) FROM ingest_accounts") >= expected,
            120,
            "ingest registry",
            0.2,
        )
        # Registering accounts makes signals score each of them once (its sweep); let that finish
        # so the clock measures the stream, not the one-off registration.
        wait_until(
            lambda: schema.scalar("SELECT count(*) FROM risk_scores") >= expected, 900, "first scores", 0.5
        )
        if preload:
            ingest.stop()
        produce_s = produce_all(common, workload.messages)
        with RssSampler(signals) as rss:
            ingest = _start(running, "ingest", common, logs) if preload else ingest
            profiles = start_profiles(profiler, [ingest, signals], logs)
            progress: list[tuple[float, int]] = []
            end = _wait_processed(schema, workload.events, cap_s, progress)
        ingest.stop()
        result = _pipeline_result(schema, workload, end, rss.samples, progress)
        result["signals_peak_rss_bytes"] = signals.peak_rss_bytes()
        result["profiles"] = finish_profiles(profiles)
        _stop(running)
        if after is not None:
            result["after"] = _serve_state(schema, common, logs, key, after, running)
        _stop(running)
        result["produce_s"] = round(produce_s, 2)
        result["baseline"] = baseline(common, workload.events)
        return result
    finally:
        _stop(running)
        schema.close()


def _serve_state(
    schema: Schema,
    common: CommonSettings,
    logs: Path,
    key: str,
    after: Callable[[Service, str, list[str]], Any],
    running: list[Service],
) -> Any:
    """Signals on the filled database, consuming an empty topic and not sweeping: only the API works."""
    idle = common.model_copy(
        update={"topics": common.topics.model_copy(update={"events": f"{common.topics.events}.idle"})}
    )
    api = _start(running, "signals", idle, logs, KAMWATCH_SIGNALS_TICK_INTERVAL_S="3600")
    with schema.engine.connect() as connection:
        scored = [row[0] for row in connection.execute(text("SELECT account_id FROM risk_scores"))]
    return after(api, key, scored)


def _start(running: list[Service], name: str, common: CommonSettings, logs: Path, **extra: str) -> Service:
    service = start_service(name, common, logs, **extra)
    running.append(service)
    return service


def _stop(running: list[Service]) -> None:
    for service in running:
        service.stop()


def _wait_processed(
    schema: Schema, events: int, cap_s: float, progress: list[tuple[float, int]]
) -> tuple[float, int]:
    """(wall time, count) when signals' table holds every event, or at the time cap."""
    deadline = time.monotonic() + cap_s
    while True:
        done = int(schema.scalar("SELECT count(*) FROM signal_events"))
        progress.append((time.time(), done))
        if done >= events or time.monotonic() > deadline:
            return progress[-1]
        time.sleep(POLL_S)


def window_rates(progress: list[tuple[float, int]], started: float, windows: int = 5) -> list[float]:
    """Events/s in `windows` consecutive slices of equal event counts (is the rate sustained?)."""
    total = progress[-1][1]
    points = [(started, 0)] + [p for p in progress if p[0] > started]
    rates = []
    for n in range(windows):
        low, high = total * n / windows, total * (n + 1) / windows
        t0 = next(t for t, c in points if c >= low)
        t1 = next(t for t, c in points if c >= high)
        rates.append(round((high - low) / max(t1 - t0, POLL_S), 1))
    return rates


def _first_stored(schema: Schema) -> float:
    value = schema.scalar("SELECT min(received_at) FROM events")
    return float(value.timestamp()) if isinstance(value, datetime) else float("nan")


def _pipeline_result(
    schema: Schema, workload: Workload, end: tuple[float, int], rss: list[Any], progress: list[Any]
) -> dict[str, Any]:
    started = _first_stored(schema)
    processed, seconds = end[1], end[0] - started
    ingest_done = schema.scalar("SELECT max(received_at) FROM events")
    ingest_count = int(schema.scalar("SELECT count(*) FROM events"))
    ingest_s = float(ingest_done.timestamp()) - started
    return {
        "events": workload.events,
        "accounts": len(workload.accounts),
        "processed": processed,
        "complete": processed >= workload.events,
        "accounts_scored": int(schema.scalar("SELECT count(*) FROM risk_scores")),
        "seconds": round(seconds, 2),
        "events_per_s": round(processed / seconds, 1),
        "ingest_stored": ingest_count,
        "ingest_events_per_s": round(ingest_count / max(ingest_s, 1e-6), 1),
        "window_events_per_s": window_rates(progress, started),
        "rss_samples": rss,
    }


def baseline(common: CommonSettings, events: int, timeout_s: float = 300) -> dict[str, Any]:
    """kafka-python reading and json-decoding the same raw messages (services' client settings).

    The clock starts once the group is joined and the first record arrived (polled alone), so the
    join is excluded, as it is from the pipeline's figure."""
    consumer = make_consumer(common, f"bench-baseline-{uuid.uuid4().hex[:6]}", common.topics.raw)
    deadline = time.monotonic() + timeout_s
    try:
        count = 0
        while not count and time.monotonic() < deadline:
            count = sum(len(r) for r in consumer.poll(timeout_ms=500, max_records=1).values())
        started = time.perf_counter()
        while count < events and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500, max_records=common.consumer_max_poll_records)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                count += len(records)
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    rate = (count - 1) / max(seconds, 1e-6)
    return {"events": count, "seconds": round(seconds, 3), "events_per_s": round(rate, 1)}
