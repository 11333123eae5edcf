"""Reading py-spy's collapsed stacks: which functions (file:function) hold the most samples."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.env import Service

OWN = ("services/", "shared/")
PROFILE_S = 30


def hotspots(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples: `inclusive` per project function, `self` (leaf) per any function."""
    if not path.exists():
        return {}
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(frame) for frame in stack.split(";")]
        leaf[frames[-1]] += count
        for name in {f for f in frames if f.startswith(OWN)}:
            inclusive[name] += count
    share = max(1, total)
    return {
        "inclusive": [(name, round(n / share, 3)) for name, n in inclusive.most_common(top)],
        "self": [(name, round(n / share, 3)) for name, n in leaf.most_common(top)],
    }


def _frame_name(frame: str) -> str:
    """'function (path/to/file.py:12)' -> 'path/to/file.py:function'."""
    function, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        file = file.split(marker, 1)[-1]
    return f"{file}:{function.strip()}"


def start_profiles(
    profiler: str | None, services: list[Service], logs: Path, seconds: float = PROFILE_S, tag: str = ""
) -> list[tuple[str, Any]]:
    """py-spy (collapsed stacks) on each service for `seconds` of the run."""
    if not profiler:
        return []
    started = []
    for service in services:
        out = logs / f"profile{tag}-{service.name}-{service.port}.txt"
        command = [profiler, "record", "--pid", str(service.process.pid), "-d", str(int(seconds))]
        command += ["-r", "50", "--format", "raw", "-o", str(out), "--nonblocking"]
        started.append(
            (str(out), subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        )
    return started


def finish_profiles(profiles: list[tuple[str, Any]]) -> dict[str, Any]:
    """Top functions by inclusive share of samples, per profiled service."""
    out = {}
    for path, process in profiles:
        process.wait(timeout=PROFILE_S + 30)
        out[Path(path).name] = hotspots(Path(path))
    return out
