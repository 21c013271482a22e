"""The hot-path module cache (keyed by content, weak + a small LRU) and the debug counters:
a compiled module, and the memfd of its memory image, lives only while a stage or the LRU
holds it (issue #8)."""

from __future__ import annotations

import gc
import shutil

from stellatune import diagnostics
from stellatune.abi import Role
from stellatune.engine import HotPathStage
from stellatune.engine.stages import MODULE_CACHE_PINNED, HotPathEngine, clear_module_caches, hot_path_engine

from ..conftest import memfds


def counts() -> dict[str, int]:
    gc.collect()
    return diagnostics.live_counts()


def test_modules_are_keyed_by_content_and_freed_with_their_last_stage(kernels, spec, tmp_path):
    clear_module_caches()
    base, base_fds = counts(), memfds()
    copy = tmp_path / "copy.wasm"
    shutil.copyfile(kernels["gain"], copy)
    a = HotPathStage.from_wasm(kernels["gain"], spec(), 48000, 2)
    b = HotPathStage.from_wasm(copy, spec(), 48000, 2)  # same bytes, another path: same module
    assert a._core is not b._core
    live = counts()
    assert live["hotpath_modules"] == base["hotpath_modules"] + 1
    assert live["hotpath_stages"] == base["hotpath_stages"] + 2
    assert live["hotpath_stores"] == base["hotpath_stores"] + 2
    with_module = memfds()
    assert with_module >= base_fds

    copy.write_bytes(kernels["sink"].read_bytes())  # new content under the old path: a new module
    c = HotPathStage.from_wasm(copy, spec(Role.OUTPUT_SINK), 48000, 2)
    assert counts()["hotpath_modules"] == base["hotpath_modules"] + 2

    for stage in (a, b, c):
        stage.close()
    assert counts()["hotpath_stages"] == base["hotpath_stages"]
    del a, b, c, stage
    after = counts()
    assert after["hotpath_stores"] == base["hotpath_stores"]
    # The LRU still pins both modules, for a quick rebuild...
    assert after["hotpath_modules"] == base["hotpath_modules"] + 2
    assert hot_path_engine().pinned_modules() == 2
    # ...until it lets go: then the modules and their memory images are gone.
    clear_module_caches()
    assert counts()["hotpath_modules"] == base["hotpath_modules"]
    assert memfds() <= base_fds


def test_the_lru_is_bounded_and_live_stages_keep_their_module(kernels):
    engine = HotPathEngine()
    names = ["gain", "sink", "trap", "loop", "grow", "bad_frames", "error", "stall"]
    assert len(names) > MODULE_CACHE_PINNED
    first = engine.module(kernels[names[0]])  # held here, like a live stage holds its module
    for name in names[1:]:
        engine.module(kernels[name])
    gc.collect()
    assert engine.pinned_modules() == MODULE_CACHE_PINNED
    assert engine.cached_modules() == MODULE_CACHE_PINNED + 1  # the LRU's, and the one in use
    assert engine.module(kernels[names[0]]) is first  # not recompiled while in use
    del first
    engine.clear_cache()
    gc.collect()
    assert engine.cached_modules() == 0


def test_a_native_stage_unloads_its_private_copy(kernels, spec):
    def mapped() -> set[str]:
        with open("/proc/self/maps") as f:
            return {line.split()[-1] for line in f if "stellatune-native-" in line}

    before = mapped()
    stage = HotPathStage.from_native(kernels["gain.so"], spec(), 48000, 2)
    assert mapped() - before
    stage.close()
    del stage
    gc.collect()
    assert mapped() - before == set()


def test_track_and_release_count_once():
    class Thing:
        pass

    kind = "test_things"
    t = diagnostics.track(kind, Thing())
    diagnostics.track(kind, t)  # tracked twice: counted once
    assert diagnostics.live_counts()[kind] == 1
    diagnostics.release(kind, t)
    diagnostics.release(kind, t)
    assert diagnostics.live_counts()[kind] == 0
    u = diagnostics.track(kind, Thing())
    assert diagnostics.live_counts()[kind] == 1
    del u  # freed without a release: the finalizer counts it down
    gc.collect()
    assert diagnostics.live_counts()[kind] == 0
