"""Pure helpers for the benchmark reports: percentiles, ratios, cells and Markdown tables."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

NAN = float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of values; NaN when there are none."""
    if not values:
        return NAN
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float | None]) -> float:
    """The median of the values that are known; NaN when none is."""
    known = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.median(known) if known else NAN


def seconds(value: float | None, digits: int = 2) -> str:
    """A time in seconds for a table cell; '-' when unknown."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def milliseconds(value: float | None) -> str:
    """A time given in seconds, shown in milliseconds; '-' when unknown."""
    return "-" if value is None or math.isnan(value) else f"{value * 1000:.1f} ms"


def ratio(value: float, floor: float) -> str:
    """value / floor as `2.3x`; '-' when either is unknown or the floor is not positive."""
    if math.isnan(value) or math.isnan(floor) or floor <= 0:
        return "-"
    return f"{value / floor:.1f}x"


def spread(counts: Sequence[int]) -> str:
    """Median and range of counts, e.g. `68 (0-120)`; '-' when there are none."""
    if not counts:
        return "-"
    middle = statistics.median(counts)
    shown = f"{middle:g}"
    return shown if min(counts) == max(counts) else f"{shown} ({min(counts)}-{max(counts)})"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines."""
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
