"""Counters the engine exposes: per-stage process time and faults, per-playback device counters.

The C side keeps fixed arrays (a log-bucket histogram with 4 buckets per octave of nanoseconds);
this module turns a snapshot of them into plain dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

_BUCKETS_PER_OCTAVE = 4
#: Histogram size shared with csrc/st_chain.h (ST_HIST_BUCKETS).
HIST_BUCKETS = 128


@dataclass(frozen=True)
class StageFault:
    """Why a stage was bypassed."""

    kind: str
    """``trap``, ``timeout`` (the last of ``timeout_limit`` in a row), ``bad-frames``,
    ``memory-grow``, ``error-code``, ``non-finite`` (a NaN/Inf in a DSP stage's output block);
    component-path stages: ``plugin-error`` or ``non-finite``."""
    code: int
    """Trap code, returned ABI error code, the bad ``out_frames``, or for ``non-finite`` the index
    (``frame * channels + channel``) of the first NaN/Inf in the block (-1 when not applicable)."""
    block: int
    """Chain block index at which it happened."""
    message: str
    """wasmtime's trap message, empty for faults the engine itself detected."""


@dataclass(frozen=True)
class StageStats:
    """Process-time statistics of one stage, in microseconds.

    A hot-path stage's time runs from the end of the previous stage to its own end, so it
    includes copying the block in and out of the module.
    """

    name: str
    calls: int
    min_us: float
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    soft_errors: int
    """Blocks the module flagged SOFT_ERROR (kept, counted)."""
    short_frames: int
    """Output sinks: frames not consumed when offered (kept and offered again: back-pressure)."""
    rejected_params: int
    """set_param calls the module refused (the value was not applied)."""
    timeouts: int
    """Blocks skipped because the call overran its deadline (the stage went on afterwards)."""
    resets: int
    """Successful ``st_hot_reset`` calls."""
    fault: Optional[StageFault]
    sink_frames: int = 0
    """Output sinks: frames consumed."""
    dropped_frames: int = 0
    """Output sinks: frames lost because the caller offered new audio past a full sink's kept
    frames (the player's driver never does)."""


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
    callback_p50_us: float
    """Driver block duration quantiles (ring pop, plus the chain when it runs there)."""
    callback_p99_us: float
    callback_p999_us: float
    period_us: float
    """One driver block of audio: the time a callback may take at most."""
    chain_thread: str
    """Where the chain runs: ``callback`` (design A) or ``feeder`` (design B, which a chain
    with component-path stages needs: those are Python calls)."""
    finished: bool
    stages: list[StageStats] = field(default_factory=list)
    late_renders: int = 0
    """Driver blocks whose ring pop and chain took longer than the period: the xruns this
    process caused."""
    late_wakeups: int = 0
    """Device callbacks that began more than 1.5 periods after the previous one: the device's
    thread woke late (scheduler or hypervisor), so an xrun there is not the chain's doing."""
    nonfinite_input_samples: int = 0
    """Source samples that were NaN/Inf and were replaced by 0 before the chain (counted since
    the pipeline was built: ``Chain.nonfinite_input_samples``). No NaN/Inf reaches the device."""

    @property
    def callback_load_p99(self) -> float:
        """p99 callback duration as a fraction of the period (1.0 = no time left)."""
        return self.callback_p99_us / self.period_us if self.period_us else 0.0

    @property
    def callback_load_p999(self) -> float:
        """p99.9 callback duration as a fraction of the period."""
        return self.callback_p999_us / self.period_us if self.period_us else 0.0


def _bucket_value_ns(bucket: int) -> float:
    """Geometric middle of a histogram bucket."""
    if bucket < _BUCKETS_PER_OCTAVE:
        return float(bucket)
    return 2.0 ** ((bucket + 0.5) / _BUCKETS_PER_OCTAVE)


def _quantile_ns(hist: Sequence[int], calls: int, q: float) -> float:
    rank = q * calls
    seen = 0
    for bucket, count in enumerate(hist):
        seen += count
        if count and seen >= rank:
            return _bucket_value_ns(bucket)
    return 0.0


def hist_bucket(ns: int) -> int:
    """The bucket of ``ns`` (as csrc/st_chain.c files it), for timings taken in Python."""
    if ns < 4:
        return max(0, int(ns))
    msb = int(ns).bit_length() - 1
    return min(HIST_BUCKETS - 1, msb * 4 + ((int(ns) >> (msb - 2)) & 3))


def quantile_us(hist: Sequence[int], calls: int, q: float, min_ns: float, max_ns: float) -> float:
    """Quantile ``q`` of a histogram in microseconds, clamped to the observed range."""
    if not calls:
        return 0.0
    return min(max(_quantile_ns(hist, calls, q), min_ns), max_ns) / 1000.0


def stage_stats(name: str, t: dict[str, Any], raw_fault: Optional[tuple]) -> StageStats:
    """Snapshot one stage's counters (``t`` as ``CoreStage.timing()`` returns them; safe while
    the audio thread runs, values may lag a block)."""
    calls = t["calls"]

    def q(p: float) -> float:
        return quantile_us(t["hist"], calls, p, t["min_ns"], t["max_ns"])

    return StageStats(
        name=name,
        calls=calls,
        min_us=t["min_ns"] / 1000.0,
        p50_us=q(0.50),
        p99_us=q(0.99),
        p999_us=q(0.999),
        max_us=t["max_ns"] / 1000.0,
        mean_us=(t["total_ns"] / calls / 1000.0) if calls else 0.0,
        soft_errors=t["soft_errors"],
        short_frames=t["short_frames"],
        rejected_params=t["rejected_params"],
        timeouts=t["timeouts"],
        resets=t["resets"],
        fault=StageFault(*raw_fault) if raw_fault else None,
        sink_frames=t.get("sink_frames", 0),
        dropped_frames=t.get("dropped_frames", 0),
    )
