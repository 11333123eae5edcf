"""The alerts' local SMTP and Slack sinks in their own process: `python -m bench.sinks DIR SMTP HTTP`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from kamwatch.dev.sinks import LocalSinks


def main(argv: list[str]) -> int:
    directory, smtp_port, http_port = Path(argv[0]), int(argv[1]), int(argv[2])
    sinks = LocalSinks(directory, smtp_port, http_port)
    sinks.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    sinks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
