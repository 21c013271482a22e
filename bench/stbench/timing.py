"""Noise-resistant timing: cases measured in interleaved rounds, medians of the rounds.

The machines are shared and noisy; a burst of load hits whichever case is running. Running every
case once per round (in a rotating order) spreads a burst over all of them, and the median of
the rounds drops it. Each case returns its own figure (ns per block, ns per frame...), so the
setup it needs stays outside the clock.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from stellatune.engine import Chain, HotPathStage
from stellatune.errors import StellatuneError

from .kernels import CHANNELS, SAMPLE_RATE

Case = Callable[[], float]


def interleaved_rounds(cases: Mapping[str, Case], rounds: int) -> dict[str, list[float]]:
    """Run every case once per round, rotating the order; return each case's figures by round."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(cases[name]())
    return samples


def interleaved_medians(cases: Mapping[str, Case], rounds: int) -> dict[str, float]:
    """Each case's median over :func:`interleaved_rounds`."""
    return {name: statistics.median(values) for name, values in interleaved_rounds(cases, rounds).items()}


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of the ratio within each round: load that drifts between rounds hits
    both sides of a round alike and cancels."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=False))


def paired_difference(minuend: Sequence[float], subtrahend: Sequence[float]) -> float:
    """Median over rounds of the difference within each round (see :func:`paired_ratio`)."""
    return statistics.median(a - b for a, b in zip(minuend, subtrahend, strict=False))


class BenchmarkError(StellatuneError):
    """A measurement could not be taken (a stage kept faulting, so its figure would be wrong)."""


#: Rounds in a row a chain case may lose to a stage fault before the run gives up.
_ATTEMPTS = 5


class ChainCase:
    """ns per block of the engine's C block loop running a chain over ``source``.

    The chain-level entry point (``Chain.time_blocks`` over one stage times it on one block): one
    nogil call of the chain over all of ``source`` in blocks of ``frames``, so no Python runs per
    block. The figure includes what the engine pays around each call (copies into and out of
    linear memory, frame-count and memory-size checks, its own per-call clock reads). Each round
    restores the input first (outside the clock): processing in place would otherwise feed a
    kernel its own output round after round.

    A stage the engine bypassed mid-round (a fault), or that skipped blocks after overrunning its
    deadline (a watchdog timeout on a loaded machine), would make the round look fast, so such a
    round is logged in ``faults``, the stages are
    rebuilt with ``make_stages`` and the round is taken again.
    """

    def __init__(
        self,
        make_stages: Callable[[], list[HotPathStage]],
        frames: int,
        source: np.ndarray,
        label: str,
        faults: list[dict],
    ):
        self._make_stages = make_stages
        self.frames = frames
        self.label = label
        self.faults = faults
        self._blocks = len(source) // frames
        self._source = np.ascontiguousarray(source[: self._blocks * frames], dtype=np.float32)
        self._work = np.empty_like(self._source)
        self._build()

    def _build(self) -> None:
        self.stages = self._make_stages()
        self._pipeline = Chain(self.stages, SAMPLE_RATE, CHANNELS, block_frames=self.frames)
        self._round()  # untimed: the first touch of fresh linear memory costs page faults

    def _round(self) -> float:
        np.copyto(self._work, self._source)
        with self._pipeline.running() as chain:
            t0 = time.perf_counter_ns()
            chain.process(self._work)
            elapsed = time.perf_counter_ns() - t0
        return elapsed / self._blocks

    def __call__(self) -> float:
        for _ in range(_ATTEMPTS):
            timeouts = [s.stats().timeouts for s in self.stages]
            ns = self._round()
            faulted = [(i, s.fault) for i, s in enumerate(self.stages) if s.fault is not None]
            # The engine skips a block whose call overran its deadline without bypassing the stage
            # (only three in a row do): such a round is as misleading as a faulted one.
            skipped = [i for i, s in enumerate(self.stages) if s.fault is None and s.stats().timeouts != timeouts[i]]
            if not faulted and not skipped:
                return ns
            for index, fault in faulted:
                self.faults.append(
                    {
                        "case": self.label,
                        "stage": self.stages[index].name,
                        "kind": fault.kind,
                        "block": fault.block,
                        "message": (fault.message.strip().splitlines() or [""])[-1].strip(),
                    }
                )
            for index in skipped:
                self.faults.append(
                    {
                        "case": self.label,
                        "stage": self.stages[index].name,
                        "kind": "timeout (blocks skipped)",
                        "block": -1,
                        "message": "",
                    }
                )
            self.close()
            self._build()
        raise BenchmarkError(
            f"{self.label}: a stage faulted in {_ATTEMPTS} rounds in a row"
            f" (last: {self.faults[-1]['stage']}, {self.faults[-1]['kind']})"
        )

    def close(self) -> None:
        """Drop the stages."""
        for stage in self.stages:
            stage.close()


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
        block = source[i * frames : (i + 1) * frames]
        out.append(np.ascontiguousarray(block.T if planar else block))
    return out
