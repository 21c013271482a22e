"""The kernels under test, built from source with the C SDK and loaded every way we compare:
hot-path wasm stage, native stage, component DSP processor."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import numpy as np

from stellatune import paths
from stellatune.abi import Role, sdk_core_module_spec
from stellatune.engine import HotPathStage
from stellatune.errors import StellatuneError
from stellatune.sdk.cbuild import build_c_plugin

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent
SAMPLE_RATE = 48000
CHANNELS = 2

#: The example kernels compared everywhere, in table order.
KERNELS = ("gain", "eq", "compressor", "delay")

#: Settings that make every kernel do real work (every EQ band on, the compressor above threshold
#: for the benchmark's noise, the delay's feedback path busy).
CONFIGS: dict[str, dict[str, float]] = {
    "gain": {"gain_db": -6.0},
    "eq": {"low_gain_db": 3.0, "mid1_gain_db": -4.0, "mid2_gain_db": 2.0, "high_gain_db": -2.0},
    "compressor": {"threshold_db": -18.0, "ratio": 4.0, "attack_ms": 10.0, "release_ms": 100.0},
    "delay": {"time_ms": 250.0, "feedback": 0.35, "mix": 0.3},
    "empty": {},
}
#: The EQ as one peaking band: the 4-effect chain compared with pedalboard's gain+peak+comp+delay.
EQ_ONE_PEAK = {"mid1_freq": 1000.0, "mid1_gain_db": -4.0, "mid1_q": 1.0}

_SOURCES = {name: REPO / "examples" / "plugins" / name for name in KERNELS}
_SOURCES["empty"] = BENCH_DIR / "fixtures" / "empty"


def default_cache_dir() -> Path:
    """Where built kernels and compiled components are kept between runs."""
    return paths.default_cache_dir() / "bench"


def noise(frames: int, seed: int = 1234) -> np.ndarray:
    """The benchmark input: seeded stereo noise in [-0.5, 0.5), C-ordered float32."""
    rng = np.random.default_rng(seed)
    return rng.random((frames, CHANNELS), dtype=np.float32) - np.float32(0.5)


class Workspace:
    """Built packages of every kernel plus, on demand, a component executor over them.

    Builds go through the SDK's content-keyed cache, so a second run only copies files.
    """

    def __init__(self, cache_dir: Optional[Path] = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._tmp = tempfile.TemporaryDirectory(prefix="stellatune-bench-")
        self._packages: dict[str, Path] = {}
        self._executor = None
        self._runtime = None

    def package(self, name: str) -> Path:
        """The built package directory of kernel ``name`` (plugin.json, wasm/, native/)."""
        if name not in self._packages:
            out = Path(self._tmp.name) / "packages" / name
            build_c_plugin(_SOURCES[name], out, cache_dir=self.cache_dir / "cbuild")
            self._packages[name] = out
        return self._packages[name]

    def _artifact(self, name: str, native: bool) -> Path:
        return self.package(name) / (f"native/{name}.so" if native else f"wasm/{name}.hotpath.wasm")

    def stage(
        self,
        name: str,
        *,
        native: bool = False,
        epoch_interruption: bool = True,
        config: Optional[Mapping[str, float]] = None,
    ) -> HotPathStage:
        """A fresh hot-path stage of ``name`` with its benchmark settings (or ``config``)."""
        spec = sdk_core_module_spec(f"wasm/{name}.hotpath.wasm", Role.DSP_TRANSFORM, CHANNELS)
        settings = CONFIGS[name] if config is None else config
        path = self._artifact(name, native)
        if native:
            return HotPathStage.from_native(path, spec, SAMPLE_RATE, CHANNELS, settings, name=name)
        return HotPathStage.from_wasm(
            path, spec, SAMPLE_RATE, CHANNELS, settings, name=name, epoch_interruption=epoch_interruption
        )

    def wasm_path(self, name: str) -> Path:
        """The hot-path core module of ``name``."""
        return self._artifact(name, native=False)

    def component_processor(self, name: str, config: Optional[Mapping[str, float]] = None):
        """A DSP processor of ``name`` on the component path (the original runtime's way)."""
        import json

        from stellatune.executor import AudioSpec

        executor = self._component_executor()
        capability = executor.dsp(
            f"dev.stellatune.bench.{name}" if name == "empty" else f"dev.stellatune.example.{name}", name
        )
        settings = CONFIGS[name] if config is None else config
        return capability.create(AudioSpec(SAMPLE_RATE, CHANNELS), json.dumps(settings))

    def runtime(self):
        """The plugin runtime (component executor) with every example kernel installed and active."""
        self._component_executor()
        return self._runtime

    def executor(self):
        """The component executor of :meth:`runtime` (what ``build_dsp_stage`` is given)."""
        return self._component_executor()

    def _component_executor(self):
        if self._executor is None:
            from stellatune.executor import ComponentExecutor
            from stellatune.package import install_from_artifact
            from stellatune.runtime import WasmPluginRuntime

            plugins = Path(self._tmp.name) / "plugins"
            plugins.mkdir()
            for name in KERNELS:
                install_from_artifact(plugins, self.package(name))
            self._executor = ComponentExecutor(cache_dir=self.cache_dir / "components")
            self._runtime = WasmPluginRuntime(plugins, host=self._executor)
            report = self._runtime.sync_plugins()
            if report.errors:
                raise StellatuneError("component path unavailable: " + "; ".join(map(str, report.errors)))
        return self._executor

    def close(self) -> None:
        """Shut the executor down and delete the built files."""
        if self._runtime is not None:
            self._runtime.shutdown()
            self._runtime = self._executor = None
        self._tmp.cleanup()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
