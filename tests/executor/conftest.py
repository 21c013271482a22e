"""Fixtures for the executor tests: real example plugins built from source, installed into a
temporary plugins directory, driven through the real runtime and the real component executor.

Builds are cached by the plugin builder (by source hash) and compiled components by the
executor's on-disk cache, both under the normal stellatune cache directory, so only the first
run pays for componentize-py and Cranelift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stellatune import package
from stellatune.executor import ComponentExecutor, InstanceLimits
from stellatune.paths import default_cache_dir
from stellatune.runtime import WasmPluginRuntime


@pytest.fixture(scope="session")
def compile_cache() -> Path:
    return default_cache_dir()


@pytest.fixture
def limits() -> InstanceLimits:
    # Short deadlines keep the hang test quick; real calls of the examples take milliseconds.
    return InstanceLimits(call_timeout_s=3.0, hook_timeout_s=3.0)


@pytest.fixture
def executor(tmp_path: Path, compile_cache: Path, limits: InstanceLimits) -> Iterator[ComponentExecutor]:
    ex = ComponentExecutor(cache_dir=compile_cache, log_dir=tmp_path / "logs", limits=limits)
    yield ex
    ex.shutdown()


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    return d


@pytest.fixture
def runtime(plugins_dir: Path, executor: ComponentExecutor) -> Iterator[WasmPluginRuntime]:
    rt = WasmPluginRuntime(plugins_dir, executor)
    yield rt
    rt.shutdown()


@pytest.fixture
def install(runtime: WasmPluginRuntime, plugins_dir: Path, built: Callable[[str], Path]) -> Callable[[str], str]:
    """``install(name)`` installs the built example and syncs; returns the plugin id."""

    def go(name: str) -> str:
        installed = package.install_from_artifact(plugins_dir, built(name))
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        assert runtime.is_active(installed.id)
        return installed.id

    return go


@pytest.fixture
def hooks(executor: ComponentExecutor) -> Callable[[str], list[str]]:
    """``hooks(plugin_id)`` → the lifecycle hook lines the example plugin printed to its log."""

    def read(plugin_id: str) -> list[str]:
        path = executor.log_path(plugin_id)
        text = path.read_text() if path.exists() else ""
        lines = (ln.split(": ", 1) for ln in text.splitlines() if not ln.startswith("[stellatune]"))
        return [msg for _, msg in (p for p in lines if len(p) == 2) if re.match(r"(v\d+ )?on-(enable|disable)", msg)]

    return read


def make_tone(frames: int = 4800, channels: int = 2) -> np.ndarray:
    t = np.arange(frames) / 48000.0
    cols = [0.5 * np.sin(2 * np.pi * (440 + 110 * c) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    """``tone(frames, channels)`` → a float32 test signal, one sine per channel."""
    return make_tone


@pytest.fixture
def wav_file(tmp_path: Path) -> Callable[..., Path]:
    """``wav_file(name, frames, subtype=...)`` writes a 48 kHz WAV and returns its path."""

    def write(name: str, frames: np.ndarray, subtype: str = "PCM_16", rate: int = 48000) -> Path:
        path = tmp_path / name
        sf.write(path, frames, rate, subtype=subtype, format="WAV")
        return path

    return write
