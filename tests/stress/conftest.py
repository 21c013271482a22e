"""Shared pieces of the stress tests: a real runtime over a real executor on a fresh plugins
directory (compiled components from the user cache, as tests/host_e2e), the example plugins
installed into it, and a snapshot of the process (descriptors, threads, children, RSS, live
stages/stores/instances/sidecars, sidecar ring files) to compare before and after a run."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from stellatune import diagnostics, package
from stellatune.executor import ComponentExecutor, GrantedHostServices
from stellatune.paths import default_cache_dir
from stellatune.runtime import WasmPluginRuntime

from ..conftest import memfds, rss_kb

RATE = 48000
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
#: The example DSPs with a hot path, and their benchmark settings (real work in every kernel).
HOT_DSPS = {
    "gain": ("dev.stellatune.example.gain", "gain", {"gain_db": -6.0}),
    "eq": (
        "dev.stellatune.example.eq",
        "eq",
        {"low_gain_db": 3.0, "mid1_gain_db": -4.0, "mid2_gain_db": 2.0, "high_gain_db": -2.0},
    ),
    "compressor": (
        "dev.stellatune.example.compressor",
        "compressor",
        {"threshold_db": -18.0, "ratio": 4.0, "attack_ms": 10.0, "release_ms": 100.0},
    ),
    "delay": ("dev.stellatune.example.delay", "delay", {"time_ms": 250.0, "feedback": 0.35, "mix": 0.3}),
}

try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def spec(name: str, **overrides: float) -> str:
    """``PLUGIN_ID:TYPE_ID:CONFIG`` of a hot-path example with its benchmark settings."""
    import json

    plugin_id, type_id, config = HOT_DSPS[name]
    return f"{plugin_id}:{type_id}:{json.dumps({**config, **overrides})}"


def all_examples() -> list[str]:
    return sorted(d.name for d in EXAMPLES.iterdir() if (d / "plugin.json").is_file())


@pytest.fixture
def services() -> GrantedHostServices:
    return GrantedHostServices()


@pytest.fixture
def env(tmp_path: Path, services: GrantedHostServices) -> Iterator[tuple[WasmPluginRuntime, ComponentExecutor]]:
    executor = ComponentExecutor(cache_dir=default_cache_dir(), host_services=services, log_dir=tmp_path / "logs")
    (tmp_path / "plugins").mkdir()
    runtime = WasmPluginRuntime(tmp_path / "plugins", executor)
    yield runtime, executor
    runtime.shutdown()
    executor.shutdown()


@pytest.fixture
def install_examples(env, built) -> Callable[..., dict[str, str]]:
    """``install_examples(*names)`` (default: every example): installs, syncs once; name -> id."""

    def go(*names: str) -> dict[str, str]:
        runtime = env[0]
        ids = {n: package.install_from_artifact(runtime.plugins_dir, built(n)).id for n in names or all_examples()}
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        return ids

    return go


def noise(frames: int, channels: int = 2, seed: int = 99) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((frames, channels), dtype=np.float32) - np.float32(0.5)) * np.float32(0.5)


def ring_files(services: Optional[GrantedHostServices]) -> int:
    """Files (rings, doorbells, sockets, FIFOs) in the sidecar manager's runtime directory."""
    if services is None or services._sidecars is None:  # never started a sidecar
        return 0
    base = services._sidecars.runtime_dir
    if base is None or not base.exists():
        return 0
    return sum(1 for p in base.rglob("*") if not p.is_dir())


def snapshot(children: Callable[[], set[int]], services: Optional[GrantedHostServices] = None) -> dict[str, Any]:
    """The process after a full collection, with free heap given back to the kernel."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    counts = diagnostics.live_counts()
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "memfds": memfds(),
        "threads": threading.active_count(),
        "tasks": len(os.listdir("/proc/self/task")),
        "children": sorted(children()),
        "rss_kb": rss_kb(),
        "ring_files": ring_files(services),
        **{k: counts.get(k, 0) for k in diagnostics.COUNTERS},
    }
