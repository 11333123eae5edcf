"""Benchmark 5: scale-out. The same stream through one and through two replicas of signals and
alerts (consumer groups on the same topics), each with the whole pipeline: ingest, signals,
alerts, and the local SMTP/Slack sinks.

One run per replica count on a fresh schema and fresh topics. The registry is imported and scored
first; then ingest is stopped, the raw topics are pre-loaded and ingest is started again, as in
benchmark 1. The clock runs from ingest's first stored event until signals holds every event.
Per replica: the records its consumer handled (`kamwatch_consumer_records_total` of its keyed
topic: kamwatch.events for signals, kamwatch.risk for alerts), scraped from its /metrics at the end,
and its peak RSS. The one-replica run is the baseline of the same benchmark run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.env import Schema, Service, create_api_key, start_service, topic_settings, wait_until
from bench.workload import Workload, import_registry, produce_all
from kamwatch.dev.broker import LocalBroker, free_port, port_in_use
from shared.metrics import scraped_sum

POLL_S = 0.2


def _records(service: Service, topic: str) -> int:
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    return int(scraped_sum(text, "kamwatch_consumer_records_total", topic=topic))


def run_once(
    broker: LocalBroker, workload: Workload, work: Path, replicas: int, cap_s: float
) -> dict[str, Any]:
    schema = Schema()
    common = topic_settings(broker, schema.url)
    logs = work / "logs"
    smtp_port, http_port = free_port(), free_port()
    sink_dir = work / f"sinks-{schema.name}"
    sinks = subprocess.Popen(
        [sys.executable, "-m", "bench.sinks", str(sink_dir), str(smtp_port), str(http_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    alerts_env = {
        "KAMWATCH_ALERTS_SMTP_HOST": "127.0.0.1",
        "KAMWATCH_ALERTS_SMTP_PORT": str(smtp_port),
        "KAMWATCH_ALERTS_DEFAULT_SLACK_WEBHOOK": f"http://127.0.0.1:{http_port}/services/bench/kamwatch",
    }
    running: list[Service] = []
    try:
        wait_until(lambda: port_in_use("127.0.0.1", http_port), 30, "the local sinks")
        key = create_api_key(schema.url, ["accounts:write", "risk:read"])
        signals = [start_service("signals", common, logs) for _ in range(replicas)]
        alerts = [start_service("alerts", common, logs, **alerts_env) for _ in range(replicas)]
        ingest = start_service("ingest", common, logs)
        running += [*signals, *alerts, ingest]
        import_registry(signals[0].url, key, workload.accounts)
        expected = len(workload.accounts)
        wait_until(lambda: schema.scalar("SELECT count(*) FROM ingest_accounts") >= expected, 120, "registry")
        wait_until(
            lambda: schema.scalar("SELECT count(*) FROM risk_scores") >= expected, 900, "first scores", 0.5
        )
        ingest.stop()
        running.remove(ingest)
        produce_all(common, workload.messages)
        ingest = start_service("ingest", common, logs)
        running.append(ingest)
        deadline = time.monotonic() + cap_s
        done = 0
        while done < workload.events and time.monotonic() < deadline:
            time.sleep(POLL_S)  # sampling the pipeline's progress, not waiting for a result
            done = int(schema.scalar("SELECT count(*) FROM signal_events"))
        end = time.time()
        first = schema.scalar("SELECT min(received_at) FROM events").timestamp()
        seconds = end - first
        per_replica = {
            "signals": [
                {
                    "events": _records(s, common.topics.events),
                    "peak_rss_mb": round(s.peak_rss_bytes() / 2**20, 1),
                }
                for s in signals
            ],
            "alerts": [
                {
                    "risk_changes": _records(a, common.topics.risk),
                    "peak_rss_mb": round(a.peak_rss_bytes() / 2**20, 1),
                }
                for a in alerts
            ],
        }
        return {
            "replicas": replicas,
            "events": workload.events,
            "processed": done,
            "complete": done >= workload.events,
            "seconds": round(seconds, 2),
            "events_per_s": round(done / seconds, 1) if seconds > 0 else None,
            "per_replica": per_replica,
        }
    finally:
        for service in reversed(running):
            service.stop()
        sinks.terminate()
        sinks.wait(10)
        schema.close()


def run(broker: LocalBroker, workload: Workload, work: Path, cap_s: float) -> dict[str, Any]:
    one = run_once(broker, workload, work, 1, cap_s)
    two = run_once(broker, workload, work, 2, cap_s)
    ratio = (
        round(two["events_per_s"] / one["events_per_s"], 3)
        if one["events_per_s"] and two["events_per_s"]
        else None
    )
    return {"one": one, "two": two, "ratio_two_to_one": ratio}
