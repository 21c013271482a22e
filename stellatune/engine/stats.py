"""Counters the engine exposes: per-stage process time and faults, per-playback device counters.

The C side keeps fixed arrays (a log-bucket histogram with 4 buckets per octave of nanoseconds);
this module turns a snapshot of them into plain dataclasses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from stellatune.engine import _core

_BUCKETS_PER_OCTAVE = 4


@dataclass(frozen=True)
class StageFault:
    """Why a stage was bypassed."""

    kind: str
    """``trap``, ``timeout``, ``bad-frames``, ``memory-grow`` or ``error-code``."""
    code: int
    """Trap code, returned ABI error code, or the bad ``out_frames`` (-1 when not applicable)."""
    block: int
    """Chain block index at which it happened."""
    message: str
    """wasmtime's trap message, empty for faults the engine itself detected."""


@dataclass(frozen=True)
class StageStats:
    """Process-time statistics of one stage, in microseconds."""

    name: str
    calls: int
    min_us: float
    p50_us: float
    p99_us: float
    max_us: float
    mean_us: float
    soft_errors: int
    """Blocks the module flagged SOFT_ERROR (kept, counted)."""
    short_frames: int
    """Output sinks: frames offered but not consumed."""
    rejected_params: int
    """set_param calls the module refused (the value was not applied)."""
    fault: Optional[StageFault]


@dataclass(frozen=True)
class PlaybackStats:
    """A snapshot of one playback's counters."""

    callbacks: int
    """Driver blocks so far (PortAudio callbacks or engine-clock ticks)."""
    device_underflows: int
    """Blocks the device reported as late (``paOutputUnderflow``): xruns."""
    ring_underruns: int
    """Blocks that found the decode ring short while the source still had audio (must be 0)."""
    ring_underrun_frames: int
    frames_played: int
    output_latency_ms: float
    """Device output latency as PortAudio reports it (0 for the engine clock)."""
    mean_ring_fill_frames: float
    """Frames waiting in the ring at each driver block, averaged."""
    render_max_us: float
    """Slowest driver block (ring pop + chain)."""
    finished: bool
    stages: list[StageStats] = field(default_factory=list)


def _bucket_value_ns(bucket: int) -> float:
    """Geometric middle of a histogram bucket."""
    if bucket < _BUCKETS_PER_OCTAVE:
        return float(bucket)
    return 2.0 ** ((bucket + 0.5) / _BUCKETS_PER_OCTAVE)


def _quantile_ns(hist: list[int], calls: int, q: float) -> float:
    rank = q * calls
    seen = 0
    for bucket, count in enumerate(hist):
        seen += count
        if count and seen >= rank:
            return _bucket_value_ns(bucket)
    return 0.0


def stage_stats(name: str, core: "_core.CoreStage") -> StageStats:
    """Snapshot one stage's counters (safe while the audio thread runs; values may lag a block)."""
    t = core.timing()
    calls = t["calls"]

    def clamp_us(ns: float) -> float:
        return min(max(ns, t["min_ns"]), t["max_ns"]) / 1000.0 if calls else 0.0

    raw = core.fault()
    return StageStats(
        name=name,
        calls=calls,
        min_us=t["min_ns"] / 1000.0,
        p50_us=clamp_us(_quantile_ns(t["hist"], calls, 0.50)),
        p99_us=clamp_us(_quantile_ns(t["hist"], calls, 0.99)),
        max_us=t["max_ns"] / 1000.0,
        mean_us=(t["total_ns"] / calls / 1000.0) if calls else 0.0,
        soft_errors=t["soft_errors"],
        short_frames=t["short_frames"],
        rejected_params=t["rejected_params"],
        fault=StageFault(*raw) if raw else None,
    )
