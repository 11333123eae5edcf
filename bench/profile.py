"""Reading py-spy's collapsed stacks: which functions (file:function) hold the most samples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

OWN = ("services/", "shared/")


def hotspots(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Inclusive share of samples per project function (file:function), largest first."""
    if not path.exists():
        return []
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        seen = {_frame_name(frame) for frame in stack.split(";")}
        for name in seen:
            if name:
                inclusive[name] += count
    return [(name, round(n / max(1, total), 3)) for name, n in inclusive.most_common(top)]


def _frame_name(frame: str) -> str | None:
    """'function (path/to/file.py:12)' -> 'path/file.py:function' for project and library code."""
    function, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    for marker in (*OWN, "site-packages/"):
        if marker in file:
            short = (
                file.split(marker, 1)[1] if marker == "site-packages/" else marker + file.split(marker, 1)[1]
            )
            return f"{short}:{function.strip()}"
    return None
