"""Cumulative duration histograms the service keeps from events (per-plugin transition times).

A Prometheus histogram's counts must never go down, so each one keeps running bucket counts
rather than a window of recent samples.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["DurationHistogram", "TRANSITION_BUCKETS_MS"]

#: Upper bounds (ms) for plugin lifecycle steps: from a kept plugin's bookkeeping (well under
#: 1 ms) to a first compile of a large component (seconds).
TRANSITION_BUCKETS_MS = (0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 30000.0)


@dataclass
class DurationHistogram:
    """Running counts of durations (ms) in fixed buckets; not thread-safe (the owner locks)."""

    bounds: Sequence[float] = TRANSITION_BUCKETS_MS
    counts: list[int] = field(default_factory=list)  # per bucket, then one for over the last bound
    count: int = 0
    sum_ms: float = 0.0
    last_ms: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, ms: float) -> None:
        # bisect_left: a duration equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect.bisect_left(self.bounds, ms)] += 1
        self.count += 1
        self.sum_ms += ms
        self.last_ms = ms

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets ``[(le, count), ..., ("+Inf", count)]``."""
        out: list[tuple[str, float]] = []
        seen = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            seen += n
            out.append((repr(float(bound)), float(seen)))
        out.append(("+Inf", float(self.count)))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sum_ms": self.sum_ms, "last_ms": self.last_ms}
