"""The hot-path memory cap: a core module's store may hold at most ``memory_limit_bytes`` (64
MiB by default; the manifest's ``limits.hot_path_memory_mib`` or the host raise it). A module
declaring more is refused before it is instantiated; one growing past it in ``init`` gets -1
from memory.grow, traps on the memory it did not get, and is refused; either way with
HotPathMemoryLimitError naming the cap, and without the process committing the memory."""

import json
from pathlib import Path

import numpy as np
import pytest
import wasmtime

from stellatune.compose import build_dsp_stage
from stellatune.engine import Chain, ComponentStage, HotPathStage
from stellatune.errors import EngineError, HotPathAbiError, HotPathMemoryLimitError

from ..compose.conftest import component_cache, executor, install, runtime  # noqa: F401 (fixtures)
from .conftest import FX_IN, FX_OUT

RATE = 48000
MIB = 1 << 20
PAGE = 65536
#: The C SDK's fixed memory map (docs/hot-path-abi.md), for a module standing in for gain's.
SDK_IN, SDK_OUT = 2048, 133120
GAIN = "dev.stellatune.example.gain"


def core_module(
    tmp_path: Path,
    name: str,
    *,
    pages: int,
    grow_pages: int = 0,
    max_pages=None,
    in_offset: int = FX_IN,
    out_offset: int = FX_OUT,
) -> Path:
    """A pass-through stereo core module declaring ``pages`` of memory; with ``grow_pages`` its
    init grows by that much and writes the last byte it asked for, ignoring a failed grow."""
    limits = f"{pages} {max_pages}" if max_pages is not None else f"{pages}"
    grow = ""
    if grow_pages:
        last = (pages + grow_pages) * PAGE - 1
        grow = f"(drop (memory.grow (i32.const {grow_pages}))) (i32.store8 (i32.const {last}) (i32.const 1))"
    wat = f"""(module
      (memory (export "memory") {limits})
      (func (export "st_hot_init") (param $args i32) (param $out_ctx i32) (result i32)
        {grow}
        (i32.store (local.get $out_ctx) (i32.const 1))
        (i32.const 0))
      (func (export "st_hot_process") (param $ctx i32) (param $frames i32) (param $out_frames i32)
            (param $out_flags i32) (result i32)
        (memory.copy (i32.const {out_offset}) (i32.const {in_offset}) (i32.mul (local.get $frames) (i32.const 8)))
        (i32.store (local.get $out_frames) (local.get $frames))
        (i32.store (local.get $out_flags) (i32.const 0))
        (i32.const 0)))"""
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat))
    return path


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def load(path: Path, spec, **kw) -> HotPathStage:
    return HotPathStage.from_wasm(path, spec(), RATE, 2, **kw)


def test_a_module_declaring_4_gib_is_refused_before_instantiation(tmp_path, spec):
    path = core_module(tmp_path, "huge", pages=65536)
    before = rss_bytes()
    with pytest.raises(HotPathMemoryLimitError) as caught:
        load(path, spec)
    err = caught.value
    assert isinstance(err, HotPathAbiError)  # an ABI problem like any other, to its callers
    assert (err.cap_bytes, err.needed_bytes) == (64 * MIB, 4096 * MIB)
    assert "needs 4096 MiB of memory, over the 64 MiB cap" in str(err)
    assert "limits.hot_path_memory_mib" in str(err) and "memory_limit_bytes" in str(err)
    assert rss_bytes() - before < 200 * MIB


def test_a_module_growing_to_1_gib_in_init_is_refused_and_commits_nothing(tmp_path, spec):
    path = core_module(tmp_path, "grower", pages=5, grow_pages=16384)
    before = rss_bytes()
    with pytest.raises(HotPathMemoryLimitError, match="more memory than the 64 MiB cap") as caught:
        load(path, spec)
    assert caught.value.cap_bytes == 64 * MIB and caught.value.needed_bytes is None
    assert "out of bounds" in str(caught.value)
    assert rss_bytes() - before < 200 * MIB


