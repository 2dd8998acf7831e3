"""The overview's two charts as plain geometry; the template draws it as inline SVG.

Nothing here is author-controlled (days, counts and seconds come from the read model), and the
template still escapes every label. No style attributes: colours come from CSS classes in the
same-origin stylesheet, so a strict CSP (``default-src 'self'``) allows the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LEVELS = ("malicious", "suspicious", "benign")
WIDTH = 560
HEIGHT = 160
_TOP = 12  # room for the scale label
_BOTTOM = 22  # room for the day labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str  # a CSS class: level-<level> or latency
    title: str  # the tooltip (an SVG <title>)


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[Label]
    scale: str  # what the top of the chart stands for
    empty: bool
    #: the same figures as rows, for a table under the drawing (screen readers, tests)
    rows: list[tuple[str, str]]


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: 42 s, 7 min, 3.2 h, 2.5 d."""
    if seconds is None:
        return "no data"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _slots(n: int) -> tuple[float, float]:
    step = WIDTH / max(n, 1)
    return step, max(step * 0.7, 1.0)


def _day_labels(days: Sequence[str], step: float) -> list[Label]:
    every = max(1, len(days) // 7)  # at most ~7 labels, they must not overlap
    return [Label(i * step + step / 2, HEIGHT - 6, day[5:]) for i, day in enumerate(days)
            if i % every == 0]


def verdicts_chart(per_day: Sequence[tuple[str, dict[str, int]]]) -> Chart:
    """Stacked bars: verdicts per day by level, malicious at the bottom."""
    days = [d for d, _ in per_day]
    totals = [sum(max(int(c.get(lv, 0)), 0) for lv in LEVELS) for _, c in per_day]
    top = max(totals, default=0)
    step, bar_w = _slots(len(days))
    plot = HEIGHT - _TOP - _BOTTOM
    bars: list[Bar] = []
    for i, (day, counts) in enumerate(per_day):
        y = float(HEIGHT - _BOTTOM)
        for level in LEVELS:
            n = max(int(counts.get(level, 0)), 0)
            if not n or not top:
                continue
            h = plot * n / top
            y -= h
            bars.append(Bar(i * step + (step - bar_w) / 2, y, bar_w, h, f"level-{level}",
                            f"{day}: {n} {level}"))
    rows = [(day, ", ".join(f"{int(c.get(lv, 0))} {lv}" for lv in LEVELS)) for day, c in per_day]
    return Chart(WIDTH, HEIGHT, bars, _day_labels(days, step), f"{top} verdicts",
                 top == 0, rows)


def latency_chart(per_day: Sequence[tuple[str, float | None]]) -> Chart:
    """One bar per day: the median time from publish to verdict (no bar where unknown)."""
    days = [d for d, _ in per_day]
    values = [v for _, v in per_day if v is not None and v >= 0]
    top = max(values, default=0.0)
    step, bar_w = _slots(len(days))
    plot = HEIGHT - _TOP - _BOTTOM
    bars = []
    for i, (day, value) in enumerate(per_day):
        if value is None or value < 0 or not top:
            continue
        h = max(plot * value / top, 1.0)
        bars.append(Bar(i * step + (step - bar_w) / 2, HEIGHT - _BOTTOM - h, bar_w, h,
                        "latency", f"{day}: median {duration(value)}"))
    rows = [(day, duration(v)) for day, v in per_day]
    return Chart(WIDTH, HEIGHT, bars, _day_labels(days, step), duration(top) if values else "",
                 not values, rows)
