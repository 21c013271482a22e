"""The slower ways to run the same kernels, one block per call: the component path, a
wasmtime-py call, numpy/scipy and pedalboard; plus pedalboard's 4-effect chain offline."""

import numpy as np
import pytest

from stbench.baselines import WasmtimePyKernel, numpy_kernel, pedalboard_block, pedalboard_plugin
from stbench.kernels import CONFIGS, EQ_ONE_PEAK, KERNELS, SAMPLE_RATE, noise
from stbench.offline import CHAIN

FRAMES = 256


@pytest.mark.parametrize("path", ["component", "wasmtime-py", "numpy", "pedalboard"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_per_block(benchmark, ws, name, path):
    benchmark.group = f"{name} @ {FRAMES} frames, one call per block"
    block = noise(FRAMES)
    if path == "component":
        process = ws.component_processor(name).process
    elif path == "wasmtime-py":
        process = WasmtimePyKernel(ws.wasm_path(name), CONFIGS[name]).process
    elif path == "numpy":
        process = numpy_kernel(name, CONFIGS[name])
    else:
        process = pedalboard_block(pedalboard_plugin(name, CONFIGS[name]))
        block = np.ascontiguousarray(block.T)
    benchmark.pedantic(process, args=(block,), rounds=20 if path == "component" else 200, warmup_rounds=2)


def test_pedalboard_chain_offline(benchmark):
    """gain → peak → compressor → delay over 1 s of audio (compare: the chain in report.py)."""
    import pedalboard as pb

    configs = {name: (EQ_ONE_PEAK if name == "eq" else CONFIGS[name]) for name in CHAIN}
    board = pb.Pedalboard([pedalboard_plugin(name, configs[name]) for name in CHAIN])
    audio = np.ascontiguousarray(noise(SAMPLE_RATE).T)
    benchmark.extra_info["frames"] = SAMPLE_RATE
    benchmark.pedantic(board.process, args=(audio, SAMPLE_RATE), rounds=10, warmup_rounds=1)
