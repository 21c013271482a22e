"""pytest-benchmark suite: ``.venv/bin/python -m pytest bench/ --benchmark-only``.

These files time the same cases as bench/report.py, one pytest-benchmark entry each, for
comparing runs over time (``--benchmark-autosave`` / ``--benchmark-compare``). The hot-path
entries time one nogil pass of the engine's block loop over ``extra_info["blocks"]`` blocks:
divide by it for the cost of one block.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stbench.kernels import CHANNELS, SAMPLE_RATE, Workspace, noise
from stellatune.engine import Chain

#: Frames each hot-path benchmark call processes.
HOT_FRAMES = 16384


@pytest.fixture(scope="session")
def ws():
    with Workspace() as workspace:
        yield workspace


@pytest.fixture
def time_chain(benchmark):
    """``time_chain(stages, frames)``: benchmark the engine's block loop over HOT_FRAMES frames."""
    held = []

    def run(stages, frames: int) -> None:
        pipeline = Chain(stages, SAMPLE_RATE, CHANNELS, block_frames=frames)
        source = noise(HOT_FRAMES)
        work = np.empty_like(source)
        running = pipeline.running()
        chain = running.__enter__()
        held.append(running)

        def restore_input():
            np.copyto(work, source)  # outside the clock; in-place processing would compound
            return (work,), {}

        benchmark.extra_info["blocks"] = HOT_FRAMES // frames
        benchmark.extra_info["frames_per_block"] = frames
        benchmark.pedantic(chain.process, setup=restore_input, rounds=200, warmup_rounds=5)
        # A stage the engine bypassed (e.g. a watchdog timeout under load) makes the figure meaningless.
        faults = [(s.name, s.fault.kind) for s in stages if s.fault is not None]
        assert not faults, f"stages bypassed during the benchmark: {faults}"

    yield run
    for running in held:
        running.__exit__(None, None, None)
