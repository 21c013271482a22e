"""Noise-resistant timing: cases measured in interleaved rounds, medians of the rounds.

The machines are shared and noisy; a burst of load hits whichever case is running. Running every
case once per round (in a rotating order) spreads a burst over all of them, and the median of
the rounds drops it. Each case returns its own figure (ns per block, ns per frame...), so the
setup it needs stays outside the clock.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from stellatune.engine import HotPathStage, Pipeline

from .kernels import CHANNELS, SAMPLE_RATE

Case = Callable[[], float]


def interleaved_medians(cases: Mapping[str, Case], rounds: int) -> dict[str, float]:
    """Run every case once per round, rotating the order; return each case's median."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(cases[name]())
    return {name: statistics.median(values) for name, values in samples.items()}


def chain_case(stages: Sequence[HotPathStage], frames: int, source: np.ndarray) -> Case:
    """ns per block of the engine's C block loop running ``stages`` over ``source``.

    This is the lowest entry point the engine offers (it has no single-stage timing call): one
    nogil call of the chain over all of ``source`` in blocks of ``frames``, so no Python runs per
    block. The figure includes what the engine pays around each call (copies into and out of
    linear memory, frame-count and memory-size checks, its own per-call clock reads). Each round
    restores the input first (outside the clock): processing in place would otherwise feed a
    kernel its own output round after round.
    """
    pipeline = Pipeline(stages, SAMPLE_RATE, CHANNELS, block_frames=frames)
    blocks = len(source) // frames
    source = np.ascontiguousarray(source[: blocks * frames], dtype=np.float32)
    work = np.empty_like(source)

    def run() -> float:
        np.copyto(work, source)
        with pipeline.running() as chain:
            t0 = time.perf_counter_ns()
            chain.process(work)
            elapsed = time.perf_counter_ns() - t0
        return elapsed / blocks
    return run


def per_call_case(process: Callable[[np.ndarray], object], blocks: Sequence[np.ndarray]) -> Case:
    """ns per call of ``process`` over ``blocks`` (prepared in the layout it wants)."""
    def run() -> float:
        t0 = time.perf_counter_ns()
        for block in blocks:
            process(block)
        return (time.perf_counter_ns() - t0) / len(blocks)
    return run


def split_blocks(source: np.ndarray, frames: int, count: int, *, planar: bool = False) -> list[np.ndarray]:
    """The first ``count`` blocks of ``source``, each a contiguous copy (channels-first if planar)."""
    out = []
    for i in range(count):
        block = source[i * frames:(i + 1) * frames]
        out.append(np.ascontiguousarray(block.T if planar else block))
    return out
