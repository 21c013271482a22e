"""The baselines do the kernels' job: comparing speeds is only fair if they compute the same
thing from the same input. Outputs are compared with the engine's wasm stage over several blocks."""

import numpy as np
import pytest

from stbench.baselines import WasmtimePyKernel, numpy_kernel, pedalboard_block, pedalboard_plugin
from stbench.kernels import CONFIGS, KERNELS, SAMPLE_RATE, Workspace, noise
from stellatune.engine import Chain

BLOCK = 256


@pytest.fixture(scope="module")
def ws():
    with Workspace() as workspace:
        yield workspace


def engine_output(ws, name, x):
    return Chain([ws.stage(name)], SAMPLE_RATE, 2, block_frames=BLOCK).process(x)


def blockwise(process, x, planar=False):
    outs = []
    for start in range(0, len(x), BLOCK):
        block = np.ascontiguousarray(x[start : start + BLOCK].T if planar else x[start : start + BLOCK])
        y = np.asarray(process(block))
        outs.append(y.T if planar else y)
    return np.concatenate(outs)


@pytest.mark.parametrize("name", KERNELS)
def test_wasmtime_py_call_runs_the_same_module_bit_for_bit(ws, name):
    x = noise(8 * BLOCK)
    kernel = WasmtimePyKernel(ws.wasm_path(name), CONFIGS[name])
    np.testing.assert_array_equal(blockwise(kernel.process, x), engine_output(ws, name, x))


@pytest.mark.parametrize("name, rtol, atol", [("gain", 0, 0), ("eq", 0, 1e-4), ("delay", 0, 1e-6)])
def test_numpy_baseline_computes_what_the_kernel_computes(ws, name, rtol, atol):
    # Longer than the 250 ms delay, so the feedback path is exercised too.
    x = noise(SAMPLE_RATE // 2 // BLOCK * BLOCK)
    got = blockwise(numpy_kernel(name, CONFIGS[name]), x)
    np.testing.assert_allclose(got, engine_output(ws, name, x), rtol=rtol, atol=atol)


def test_numpy_compressor_reduces_loud_input_like_the_kernel(ws):
    x = noise(16 * BLOCK) * np.float32(1.8)  # peaks near 0 dBFS, far above the -18 dB threshold
    ours = engine_output(ws, "compressor", x)
    approx = blockwise(numpy_kernel("compressor", CONFIGS["compressor"]), x)
    tail = slice(8 * BLOCK, None)  # after the attack
    for y in (ours, approx):
        assert np.abs(y[tail]).max() < 0.6 * np.abs(x[tail]).max()
    np.testing.assert_allclose(np.abs(approx[tail]).mean(), np.abs(ours[tail]).mean(), rtol=0.2)


def test_pedalboard_gain_is_the_same_gain(ws):
    x = noise(4 * BLOCK)
    got = blockwise(pedalboard_block(pedalboard_plugin("gain", CONFIGS["gain"])), x, planar=True)
    np.testing.assert_allclose(got, engine_output(ws, "gain", x), rtol=1e-6)
