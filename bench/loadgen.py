"""A paced Kafka producer process: `python -m bench.loadgen PLAN OUT --rate R`.

PLAN is JSON lines {"topic", "key", "value", "id"}; message i is sent at start + i / rate.
OUT gets {"id": send wall time (epoch s)} so the caller can compute end-to-end latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from shared.config import CommonSettings
from shared.kafka import make_producer


def pace(plan: list[dict[str, str]], rate: float, common: CommonSettings) -> dict[str, float]:
    producer = make_producer(common, client_id="kamwatch-bench-loadgen")
    sent: dict[str, float] = {}
    start = time.monotonic()
    try:
        for index, item in enumerate(plan):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[item["id"]] = time.time()
            producer.send(item["topic"], key=item["key"].encode(), value=item["value"].encode())
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rate", type=float, required=True)
    args = parser.parse_args(argv)
    plan = [json.loads(line) for line in args.plan.read_text().splitlines() if line]
    sent = pace(plan, args.rate, CommonSettings())
    args.out.write_text(json.dumps(sent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
