"""SDK test fixtures: the example C plugins built once per session (through the builder's
cache), and drivers that run their hot-path modules (wasm through wasmtime-py, native through
ctypes) and their components (wasmtime.component) at control-plane speed."""

from __future__ import annotations

import ctypes
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import pytest
import wasmtime
from wasmtime.component import Component, Linker, Record

from stellatune import abi
from stellatune.sdk.cbuild import build_c_plugin

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "plugins"
PLUGINS = ["gain", "eq", "compressor", "delay", "passthrough-sink"]
DSP_PLUGINS = ["gain", "eq", "compressor", "delay"]
SCRATCH = abi.SDK_SCRATCH_OFFSET
OUT_CTX = SCRATCH + abi.SCRATCH_OUT_CTX
OUT_FRAMES = SCRATCH + abi.SCRATCH_OUT_FRAMES
OUT_FLAGS = SCRATCH + abi.SCRATCH_OUT_FLAGS
TYPE_ONLY_INTERFACES = ("stellatune:plugin/common@0.1.0", "stellatune:plugin/hot-path@0.1.0")


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """name -> staged package directory of every example plugin."""
    out = tmp_path_factory.mktemp("plugins")
    with ThreadPoolExecutor(max_workers=2) as pool:
        roots = pool.map(lambda n: build_c_plugin(EXAMPLES / n, out / n), PLUGINS)
        return dict(zip(PLUGINS, roots, strict=True))


@pytest.fixture(scope="session")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


class HotModule:
    """A hot-path module driven through ABI v1, the way the engine does, with its memory at B."""

    channels: int
    ctx: int

    # --- per build: memory access and the raw exports ---------------------------------------
    def write(self, offset: int, data: bytes) -> None:
        raise NotImplementedError

    def read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def call(self, name: str, *args: Any) -> Any:
        raise NotImplementedError

    def has(self, name: str) -> bool:
        raise NotImplementedError

    # --- the ABI ----------------------------------------------------------------------------
    def u32(self, offset: int) -> int:
        return int.from_bytes(self.read(offset, 4), "little")

    def init(
        self,
        channels: int = 2,
        sample_rate: int = 48000,
        max_frames: int = 1024,
        role: abi.Role = abi.Role.DSP_TRANSFORM,
        args: Optional[bytes] = None,
    ) -> int:
        """Returns init's code; on success ``self.ctx`` is the new context."""
        out = abi.SDK_OUT_OFFSET if role is abi.Role.DSP_TRANSFORM else None
        self.write(SCRATCH, args or abi.pack_init_args(role, sample_rate, channels, max_frames, abi.SDK_IN_OFFSET, out))
        rc = self.call("st_hot_init", SCRATCH, OUT_CTX)
        if rc == 0:
            self.ctx, self.channels = self.u32(OUT_CTX), channels
        return rc

    def run(self, block: np.ndarray, ctx: Optional[int] = None) -> tuple[int, int, int, bytes]:
        """One block: (code, out_frames, flags, output bytes of the DSP's out region)."""
        block = np.ascontiguousarray(block, dtype="<f4")
        frames = block.shape[0]
        self.write(abi.SDK_IN_OFFSET, block.tobytes())
        rc = self.call("st_hot_process", self.ctx if ctx is None else ctx, frames, OUT_FRAMES, OUT_FLAGS)
        out = self.read(abi.SDK_OUT_OFFSET, block.nbytes)
        return rc, self.u32(OUT_FRAMES), self.u32(OUT_FLAGS), out

    def process(self, block: np.ndarray) -> np.ndarray:
        """A DSP block that must succeed; the output frames."""
        rc, frames, flags, out = self.run(block)
        assert (rc, frames, flags) == (0, block.shape[0], 0)
        return np.frombuffer(out, dtype="<f4").reshape(block.shape).copy()

    def process_all(self, signal: np.ndarray, block_frames: int) -> np.ndarray:
        return np.concatenate(
            [self.process(signal[i : i + block_frames]) for i in range(0, signal.shape[0], block_frames)]
        )

    def param_names(self) -> list[str]:
        offset = self.call("st_hot_param_names")
        if offset == 0:
            return []
        raw = self.read(offset, abi.SDK_SCRATCH_OFFSET - offset)
        return raw[: raw.index(b"\0\0")].decode().split("\0")

    def set_param(self, name: str, value: float) -> int:
        return self.call("st_hot_set_param", self.ctx, self.param_names().index(name), float(value))

    def configure(self, **params: float) -> None:
        for name, value in params.items():
            assert self.set_param(name, value) == 0, name


