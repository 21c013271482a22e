"""Chain fixtures: the example plugins built from source, installed into a temporary plugins
directory and synced by a real runtime whose host is a real ComponentExecutor.

Plugin builds are cached by the builder (by source hash); compiled components go to a cache
directory of this session, so the first test pays for Cranelift once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from stellatune import package
from stellatune.executor import ComponentExecutor
from stellatune.runtime import WasmPluginRuntime


@pytest.fixture(scope="session")
def component_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("component-cache")


@pytest.fixture
def executor(tmp_path: Path, component_cache: Path) -> Iterator[ComponentExecutor]:
    ex = ComponentExecutor(cache_dir=component_cache, log_dir=tmp_path / "logs")
    yield ex
    ex.shutdown()


@pytest.fixture
def runtime(tmp_path: Path, executor: ComponentExecutor) -> Iterator[WasmPluginRuntime]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    rt = WasmPluginRuntime(plugins, executor)
    yield rt
    rt.shutdown()


@pytest.fixture
def install(runtime: WasmPluginRuntime, built: Callable[[str], Path]) -> Callable[..., list[str]]:
    """``install(*names)`` installs the built examples, syncs once, returns their ids."""

    def go(*names: str) -> list[str]:
        ids = [package.install_from_artifact(runtime.plugins_dir, built(n)).id for n in names]
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        assert all(runtime.is_active(i) for i in ids)
        return ids

    return go


@pytest.fixture
def noise() -> Callable[..., np.ndarray]:
    """``noise(frames, channels=2)``: seeded float32 noise in [-0.5, 0.5)."""
    rng = np.random.default_rng(99)
    return lambda frames, channels=2: rng.random((frames, channels), dtype=np.float32) - 0.5
