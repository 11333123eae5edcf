"""Small inline SVG charts (no JavaScript): a row sparkline and the account's risk trend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

BAND_COLOURS = {"green": "#1b7f3b", "amber": "#b36b00", "red": "#c62828"}


def _y(score: float, top: float, height: float) -> float:
    return top + (1.0 - max(0.0, min(1.0, score))) * height


def sparkline(scores: Sequence[float], band: str, width: int = 96, height: int = 24) -> Markup:
    """A polyline of the last scores (oldest left); empty when there is nothing to draw."""
    if not scores:
        return Markup("")
    values = list(scores) if len(scores) > 1 else [scores[0], scores[0]]
    step = (width - 4) / (len(values) - 1)
    points = " ".join(f"{2 + i * step:.1f},{_y(v, 2, height - 4):.1f}" for i, v in enumerate(values))
    colour = BAND_COLOURS.get(band, "#555")
    label = escape(f"risk trend, last {len(scores)} scores, now {scores[-1]:.0%}")
    # Markup is safe here: numbers, a known colour and escaped text only.
    return Markup(  # noqa: S704
        f'<svg class="spark" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><polyline fill="none" stroke="{colour}" stroke-width="1.8" '
        f'points="{points}"/></svg>'
    )


def trend_chart(points: Sequence[tuple[datetime, float, str]], width: int = 640, height: int = 200) -> Markup:
    """Score over time with the band of each point; scales to its container (viewBox)."""
    if not points:
        return Markup('<p class="muted">No score history yet.</p>')
    left, right, top, bottom = 40, 10, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    start, end = points[0][0], points[-1][0]
    span = max((end - start).total_seconds(), 1.0)

    by_time = (end - start).total_seconds() > 0  # else (all scored at one instant) by order

    def x(index: int, at: datetime) -> float:
        if len(points) == 1:
            return left + plot_w
        fraction = (at - start).total_seconds() / span if by_time else index / (len(points) - 1)
        return left + fraction * plot_w

    parts = [
        f'<svg class="trend" role="img" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(_summary(points))}">'
    ]
    for level in (0.0, 0.5, 1.0):
        y = _y(level, top, plot_h)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{level:.0%}</text>')
    line = " ".join(f"{x(i, at):.1f},{_y(score, top, plot_h):.1f}" for i, (at, score, _) in enumerate(points))
    parts.append(f'<polyline fill="none" stroke="#333" stroke-width="1.5" points="{line}"/>')
    for i, (at, score, band) in enumerate(points):
        colour = BAND_COLOURS.get(band, "#555")
        parts.append(f'<circle cx="{x(i, at):.1f}" cy="{_y(score, top, plot_h):.1f}" r="3" fill="{colour}"/>')
    parts.append(f'<text x="{left}" y="{height - 8}">{start:%d %b}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{end:%d %b}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, dates and escaped text only


def _summary(points: Sequence[tuple[datetime, float, str]]) -> str:
    first, last = points[0], points[-1]
    return f"risk from {first[1]:.0%} on {first[0]:%d %b} to {last[1]:.0%} ({last[2]}) on {last[0]:%d %b}"
