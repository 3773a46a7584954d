"""Counting requests in sliding windows, shared by the benchmarks that check a ceiling."""

from __future__ import annotations

from collections.abc import Sequence


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most of ``times`` (sorted) in any half-open window [t, t + width)."""
    best = 0
    j = 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + width:
            j += 1
        best = max(best, j - i)
    return best