class WasmHotModule(HotModule):
    """The wasm core module in its own store, as the engine would load it."""

    def __init__(self, engine: wasmtime.Engine, path: Path):
        self.store = wasmtime.Store(engine)
        module = wasmtime.Module.from_file(engine, str(path))
        self.module = module
        self.instance = wasmtime.Instance(self.store, module, [])
        self.exports = self.instance.exports(self.store)
        self.memory: wasmtime.Memory = self.exports["memory"]

    def write(self, offset: int, data: bytes) -> None:
        self.memory.write(self.store, data, offset)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.memory.read(self.store, offset, offset + size))

    def call(self, name: str, *args: Any) -> Any:
        return self.exports[name](self.store, *args)

    def has(self, name: str) -> bool:
        return name in [e.name for e in self.module.exports]


class NativeHotModule(HotModule):
    """The native baseline; each driver loads a private copy so contexts never leak between tests."""

    SIGNATURES: ClassVar[dict[str, tuple[Any, list[Any]]]] = {
        "st_hot_init": (ctypes.c_int32, [ctypes.c_uint32, ctypes.c_uint32]),
        "st_hot_process": (ctypes.c_int32, [ctypes.c_uint32] * 4),
        "st_hot_reset": (ctypes.c_int32, [ctypes.c_uint32, ctypes.c_uint32]),
        "st_hot_drop": (None, [ctypes.c_uint32]),
        "st_hot_param_names": (ctypes.c_uint32, []),
        "st_hot_set_param": (ctypes.c_int32, [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_float]),
        "st_hot_native_memory": (ctypes.c_void_p, []),
        "st_sink_frames_consumed": (ctypes.c_uint64, [ctypes.c_uint32]),
        "st_sink_checksum": (ctypes.c_uint64, [ctypes.c_uint32]),
    }

    def __init__(self, path: Path, private_dir: Path):
        private_dir.mkdir(parents=True, exist_ok=True)
        copy = Path(tempfile.mkstemp(suffix=".so", dir=private_dir)[1])
        shutil.copyfile(path, copy)
        self.lib = ctypes.CDLL(str(copy))
        self.base = self.call("st_hot_native_memory")

    def write(self, offset: int, data: bytes) -> None:
        assert offset + len(data) <= abi.SDK_ARENA_END
        ctypes.memmove(self.base + offset, data, len(data))

    def read(self, offset: int, size: int) -> bytes:
        assert offset + size <= abi.SDK_ARENA_END
        return ctypes.string_at(self.base + offset, size)

    def call(self, name: str, *args: Any) -> Any:
        fn = getattr(self.lib, name)
        fn.restype, fn.argtypes = self.SIGNATURES[name]
        return fn(*args)

    def has(self, name: str) -> bool:
        return hasattr(self.lib, name)


@pytest.fixture
def hot(built, engine):
    """``hot(name)``: a fresh wasm hot-path instance of an example plugin."""
    return lambda name: WasmHotModule(engine, built[name] / "wasm" / f"{name}.hotpath.wasm")


@pytest.fixture
def native(built, tmp_path):
    """``native(name)``: a fresh private load of an example plugin's native baseline."""
    return lambda name: NativeHotModule(built[name] / "native" / f"{name}.so", tmp_path / "so")


class ComponentDriver:
    """One instance of a plugin's component, with its capability interface's functions by name."""

    def __init__(self, engine: wasmtime.Engine, component: Component, interface: str):
        self.component = component
        linker = Linker(engine)
        with linker.root() as root:
            # Interfaces that only define types are still imports; they carry no functions.
            for name in TYPE_ONLY_INTERFACES:
                with root.add_instance(name):
                    pass
        self.linker = linker
        self.store = wasmtime.Store(engine)
        self.instance = linker.instantiate(self.store, self.component)
        self.interface = interface

    def func(self, name: str, interface: Optional[str] = None):
        iface = self.instance.get_export_index(self.store, interface or self.interface)
        index = self.instance.get_export_index(self.store, name, iface)
        assert index is not None, name
        return self.instance.get_func(self.store, index)

    def __call__(self, name: str, *args: Any) -> Any:
        return self.func(name)(self.store, *args)

    @staticmethod
    def spec(sample_rate: int, channels: int) -> Record:
        """A WIT ``audio-spec`` value."""
        spec = Record()
        setattr(spec, "sample-rate", sample_rate)
        spec.channels = channels
        return spec


@pytest.fixture(scope="session")
def compiled_components(built, engine) -> dict[str, Component]:
    return {
        name: Component.from_file(engine, str(root / "wasm" / f"{name}.component.wasm")) for name, root in built.items()
    }


@pytest.fixture
def component(compiled_components, engine):
    """``component(name)``: a fresh instance (own store) of an example plugin's component."""

    def make(name: str) -> ComponentDriver:
        iface = "stellatune:plugin/output-sink@0.1.0" if name == "passthrough-sink" else "stellatune:plugin/dsp@0.1.0"
        return ComponentDriver(engine, compiled_components[name], iface)

    return make


@pytest.fixture
def noise():
    """``noise(frames, channels=2, amplitude=0.5)``: seeded float32 noise."""
    rng = np.random.default_rng(20261122)
    return lambda frames, channels=2, amplitude=0.5: ((rng.random((frames, channels)) * 2 - 1) * amplitude).astype(
        np.float32
    )
