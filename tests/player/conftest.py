"""Player fixtures: the example plugins installed into a temporary plugins directory, synced by a
real runtime over a real ComponentExecutor (as tests/compose/conftest.py), and a helper that
runs a player on the offline ``file:`` output and returns what it rendered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from stellatune import package
from stellatune.executor import ComponentExecutor
from stellatune.runtime import WasmPluginRuntime

RATE = 48000
GAIN = "dev.stellatune.example.gain"
PYGAIN = "dev.stellatune.example.pygain"


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
    def go(*names: str) -> list[str]:
        ids = [package.install_from_artifact(runtime.plugins_dir, built(n)).id for n in names]
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        return ids

    return go


@pytest.fixture
def noise() -> Callable[..., np.ndarray]:
    rng = np.random.default_rng(7)
    return lambda frames, channels=2: rng.random((frames, channels), dtype=np.float32) - 0.5


def db(x: float) -> float:
    return float(10.0 ** (x / 20.0))


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """A JACK dummy server of our own at 48 kHz / 128 frames (as tests/engine/conftest.py)."""
    import os
    import shutil
    import subprocess
    import uuid

    script = Path(__file__).resolve().parents[2] / "scripts" / "virtual-audio"
    if shutil.which("jackd") is None:
        pytest.fail("jackd (Debian jackd2) is required for the audio tests")
    name = f"st-player-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path_factory.mktemp("xdg")))
    subprocess.run(
        [str(script), "start", "--name", name, "--frames", "128"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield name
    finally:
        subprocess.run([str(script), "stop", "--name", name], env=env, check=False)
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
