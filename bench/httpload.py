"""A small HTTP/1.1 keep-alive load generator process (asyncio streams, no client library overhead).

`python -m bench.httpload URL_PATHS_FILE --port P --concurrency 50 --seconds 8 --key KEY`
prints JSON: requests, errors, requests/s, p50/p99/max latency in ms. Each of the concurrent
clients holds one connection and sends the next request when the previous answer is read; the
path of each request is taken round-robin from the file (one path a line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from bench.stats import percentile


async def client(
    port: int, paths: list[str], offset: int, key: str, until: float, warm_until: float, out: list[float]
) -> int:
    """One connection; appends latencies (s) of requests started after warm-up; returns errors."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors, index = 0, offset
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    while time.monotonic() < until:
        path = paths[index % len(paths)]
        index += 1
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Accept: application/json\r\n\r\n"
        started = time.monotonic()
        writer.write(request.encode())
        status = await read_response(reader)
        if started >= warm_until:
            out.append(time.monotonic() - started)
            errors += status != 200
    writer.close()
    return errors


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def load(
    port: int, paths: list[str], key: str, concurrency: int, seconds: float, warm_s: float
) -> dict:
    start = time.monotonic()
    warm_until, until = start + warm_s, start + warm_s + seconds
    latencies: list[float] = []
    errors = await asyncio.gather(
        *(client(port, paths, n * 7919, key, until, warm_until, latencies) for n in range(concurrency))
    )
    ms = [v * 1000 for v in latencies]
    return {
        "requests": len(ms),
        "errors": sum(errors),
        "requests_per_s": round(len(ms) / seconds, 1),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": round(max(ms), 2) if ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warm", type=float, default=1.0)
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.read_text().splitlines() if p]
    result = asyncio.run(load(args.port, paths, args.key, args.concurrency, args.seconds, args.warm))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
