"""Wasm hot path vs native .so (and wasm without the epoch watchdog), per kernel and block size."""

import pytest

from stbench.kernels import KERNELS

BLOCKS = [64, 128, 256, 1024]


@pytest.mark.parametrize("frames", BLOCKS)
@pytest.mark.parametrize("path", ["wasm", "native", "wasm-no-watchdog"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel(benchmark, ws, time_chain, name, path, frames):
    benchmark.group = f"{name} @ {frames} frames"
    stage = ws.stage(name, native=path == "native", epoch_interruption=path != "wasm-no-watchdog")
    time_chain([stage], frames)


@pytest.mark.parametrize("frames", BLOCKS)
@pytest.mark.parametrize("path", ["wasm", "native", "wasm-no-watchdog"])
def test_eight_empty_plugins(benchmark, ws, time_chain, path, frames):
    """The engine's fixed cost: subtract test_no_plugins and divide by 8 per block."""
    benchmark.group = f"fixed cost @ {frames} frames"
    stages = [
        ws.stage("empty", native=path == "native", epoch_interruption=path != "wasm-no-watchdog") for _ in range(8)
    ]
    time_chain(stages, frames)


@pytest.mark.parametrize("frames", BLOCKS)
def test_no_plugins(benchmark, time_chain, frames):
    benchmark.group = f"fixed cost @ {frames} frames"
    time_chain([], frames)
