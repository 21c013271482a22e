"""Faults in the middle and at the end of a chain, and memory growth outside st_hot_process.

The engine checks the memory size right after every call into a module (process, set_param,
reset) and hands a stage's output straight to the next stage's input, copying the block back to
the caller once after the last stage. These tests pin down what that must preserve: a faulted
stage is skipped with the block passing through it untouched, wherever it sits in the chain,
even though the faulting call scribbled over its own in and out regions first."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stellatune.engine import Chain, HotPathStage
from stellatune.errors import EngineError

FIXTURES = Path(__file__).parent / "fixtures"
# The same target and memory map as conftest.py's kernels (5 initial pages).
WASM_FLAGS = [
    "--target=wasm32",
    "-O2",
    "-msimd128",
    "-nostdlib",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=16384",
    "-Wl,--initial-memory=327680",
]
#: build name -> compile-time fault of fixtures/scribble.c ("plain": none)
SCRIBBLE_FAULTS = {
    "plain": None,
    "trap": "FX_TRAP",
    "grow": "FX_GROW",
    "bad_frames": "FX_BAD_FRAMES",
    "error": "FX_ERROR",
}
NATIVE_BUILDS = ("bad_frames", "error")  # the faults a native build can commit
BLOCK = 256
FAULT_AFTER = 3  # the scribbling stage faults on the fourth block


@pytest.fixture(scope="module")
def scribble(tmp_path_factory) -> dict[str, Path]:
    """Builds of fixtures/scribble.c: ``scribble["trap"]`` (wasm), ``scribble["error.so"]``."""
    clang = shutil.which("clang-14") or shutil.which("clang")
    if clang is None:
        pytest.fail("clang-14 is required to build the engine's fixture kernels")
    out = tmp_path_factory.mktemp("scribble")
    src = str(FIXTURES / "scribble.c")
    built = {}
    for name, define in SCRIBBLE_FAULTS.items():
        defines = [f"-D{define}"] if define else []
        built[name] = out / f"{name}.wasm"
        subprocess.run([clang, *WASM_FLAGS, *defines, "-o", str(built[name]), src], check=True)
        if name in NATIVE_BUILDS:
            built[f"{name}.so"] = out / f"{name}.so"
            subprocess.run(
                [clang, "-O2", "-shared", "-fPIC", *defines, "-o", str(built[f"{name}.so"]), src], check=True
            )
    return built


def gain(kernels, spec, value: float, native: bool) -> HotPathStage:
    if native:
        return HotPathStage.from_native(kernels["gain.so"], spec(), 48000, 2, {"gain": value})
    return HotPathStage.from_wasm(kernels["gain"], spec(), 48000, 2, {"gain": value})


def scribbler(scribble, spec, build: str, native: bool = False, **config) -> HotPathStage:
    if native:
        return HotPathStage.from_native(scribble[f"{build}.so"], spec(), 48000, 2, config)
    return HotPathStage.from_wasm(scribble[build], spec(), 48000, 2, config)


# --- memory growth inside set_param / reset ------------------------------------------------


def test_memory_grown_in_set_param_bypasses_the_stage_idle(kernels, spec, scribble, noise):
    before, after = gain(kernels, spec, 0.5, False), gain(kernels, spec, 0.25, True)
    grower = scribbler(scribble, spec, "plain", gain=2.0)
    pipe = Chain([before, grower, after], 48000, 2, block_frames=BLOCK)
    x = noise(BLOCK * 4)
    half, quarter, two = np.float32(0.5), np.float32(0.25), np.float32(2.0)
    np.testing.assert_array_equal(pipe.process(x), ((x * half) * two) * quarter)
    grower.set_param("gain", 3.0)  # an ordinary set_param leaves the memory alone
    assert grower.fault is None

    with pytest.raises(EngineError, match="bypassed after memory-grow"):
        grower.set_param("grow", 1)
    fault = grower.fault
    # (An idle call has no chain block to name, so fault.block is not checked here.)
    assert (fault.kind, fault.code, fault.message) == ("memory-grow", 0, "")
    calls = grower.stats().calls
    # Bypassed from now on: the neighbours keep processing, the grower is never called again.
    np.testing.assert_array_equal(pipe.process(x), (x * half) * quarter)
    assert grower.stats().calls == calls == 4
    assert before.fault is None and after.fault is None
    with pytest.raises(EngineError, match="bypassed after memory-grow"):
        grower.set_param("gain", 1.0)


def test_memory_grown_in_a_queued_set_param_bypasses_the_stage_before_the_next_block(kernels, spec, scribble, noise):
    """While the chain runs, set_param is queued and applied by the block loop, which must catch
    the growth itself: nothing in Python sees the call's result."""
    grower = scribbler(scribble, spec, "plain", gain=2.0)
    after = gain(kernels, spec, 0.25, False)
    pipe = Chain([grower, after], 48000, 2, block_frames=BLOCK)
    x = noise(BLOCK * 3)
    buf = x.copy()
    with pipe.running(offline=True):
        pipe.render(buf[:BLOCK])
        grower.set_param("grow", 1)  # queued, no error yet
        pipe.render(buf[BLOCK:])
    quarter, two = np.float32(0.25), np.float32(2.0)
    np.testing.assert_array_equal(buf[:BLOCK], (x[:BLOCK] * two) * quarter)
    np.testing.assert_array_equal(buf[BLOCK:], x[BLOCK:] * quarter)
    fault = grower.fault
    assert (fault.kind, fault.block) == ("memory-grow", 1)
    assert grower.stats().calls == 1 and after.stats().calls == 3


def test_memory_grown_in_reset_bypasses_the_stage(kernels, spec, scribble, noise):
    grower = scribbler(scribble, spec, "plain", gain=2.0)
    after = gain(kernels, spec, 0.25, True)
    pipe = Chain([grower, after], 48000, 2, block_frames=BLOCK)
    x = noise(BLOCK * 2)
    pipe.process(x)
    grower.set_param("grow", 2)  # arms the growth for the next reset; this call grows nothing
    assert grower.fault is None
    with pytest.raises(EngineError, match="memory-grow"):
        pipe.reset()
    assert grower.fault.kind == "memory-grow"
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(0.25))


# --- a fault in the middle or at the end of a chain ----------------------------------------

FAULTS = [  # (build, native build, expected kind, expected code)
    ("trap", False, "trap", 9),  # wasmtime TrapCode.UNREACHABLE
    ("grow", False, "memory-grow", 0),
    ("bad_frames", False, "bad-frames", BLOCK - 1),
    ("error", False, "error-code", 4),
    ("bad_frames", True, "bad-frames", BLOCK - 1),
    ("error", True, "error-code", 4),
]


@pytest.mark.parametrize(
    "build, native, kind, code", FAULTS, ids=[f"{b}-{'native' if n else 'wasm'}" for b, n, _, _ in FAULTS]
)
@pytest.mark.parametrize("where", ["middle", "end"])
@pytest.mark.parametrize(
    "neighbours", [(False, True), (True, False), (False, False)], ids=["wasm-native", "native-wasm", "wasm-wasm"]
)
def test_a_faulting_stage_passes_the_block_on_unchanged(
    kernels, spec, scribble, noise, build, native, kind, code, where, neighbours
):
    """Output equals the chain without the faulting stage on every block, the faulting one
    included, though the faulting call overwrote its own in and out regions first."""

    def gains():
        return [gain(kernels, spec, 0.5, neighbours[0]), gain(kernels, spec, 0.25, neighbours[1])]

    reference = Chain(gains(), 48000, 2, block_frames=BLOCK)
    first, second = gains()
    # gain=1 keeps its healthy blocks identical to a pass-through, so only a fault could differ.
    bad = scribbler(scribble, spec, build, native, gain=1.0, after=FAULT_AFTER)
    chain = [first, bad, second] if where == "middle" else [first, second, bad]
    pipe = Chain(chain, 48000, 2, block_frames=BLOCK)

    x = noise(BLOCK * 6)
    np.testing.assert_array_equal(pipe.process(x), reference.process(x))
    fault = bad.fault
    assert fault is not None and (fault.kind, fault.code, fault.block) == (kind, code, FAULT_AFTER)
    assert bad.stats().calls == FAULT_AFTER
    # After the fault, block by block: still exactly the chain without it.
    for start in range(0, len(x), BLOCK):
        block = x[start : start + BLOCK]
        np.testing.assert_array_equal(pipe.process(block), reference.process(block))
    assert first.fault is None and second.fault is None
    assert first.stats().calls == second.stats().calls == 12


def test_consecutive_faulting_stages_in_the_middle(kernels, spec, scribble, noise):
    """Two adjacent faulting stages, one wasm and one native: the block skips both intact."""
    first, last = gain(kernels, spec, 0.5, True), gain(kernels, spec, 0.25, False)
    trap = scribbler(scribble, spec, "trap", gain=1.0, after=1)
    bad = scribbler(scribble, spec, "bad_frames", True, gain=1.0, after=2)
    pipe = Chain([first, trap, bad, last], 48000, 2, block_frames=BLOCK)
    x = noise(BLOCK * 4)
    np.testing.assert_array_equal(pipe.process(x), (x * np.float32(0.5)) * np.float32(0.25))
    assert (trap.fault.kind, trap.fault.block) == ("trap", 1)
    assert (bad.fault.kind, bad.fault.block) == ("bad-frames", 2)
