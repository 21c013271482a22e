"""Churn: install → enable → build a stage → process a block → close → disable → uninstall, many
times in one process, must not leak descriptors, threads, child processes, memory or live
objects (issue #8: each cycle of a C hot-path plugin used to leave one
``memfd:wasm-memory-image`` descriptor and ~50 KB behind, so ~1000 cycles hit the fd limit).
The short form runs 400/80/40 cycles; the long form (``--full``, ``stellatune report --full``)
1000/200/100. Each phase's figures go to the report through the ``evidence`` fixture.

Each phase runs its own executor and runtime; after a warm-up (first compile, the sidecar
manager's supervisor thread, allocator arenas) it snapshots the process, runs the rest of the
cycles, and compares. Bounds, not exact values: a leak of one descriptor per cycle is hundreds
here, so a slack of a few never hides one and never flakes on a loaded machine.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stellatune import diagnostics, package
from stellatune.compose import build_dsp_stage, build_sink_stage
from stellatune.engine import Chain
from stellatune.engine.stages import clear_module_caches
from stellatune.executor import ComponentExecutor
from stellatune.paths import default_cache_dir
from stellatune.runtime import DesiredState, WasmPluginRuntime

from .conftest import memfds, snapshot

pytestmark = [pytest.mark.stress, pytest.mark.slow]

RATE, CHANNELS = 48000, 2
FD_SLACK = 3
THREAD_SLACK = 1
RSS_LIMIT_KB = 20 * 1024


def churn(
    cycle: Callable[[], None],
    cycles: int,
    warmup: int,
    children: Callable[[], set[int]],
    label: str,
    evidence: Any,  # the `evidence` fixture (tests/conftest.py)
    name: str,
) -> tuple[dict, dict, float]:
    for _ in range(warmup):
        cycle()
    start = snapshot(children)
    began = time.perf_counter()
    for _ in range(cycles - warmup):
        cycle()
    per_cycle = (time.perf_counter() - began) / (cycles - warmup)
    end = snapshot(children)
    # Threads that finish on their own (a sidecar's log drain) get a moment to be gone.
    deadline = time.monotonic() + 5.0
    while (end["threads"] > start["threads"] or set(end["children"]) - set(start["children"])) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
        end = snapshot(children)
    print(
        f"\n{label}: {cycles} cycles, {per_cycle * 1000:.1f} ms/cycle after warm-up; "
        f"fds {start['fds']}->{end['fds']}, memfds {start['memfds']}->{end['memfds']}, "
        f"threads {start['threads']}->{end['threads']}, rss {start['rss_kb']}->{end['rss_kb']} KB"
    )
    evidence.record(
        name,
        label=label,
        cycles=cycles,
        warmup=warmup,
        ms_per_cycle=per_cycle * 1000,
        fd_growth=end["fds"] - start["fds"],
        memfd_growth=end["memfds"] - start["memfds"],
        thread_growth=end["tasks"] - start["tasks"],
        child_growth=len(set(end["children"]) - set(start["children"])),
        rss_growth_kb=end["rss_kb"] - start["rss_kb"],
        rss_limit_kb=RSS_LIMIT_KB,
        fd_slack=FD_SLACK,
    )
    assert end["fds"] - start["fds"] <= FD_SLACK, (label, start["fds"], end["fds"])
    assert end["memfds"] <= start["memfds"], (label, start["memfds"], end["memfds"])
    assert end["threads"] - start["threads"] <= THREAD_SLACK, (label, start["threads"], end["threads"])
    assert end["tasks"] - start["tasks"] <= THREAD_SLACK, (label, start["tasks"], end["tasks"])
    assert set(end["children"]) <= set(start["children"]), (label, start["children"], end["children"])
    assert end["rss_kb"] - start["rss_kb"] < RSS_LIMIT_KB, (label, start["rss_kb"], end["rss_kb"])
    return start, end, per_cycle


@pytest.fixture
def plugin_env(tmp_path: Path):
    """``plugin_env()`` → (runtime, executor): a real pair on a fresh plugins dir, shut down
    after the test; compiled components come from the user cache (as in tests/host_e2e)."""
    made = []

    def make() -> tuple[WasmPluginRuntime, ComponentExecutor]:
        executor = ComponentExecutor(cache_dir=default_cache_dir(), log_dir=tmp_path / "logs")
        (tmp_path / "plugins").mkdir(exist_ok=True)
        runtime = WasmPluginRuntime(tmp_path / "plugins", executor)
        made.append((runtime, executor))
        return runtime, executor

    yield make
    for runtime, executor in made:
        runtime.shutdown()
        executor.shutdown()


def make_cycle(
    runtime: WasmPluginRuntime,
    executor: ComponentExecutor,
    artifact: Path,
    build_stage: Callable[[str], object],
    expected_route: str,
) -> Callable[[], None]:
    block = (np.random.default_rng(7).random((256, CHANNELS), dtype=np.float32) - 0.5) * 0.5

    def cycle() -> None:
        plugin_id = package.install_from_artifact(runtime.plugins_dir, artifact).id
        runtime.set_desired_state(plugin_id, DesiredState.ENABLED)
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        stage = build_stage(plugin_id)
        try:
            assert stage.route == expected_route, stage.fallback_reason
            out = Chain([stage], RATE, CHANNELS, block_frames=256).process(block)
            assert out.shape == block.shape and stage.fault is None
        finally:
            stage.close()
        runtime.set_desired_state(plugin_id, DesiredState.DISABLED)
        assert executor.live_instances(plugin_id) == 0
        package.uninstall_by_id(runtime.plugins_dir, plugin_id)
        assert not runtime.sync_plugins().errors

    return cycle


def check_counters_back(start_counts: dict[str, int]) -> None:
    """Every stage, store, instance and sidecar is gone; with the LRU dropped, so are the
    compiled hot-path modules (and their memfds)."""
    clear_module_caches()
    gc.collect()
    now = diagnostics.live_counts()
    for key in diagnostics.COUNTERS:
        assert now[key] <= start_counts.get(key, 0), (key, start_counts.get(key, 0), now[key])


def test_c_hot_path_plugin_cycles(plugin_env, built, children, evidence):
    clear_module_caches()
    gc.collect()
    at_start = diagnostics.live_counts()
    memfds_at_start = memfds()
    runtime, executor = plugin_env()
    cycle = make_cycle(
        runtime,
        executor,
        built("gain"),
        lambda pid: build_dsp_stage(runtime, executor, pid, "gain", {"gain_db": -6}, RATE, CHANNELS),
        "hot-path",
    )
    start, end, _ = churn(
        cycle, evidence.scale(400, 1000), 20, children, "C gain (hot path)", evidence, "stress_churn_hot_path"
    )
    # The cache holds one compiled module for the same bytes, whatever the number of installs.
    assert end["hotpath_modules"] <= max(1, start["hotpath_modules"])
    check_counters_back(at_start)
    gc.collect()
    assert memfds() <= memfds_at_start  # the module's memory image went with it


def test_python_component_cycles(plugin_env, built, children, evidence):
    at_start = diagnostics.live_counts()
    runtime, executor = plugin_env()
    cycle = make_cycle(
        runtime,
        executor,
        built("pygain"),
        lambda pid: build_dsp_stage(runtime, executor, pid, "pygain", None, RATE, CHANNELS),
        "component",
    )
    churn(cycle, evidence.scale(80, 200), 10, children, "pygain (componentize-py)", evidence, "stress_churn_component")
    check_counters_back(at_start)


def test_sidecar_plugin_cycles(plugin_env, built, children, tmp_path, evidence):
    at_start = diagnostics.live_counts()
    before = children()
    runtime, executor = plugin_env()
    launched = []

    def stage(pid: str):
        # A new file each cycle: the plugin holds the host lock "file:<path>" while it writes.
        target = {"id": "file", "path": str(tmp_path / f"out-{len(launched)}.wav")}
        s = build_sink_stage(runtime, executor, pid, "wav-file", target, None, RATE, CHANNELS)
        launched.append(len(children() - before))  # the session's wav-writer runs now
        return s

    cycle = make_cycle(runtime, executor, built("wav-sink"), stage, "component")
    churn(cycle, evidence.scale(40, 100), 10, children, "wav-sink (sidecar)", evidence, "stress_churn_sidecar")
    assert set(launched) == {1}  # one sidecar per session, each gone before the next
    assert len(executor._host_services.sidecars()._locks) == 0  # the plugin's locks went with it
    check_counters_back(at_start)