def test_the_same_growth_within_a_raised_host_cap_loads(tmp_path, spec, noise):
    """What refused it was the cap: with 2 GiB allowed, the grow succeeds (only the page it
    touched is committed) and the stage runs."""
    path = core_module(tmp_path, "grower", pages=5, grow_pages=16384)
    before = rss_bytes()
    stage = load(path, spec, memory_limit_bytes=2048 * MIB)
    x = noise(512)
    np.testing.assert_array_equal(Chain([stage], RATE, 2).process(x), x)
    assert stage.fault is None
    assert rss_bytes() - before < 200 * MIB
    stage.close()


def test_a_module_within_the_cap_loads_and_runs(tmp_path, spec, noise):
    stage = load(core_module(tmp_path, "small", pages=5, grow_pages=16), spec)  # +1 MiB in init
    x = noise(1024)
    np.testing.assert_array_equal(Chain([stage], RATE, 2).process(x), x)
    assert stage.fault is None
    stage.close()


def test_the_host_cap_lowers_and_raises_the_default(tmp_path, spec):
    mid = core_module(tmp_path, "mid", pages=2048)  # 128 MiB
    with pytest.raises(HotPathMemoryLimitError, match="needs 128 MiB of memory, over the 64 MiB cap"):
        load(mid, spec)
    load(mid, spec, memory_limit_bytes=128 * MIB).close()
    small = core_module(tmp_path, "small", pages=5)
    with pytest.raises(HotPathMemoryLimitError, match=r"needs 0.3125 MiB of memory, over the 0.25 MiB cap"):
        load(small, spec, memory_limit_bytes=256 * 1024)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(EngineError, match="memory_limit_bytes must be a positive integer"):
            load(small, spec, memory_limit_bytes=bad)


def test_an_init_failure_of_a_module_bounded_within_the_cap_is_not_blamed_on_it(tmp_path, spec, noise):
    """A module whose memory may not grow past the cap declares it: then an init failure is an
    ordinary ABI error, not blamed on the cap."""
    path = core_module(tmp_path, "capped", pages=5, max_pages=6, grow_pages=16384)
    with pytest.raises(HotPathAbiError, match="init trapped") as caught:
        load(path, spec)
    assert not isinstance(caught.value, HotPathMemoryLimitError)


# --- through the plugin: manifest override and precedence ------------------------------------


@pytest.fixture
def big_gain(runtime, install, tmp_path):
    """The gain example with its core module replaced by one declaring 128 MiB (SDK map)."""
    install("gain")
    module = runtime.plugins_dir / GAIN / "wasm" / "gain.hotpath.wasm"
    module.write_bytes(core_module(tmp_path, "big", pages=2048, in_offset=SDK_IN, out_offset=SDK_OUT).read_bytes())
    return module


def set_manifest_limit(runtime, mib) -> None:
    manifest = runtime.plugins_dir / GAIN / "plugin.json"
    doc = json.loads(manifest.read_text())
    doc["limits"] = {"hot_path_memory_mib": mib}
    manifest.write_text(json.dumps(doc))
    report = runtime.sync_plugins()
    assert not report.errors, report.errors
    (info,) = [p for p in runtime.active_plugins() if p.id == GAIN]
    assert info.manifest.limits.hot_path_memory_mib == mib


def test_over_the_cap_the_plugin_falls_back_to_its_component_naming_the_cap(runtime, executor, big_gain, noise):
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2)
    try:
        assert isinstance(stage, ComponentStage)
        assert "needs 128 MiB of memory, over the 64 MiB cap" in stage.fallback_reason
        x = noise(512)
        np.testing.assert_allclose(Chain([stage], RATE, 2).process(x), x, rtol=1e-6)
    finally:
        stage.close()


def test_the_host_override_loads_the_hot_path(runtime, executor, big_gain, noise):
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2, memory_limit_bytes=256 * MIB)
    try:
        assert isinstance(stage, HotPathStage) and stage.route == "hot-path"
        x = noise(512)
        np.testing.assert_array_equal(Chain([stage], RATE, 2).process(x), x)
    finally:
        stage.close()


def test_the_manifest_override_loads_the_hot_path_and_the_host_wins_over_it(runtime, executor, big_gain):
    set_manifest_limit(runtime, 256)
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2)
    try:
        assert isinstance(stage, HotPathStage)
    finally:
        stage.close()
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2, memory_limit_bytes=64 * MIB)
    try:
        assert isinstance(stage, ComponentStage) and "over the 64 MiB cap" in stage.fallback_reason
    finally:
        stage.close()
