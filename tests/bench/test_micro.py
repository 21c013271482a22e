"""Micro-benchmarks with pytest-benchmark (``scripts/test -m bench tests/bench/test_micro.py``).

Each times one small thing and asserts that it did it right; none asserts a time (the numbers
are pytest-benchmark's table, and ``--benchmark-json`` keeps them). The example gain plugin is
built, installed and synced by a real runtime whose host is a real ComponentExecutor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from stellatune import package
from stellatune.abi import Role
from stellatune.compose import build_dsp_stage
from stellatune.engine import Chain, ComponentStage
from stellatune.errors import PluginContractError
from stellatune.executor import AudioSpec, ComponentExecutor
from stellatune.executor.boundary import Boundary
from stellatune.runtime import WasmPluginRuntime

pytestmark = pytest.mark.bench

GAIN = "dev.stellatune.example.gain"
RATE = 48000
FRAMES = 128
HALF = 10 ** (-6.0206 / 20)  # -6.0206 dB: x 0.5


@pytest.fixture
def gain_runtime(tmp_path: Path, built: Callable[[str], Path]) -> Iterator[tuple[WasmPluginRuntime, ComponentExecutor]]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    with (
        ComponentExecutor(cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs") as executor,
        WasmPluginRuntime(plugins, executor) as runtime,
    ):
        package.install_from_artifact(plugins, built("gain"))
        assert not runtime.sync_plugins().errors
        yield runtime, executor


@pytest.fixture
def block() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((FRAMES, 2), dtype=np.float32) - 0.5


def test_hot_path_gain_block_through_chain_process(benchmark, gain_runtime, block):
    runtime, executor = gain_runtime
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": -6.0206}, RATE, 2)
    try:
        assert stage.route == "hot-path"
        pipe = Chain([stage], RATE, 2, block_frames=FRAMES)
        out = benchmark(pipe.process, block)
        np.testing.assert_allclose(out, block * HALF, rtol=1e-5, atol=1e-7)
        assert stage.fault is None
    finally:
        stage.close()


def test_component_path_gain_call(benchmark, gain_runtime, block):
    """One block through the plugin component's own ``process`` (the component-path fallback)."""
    _, executor = gain_runtime
    processor = executor.dsp(GAIN, "gain").create(AudioSpec(RATE, 2), json.dumps({"gain_db": -6.0206}))
    stage = ComponentStage(
        name="gain (component)",
        role=Role.DSP_TRANSFORM,
        sample_rate=RATE,
        channels=2,
        process=processor.process,
        fallback_reason="benchmark",
        close=processor.close,
    )
    try:

        def one_block() -> np.ndarray:
            buf = block.copy()
            stage.run(buf)
            return buf

        out = benchmark(one_block)
        np.testing.assert_allclose(out, block * HALF, rtol=1e-5, atol=1e-7)
        assert stage.fault is None and stage.stats().calls > 0
    finally:
        stage.close()


def test_boundary_checks(benchmark):
    check = Boundary("dev.bench", "dsp:gain")

    def checks() -> tuple:
        return (
            check.sample_rate("sample_rate", 48000),
            check.channels("channels", 2),
            check.frames("frames", FRAMES),
            check.rel_path("wasm_rel_path", "wasm/gain.hotpath.wasm"),
            check.text("name", "Gain"),
        )

    assert benchmark(checks) == (48000, 2, FRAMES, "wasm/gain.hotpath.wasm", "Gain")
    with pytest.raises(PluginContractError, match="sample_rate"):
        check.sample_rate("sample_rate", 0)
    with pytest.raises(PluginContractError, match="leaves the package"):
        check.rel_path("wasm_rel_path", "../escape.wasm")
