"""Component-path stages: a block processed by a Python call (a plugin component's ``process``).

This is the fallback for plugins whose component offers no hot path, or whose hot path does not
fit. It never runs on the audio thread: offline it is called per block between the C chain's
segments, and in playback the whole chain moves to the feeder thread (design B). The engine only
sees callables here, so it does not depend on the executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import astuple
from typing import Any, Optional

import numpy as np

from stellatune.abi import Role
from stellatune.engine import _core
from stellatune.engine.stage import StageLifecycle
from stellatune.engine.stats import HIST_BUCKETS, StageFault, StageStats, hist_bucket, stage_stats
from stellatune.errors import EngineError, RuntimeStateError

__all__ = ["ComponentStage"]


class ComponentStage(StageLifecycle):
    """A stage whose blocks go through a Python callable, with the same stats and bypass rules
    as a :class:`~stellatune.engine.HotPathStage`.

    ``process(block)`` gets a float32 (frames, channels) array and returns one of the same
    shape (a DSP) or the number of frames it consumed (a sink; the rest count as
    ``short_frames``). An exception from it bypasses the stage from then on
    (fault kind ``plugin-error``) and the rest of the chain keeps going. A DSP output holding a
    NaN or an infinity (after the cast to float32) does the same with fault kind ``non-finite``,
    and its input passes on for that block; subnormals in the output are flushed to zero: the
    guarantees the C block loop gives hot-path stages.

    After :meth:`close` every call but ``fault``/``stats()`` raises
    :class:`~stellatune.errors.RuntimeStateError`; one garbage-collected unclosed emits a
    ``ResourceWarning`` (the callable's ``close`` does not run from the finalizer).
    """

    route = "component"

    def __init__(
        self,
        *,
        name: str,
        role: Role,
        sample_rate: int,
        channels: int,
        process: Callable[[np.ndarray], np.ndarray],
        fallback_reason: str,
        configure: Optional[Callable[[Mapping[str, Any]], object]] = None,
        reset: Optional[Callable[[], object]] = None,
        close: Optional[Callable[[], object]] = None,
        max_frames: int = 1 << 16,
    ):
        self._init_lifecycle()  # _lock, _live (the pipeline running it), _closed
        self.name = name
        self.role = role
        self.sample_rate = sample_rate
        self.channels = channels
        self.max_frames = max_frames
        self.fallback_reason: Optional[str] = fallback_reason
        """Why the hot path was not used (the component returned none, a spec problem, ...)."""
        self._process = process
        self._configure = configure
        self._reset = reset
        self._close = close
        self._engine = None  # no epoch ticker: the executor's deadlines guard component calls
        self._bypassed = False
        self._fault: Optional[StageFault] = None
        self._blocks = 0
        # The counters HotPathStage keeps in C, kept here in Python (same keys: stage_stats reads both).
        self._t: dict[str, int] = {
            k: 0
            for k in (
                "calls",
                "total_ns",
                "min_ns",
                "max_ns",
                "soft_errors",
                "short_frames",
                "rejected_params",
                "timeouts",
                "resets",
                "sink_frames",
                "dropped_frames",
            )
        }
        self._hist = [0] * HIST_BUCKETS
        self.offer_wait: Optional[Callable[[], bool]] = None
        """Sinks: called between offers of the frames a write did not take (back-pressure);
        it waits (the engine clock's next tick) and returns False to give up (the rest is
        dropped and counted). None: no retry, the rest is only counted as ``short_frames``."""
        self.stall_timeout_s = 10.0
        """Sinks with ``offer_wait``: no frame taken for this long is a ``plugin-error`` fault."""

    def run(self, block: np.ndarray) -> None:
        """Process ``block`` in place (the pipeline's thread; never the audio callback)."""
        if self._closed:
            raise RuntimeStateError(f"{self.name}: cannot process a block: the stage is closed")
        block_index = self._blocks
        self._blocks += 1
        if self._bypassed or self._fault is not None:
            return
        t0 = time.perf_counter_ns()
        dsp = self.role is Role.DSP_TRANSFORM
        # The input is what passes on if the output is unusable, and the callable may have
        # written into the block it was given: keep a copy (noise next to a component call).
        original = block.copy() if dsp else None
        try:
            out = self._process(block)
            if dsp:
                if out.shape != block.shape:
                    raise EngineError(f"returned {out.shape} for a block of {block.shape}")
                with np.errstate(over="ignore", invalid="ignore"):  # 1e300 -> inf: caught below
                    out32 = np.ascontiguousarray(out, dtype=np.float32)
                non_finite, subnormal = _core.scan_samples(out32)
                if non_finite:
                    block[...] = original
                    self._fault = StageFault("non-finite", _core.first_nonfinite(out32), block_index, "")
                    return
                block[...] = out32
                if subnormal:
                    _core.sanitize_samples(block)  # no NaN/Inf left: this only flushes subnormals
            elif isinstance(out, int):  # a sink says how many frames it took
                self._offer_rest(block, out)
        except Exception as e:  # noqa: BLE001 - trapped, timed out, errored, or disabled underneath the stage
            if original is not None:
                block[...] = original
            self._fault = StageFault("plugin-error", -1, block_index, f"{type(e).__name__}: {e}")
            return
        self._record(time.perf_counter_ns() - t0)

    def _offer_rest(self, block: np.ndarray, taken: int) -> None:
        """A sink took ``taken`` frames of ``block``: offer it the rest, in order, waiting
        between offers (``offer_wait``), until it took everything (never dropped while the
        wait says go on)."""
        taken = max(0, min(int(taken), len(block)))
        self._t["sink_frames"] += taken
        stalled_since: Optional[float] = None
        while taken < len(block):
            self._t["short_frames"] += len(block) - taken
            if self.offer_wait is None or not self.offer_wait():
                self._t["dropped_frames"] += len(block) - taken
                return
            n = max(0, min(int(self._process(block[taken:])), len(block) - taken))
            self._t["sink_frames"] += n
            taken += n
            if n:
                stalled_since = None
            elif stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > self.stall_timeout_s:
                raise EngineError(f"the sink took no frame for {self.stall_timeout_s:g} s")

    def _record(self, ns: int) -> None:
        t = self._t
        t["min_ns"] = ns if not t["calls"] else min(t["min_ns"], ns)
        t["max_ns"] = max(t["max_ns"], ns)
        t["calls"] += 1
        t["total_ns"] += ns
        self._hist[hist_bucket(ns)] += 1

    # --- control (the same surface as HotPathStage where it applies) ------------------------

    def configure(self, config: Mapping[str, Any]) -> None:
        """Hand a config update (the changed keys) to the plugin, which validates it."""
        self._check_open("configure")
        if self._configure is None:
            raise EngineError(f"{self.name}: this stage takes no config updates")
        if not isinstance(config, Mapping):
            raise EngineError(f"{self.name}: config must be an object")
        self._configure(dict(config))

    def set_param(self, name: str, value: float) -> None:
        """One config key, as a config update."""
        self._check_open("set_param")
        self.configure({name: value})

    def bypass(self, bypassed: bool = True) -> None:
        """Skip (or resume) this stage; blocks pass through it unchanged."""
        self._check_open("bypass")
        self._bypassed = bypassed

    def reset(self) -> None:
        """Reset the plugin's stream state, when it has such a call (sinks do)."""
        self._check_open("reset")
        if self._reset is not None and self._fault is None:
            self._reset()
            self._t["resets"] += 1

    @property
    def fault(self) -> Optional[StageFault]:
        """Why this stage is bypassed for good (kind ``plugin-error``), or None while healthy."""
        return self._fault

    def stats(self) -> StageStats:
        """Call-time statistics (Python-side clock around each call) and the fault state."""
        fault = astuple(self._fault) if self._fault is not None else None
        return stage_stats(self.name, {**self._t, "hist": self._hist}, fault)

    def timing(self) -> dict[str, Any]:
        """The raw counters, as ``HotPathStage.timing()`` gives them (a Python-side clock)."""
        return {**self._t, "hist": list(self._hist)}

    def _use_deadline(self, offline_ticks: Optional[int]) -> None:
        """Component calls keep the executor's own deadlines."""

    def close(self) -> None:
        """Close the plugin resource behind the stage (idempotent)."""
        if not self._begin_close():
            return
        if self._close is not None:
            self._close()

    def __repr__(self) -> str:
        return f"<ComponentStage {self.name} ({self.role.wit_name}, fallback: {self.fallback_reason})>"
