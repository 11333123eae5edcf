"""Where the one-machine stack keeps its files and which ports its services listen on."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

SERVICE_PORTS = {"ingest": 8001, "signals": 8002, "alerts": 8003, "console": 8000}


def var_dir() -> Path:
    """$KAMWATCH_VAR_DIR (default ./var), with its log folder created."""
    path = Path(os.environ.get("KAMWATCH_VAR_DIR", "var")).resolve()
    (path / "log").mkdir(parents=True, exist_ok=True)
    return path


def service_port(name: str) -> int:
    """KAMWATCH_<SERVICE>_PORT, else the service's default port."""
    return int(os.environ.get(f"KAMWATCH_{name.upper()}_PORT", SERVICE_PORTS[name]))


def until_stopped() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets: wait on it to run until told to stop."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop
