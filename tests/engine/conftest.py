"""Engine test fixtures: kernels compiled from tests/engine/fixtures/*.c, and a JACK dummy server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stellatune.abi import BufferLayout, CoreModuleSpec, Role

FIXTURES = Path(__file__).parent / "fixtures"

# The fixed memory map of fixtures/fixture.h.
FX_ARENA = 0x20000
FX_MAX_FRAMES = 1024
FX_IN = FX_ARENA + 64
FX_OUT = FX_IN + FX_MAX_FRAMES * 2 * 4
FX_STATE = FX_OUT + FX_MAX_FRAMES * 2 * 4 + 256  # after the parameter names

WASM_FLAGS = [
    "--target=wasm32",
    "-O2",
    "-msimd128",
    "-nostdlib",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=16384",
    "-Wl,--initial-memory=327680",
]
#: name -> (source, extra defines, also build native)
KERNELS = {
    "gain": ("gain.c", [], True),
    "sink": ("sink.c", [], False),
    "sink_full": ("sink.c", ["-DFX_WOULD_BLOCK"], False),
    "trap": ("hostile.c", ["-DFX_TRAP"], False),
    "loop": ("hostile.c", ["-DFX_LOOP"], False),
    "grow": ("hostile.c", ["-DFX_GROW"], False),
    "bad_frames": ("hostile.c", ["-DFX_BAD_FRAMES"], True),
    "error": ("hostile.c", ["-DFX_ERROR"], False),
    "stall": ("stall.c", [], False),
}


def fixture_spec(role: Role = Role.DSP_TRANSFORM, channels: int = 2) -> CoreModuleSpec:
    return CoreModuleSpec(
        role=role,
        wasm_rel_path="fixture.wasm",
        buffer=BufferLayout(
            in_offset=FX_IN,
            out_offset=FX_OUT if role is Role.DSP_TRANSFORM else None,
            max_frames=FX_MAX_FRAMES,
            channels=channels,
        ),
    )


@pytest.fixture(scope="session")
def spec():
    """``spec(role=..., channels=...)``: the CoreModuleSpec of a fixture kernel."""
    return fixture_spec


@pytest.fixture(scope="session")
def sink_totals():
    """``sink_totals(stage)``: (frames consumed, sum of their samples) the sink fixture kept."""

    def read(stage) -> tuple[int, float]:
        store, memory = stage._wasm_memory
        frames, total = np.frombuffer(bytes(memory.read(store, FX_STATE, FX_STATE + 16)), dtype="<u8,<f8")[0]
        return int(frames), float(total)

    return read


@pytest.fixture
def noise():
    """``noise(frames, channels=2)``: seeded float32 noise in [-0.5, 0.5)."""
    rng = np.random.default_rng(1234)
    return lambda frames, channels=2: rng.random((frames, channels), dtype=np.float32) - 0.5


@pytest.fixture(scope="session")
def kernels(tmp_path_factory) -> dict[str, Path]:
    """Compile every fixture kernel: ``kernels["gain"]`` (wasm) and ``kernels["gain.so"]``."""
    clang = shutil.which("clang-14") or shutil.which("clang")
    if clang is None:
        pytest.fail("clang-14 is required to build the engine's fixture kernels")
    out = tmp_path_factory.mktemp("kernels")
    built: dict[str, Path] = {}
    for name, (src, defines, native) in KERNELS.items():
        wasm = out / f"{name}.wasm"
        subprocess.run([clang, *WASM_FLAGS, *defines, "-o", str(wasm), str(FIXTURES / src)], check=True)
        built[name] = wasm
        if native:
            so = out / f"{name}.so"
            subprocess.run([clang, "-O2", "-shared", "-fPIC", *defines, "-o", str(so), str(FIXTURES / src)], check=True)
            built[f"{name}.so"] = so
    return built
