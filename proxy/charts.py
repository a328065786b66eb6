"""Server-rendered SVG charts: pure Python, every label escaped, readable without JavaScript.

Each function returns one ``<svg role="img">`` element as a string. Text is drawn in
``currentColor`` so the charts follow the admin's light or dark theme. Callers may mark the
result safe: every caller-supplied string passes through ``html.escape`` here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = (
    "#417690",  # the admin's own blue
    "#e07b39",
    "#5b8c5a",
    "#ba2121",
    "#8e6c8a",
    "#c9a227",
    "#4c9fb5",
    "#8a6d4b",
)
OTHER_COLOUR = "#9a9a9a"
FONT = 'font-family="inherit" fill="currentColor"'
MAX_LABEL_CHARS = 30


@dataclass(frozen=True)
class Series:
    """One row of numbers for the daily chart, one value per day."""

    name: str
    values: tuple[int, ...]
    colour: str


def _num(value: float) -> str:
    # SVG coordinates: short, locale-free, no exponent.
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _count(value: int) -> str:
    return f"{value:,}"


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _open(
    title: str, width: int, height: int, description: str = "", *, fluid: bool = False
) -> str:
    label = escape(f"{title}: {description}" if description else title)
    # A fluid chart fills its container; the others keep their size and only shrink.
    size = "width:100%;height:auto" if fluid else "max-width:100%;height:auto"
    return (
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" style="{size}"><title>{escape(title)}</title>'
    )


def empty_chart(title: str, *, width: int = 640, height: int = 80) -> str:
    """The "No data" state: same frame, so the page does not jump when data appears."""
    return (
        _open(title, width, height, "no data")
        + f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" '
        f'dominant-baseline="middle" font-size="14" {FONT} opacity="0.6">No data</text></svg>'
    )


def bar_chart(items: Sequence[tuple[str, int]], *, title: str, width: int = 640) -> str:
    """Horizontal bars, longest first as given, each with its label and value."""
    if not items or max(value for _, value in items) <= 0:
        return empty_chart(title, width=width)
    row, label_width, value_width = 24, 220, 70
    track = width - label_width - value_width
    height = row * len(items) + 8
    largest = max(value for _, value in items)
    parts = [_open(title, width, height, f"{len(items)} bars")]
    for index, (label, value) in enumerate(items):
        y = 4 + index * row
        bar = track * max(value, 0) / largest
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f"<g><title>{escape(label)}: {_count(value)}</title>"
            f'<text x="{label_width - 8}" y="{y + row / 2}" text-anchor="end" '
            f'dominant-baseline="middle" font-size="12" {FONT}>{escape(_short(label))}</text>'
            f'<rect class="bar" x="{label_width}" y="{y + 3}" width="{_num(bar)}" '
            f'height="{row - 6}" rx="2" fill="{colour}"/>'
            f'<text x="{_num(label_width + bar + 6)}" y="{y + row / 2}" '
            f'dominant-baseline="middle" font-size="12" {FONT}>{_count(value)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _panel(series: Series, labels: Sequence[str], top: int, width: int, step: int) -> str:
    """One small multiple: columns for one series on its own scale, zero-based."""
    left, height = 56, 84
    plot = width - left - 8
    column = plot / len(series.values)
    largest = max(series.values)
    scale = height / largest if largest else 0.0
    base = top + 26 + height  # room above the plot for the panel's title
    parts = [
        f'<text x="{left}" y="{top + 13}" font-size="13" font-weight="bold" {FONT}>'
        f"{escape(series.name)} ({_count(sum(series.values))})</text>",
        f'<line x1="{left}" x2="{left + plot}" y1="{base}" y2="{base}" stroke="currentColor" '
        f'stroke-opacity="0.4"/>',
        f'<line x1="{left}" x2="{left + plot}" y1="{base - height}" y2="{base - height}" '
        f'stroke="currentColor" stroke-opacity="0.15" stroke-dasharray="3 3"/>',
        f'<text x="{left - 6}" y="{base - height}" text-anchor="end" dominant-baseline="middle" '
        f'font-size="11" {FONT}>{_count(largest)}</text>',
        f'<text x="{left - 6}" y="{base}" text-anchor="end" dominant-baseline="middle" '
        f'font-size="11" {FONT}>0</text>',
    ]
    for index, (label, value) in enumerate(zip(labels, series.values, strict=True)):
        x = left + index * column
        bar = value * scale
        parts.append(
            f'<rect x="{_num(x + column * 0.12)}" y="{_num(base - bar)}" '
            f'width="{_num(column * 0.76)}" height="{_num(bar)}" fill="{series.colour}">'
            f"<title>{escape(label)}: {_count(value)} {escape(series.name.lower())}</title></rect>"
        )
        if index % step == 0:
            parts.append(
                f'<text x="{_num(x + column / 2)}" y="{base + 14}" text-anchor="middle" '
                f'font-size="11" {FONT}>{escape(label[5:])}</text>'  # MM-DD of an ISO date
            )
    return "".join(parts)


def daily_chart(labels: Sequence[str], series: Sequence[Series], *, title: str) -> str:
    """One column panel per series, stacked, sharing the day axis (labels are ISO dates).

    Separate scales on purpose: masked values often outnumber requests a hundredfold, and
    one shared axis would flatten the error columns to nothing.
    """
    width, panel = 1200, 136
    if not labels or not any(any(s.values) for s in series):
        return empty_chart(title, width=width)
    step = max(1, math.ceil(len(labels) / 14))  # at most ~14 day labels under each panel
    description = f"{labels[0]} to {labels[-1]}, " + ", ".join(
        f"{s.name.lower()} {_count(sum(s.values))}" for s in series
    )
    parts = [_open(title, width, panel * len(series), description, fluid=True)]
    parts.extend(_panel(s, labels, index * panel, width, step) for index, s in enumerate(series))
    parts.append("</svg>")
    return "".join(parts)


def donut_chart(items: Sequence[tuple[str, int]], *, title: str) -> str:
    """Shares of a whole as a ring, with a legend giving each value and percentage."""
    total = sum(max(value, 0) for _, value in items)
    width, height = 460, 200
    if total <= 0:
        return empty_chart(title, width=width, height=height)
    radius, centre = 70.0, (100, 100)
    circumference = 2 * math.pi * radius
    parts = [_open(title, width, height, f"{len(items)} parts, {_count(total)} in all")]
    offset = 0.0
    for index, (label, value) in enumerate(items):
        share = max(value, 0) / total
        colour = PALETTE[index] if index < len(PALETTE) else OTHER_COLOUR
        length = share * circumference
        # A dashed circle stroke draws an arc without path maths; -90° starts at the top.
        parts.append(
            f'<circle cx="{centre[0]}" cy="{centre[1]}" r="{radius}" fill="none" '
            f'stroke="{colour}" stroke-width="34" '
            f'stroke-dasharray="{_num(length)} {_num(circumference - length)}" '
            f'stroke-dashoffset="{_num(-offset)}" transform="rotate(-90 {centre[0]} '
            f'{centre[1]})"><title>{escape(label)}: {_count(value)} '
            f"({share:.0%})</title></circle>"
        )
        offset += length
        if index < 9:  # the legend has room for nine lines; the table below lists all
            y = 24 + index * 19
            parts.append(
                f'<rect x="200" y="{y - 6}" width="12" height="12" fill="{colour}"/>'
                f'<text x="218" y="{y}" dominant-baseline="middle" font-size="12" {FONT}>'
                f"{escape(_short(label))} — {_count(value)} ({share:.0%})</text>"
            )
    parts.append(
        f'<text x="{centre[0]}" y="{centre[1]}" text-anchor="middle" dominant-baseline="middle" '
        f'font-size="16" font-weight="bold" {FONT}>{_count(total)}</text></svg>'
    )
    return "".join(parts)
