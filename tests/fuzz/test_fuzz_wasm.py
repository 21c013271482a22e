"""Malformed Wasm as a plugin's module is refused with a clear ``StellatuneError``, never a crash.

Three places take a module: the hot-path loader (``HotPathStage.from_wasm``), a plugin's
hot-path core module behind ``build_dsp_stage`` (which then falls back to the component path
and says why), and a plugin's component, compiled when the runtime activates it (the sync
records the error, the plugin stays inactive, building a stage of it is a
``RuntimeStateError`` quoting it). The modules are the gain example's real builds, truncated,
bit-flipped, spliced with garbage or with a section whose size lies, plus random bytes and
hand-written hostile modules (a 4 GiB memory, a trapping or endless start function, imports,
a 16 MiB file of noise). The loader's spec and init arguments are fuzzed here too.

Compiled components go to this test's own cache, not the user's: thousands of broken modules
are not worth keeping.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime
from hypothesis import strategies as st

from stellatune import abi, diagnostics, package
from stellatune.compose import build_dsp_stage
from stellatune.engine import Chain, HotPathStage
from stellatune.errors import HotPathAbiError, RuntimeStateError, StellatuneError
from stellatune.executor import ComponentExecutor
from stellatune.runtime import WasmPluginRuntime

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

GAIN = "dev.stellatune.example.gain"
SPEC = abi.sdk_core_module_spec("wasm/gain.hotpath.wasm", abi.Role.DSP_TRANSFORM, 2)


@pytest.fixture(scope="module")
def gain_files(built) -> dict[str, bytes]:
    with zipfile.ZipFile(built("gain")) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


HEADER = b"\0asm\x01\0\0\0"
HOSTILE_WAT = {
    "4gib-memory": '(module (memory (export "memory") 65536))',
    "start-traps": '(module (memory (export "memory") 5) (func $s unreachable) (start $s))',
    "start-spins": '(module (memory (export "memory") 5) (func $s (loop $l (br $l))) (start $s))',
    "imports": '(module (import "env" "f" (func)) (memory (export "memory") 5))',
    "no-exports": "(module (memory 5))",
    "wrong-signature": (
        '(module (memory (export "memory") 5) (func (export "st_hot_init") (result i32) i32.const 0)'
        ' (func (export "st_hot_process") (param i32) (result i32) i32.const 0))'
    ),
    "init-spins": (
        '(module (memory (export "memory") 5)'
        ' (func (export "st_hot_init") (param i32 i32) (result i32) (loop $l (br $l)) i32.const 0)'
        ' (func (export "st_hot_process") (param i32 i32 i32 i32) (result i32) i32.const 0))'
    ),
    "init-fails": (
        '(module (memory (export "memory") 5)'
        ' (func (export "st_hot_init") (param i32 i32) (result i32) i32.const 4)'
        ' (func (export "st_hot_process") (param i32 i32 i32 i32) (result i32) i32.const 0))'
    ),
    "small-memory": (
        '(module (memory (export "memory") 1)'
        ' (func (export "st_hot_init") (param i32 i32) (result i32) i32.const 0)'
        ' (func (export "st_hot_process") (param i32 i32 i32 i32) (result i32) i32.const 0))'
    ),
}
FIXED: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "empty": lambda f: b"",
    "header-only": lambda f: HEADER,
    "wrong-version": lambda f: b"\0asm\x02\0\0\0",
    "text-not-binary": lambda f: b"(module)",
    "component-as-core": lambda f: f["wasm/gain.component.wasm"],
    "native-as-wasm": lambda f: f["native/gain.so"][:200_000],
    "section-size-lies": lambda f: HEADER + b"\x01" + _leb(0xFFFF_FFFF) + b"\x60",
    "unknown-section": lambda f: HEADER + b"\x7f\x01\x00",
    "huge-custom-section": lambda f: (
        f["wasm/gain.hotpath.wasm"] + b"\x00" + _leb(24 << 20) + b"\x01x" + bytes(24 << 20)
    ),
    "16mib-noise": lambda f: np.random.default_rng(5).integers(0, 256, 16 << 20, dtype=np.uint8).tobytes(),
    **{name: (lambda f, wat=wat: wasmtime.wat2wasm(wat)) for name, wat in HOSTILE_WAT.items()},
}


@st.composite
def broken_modules(draw: st.DrawFn, source: bytes) -> tuple[str, bytes]:
    data = bytearray(source)
    how = draw(st.sampled_from(["truncate", "flip", "splice", "section", "random", "repeat"]))
    if how == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(8, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif how == "splice":
        at = draw(st.integers(8, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif how == "section":  # a section whose id or declared size is wrong, appended or prepended
        section = (
            bytes([draw(st.integers(0, 255))]) + _leb(draw(st.integers(0, 0xFFFF_FFFF))) + draw(st.binary(max_size=16))
        )
        data = bytearray(HEADER + section + data[8:]) if draw(st.booleans()) else data + section
    elif how == "random":
        data = bytearray(draw(st.binary(max_size=256)))
        if draw(st.booleans()):
            data[:0] = HEADER
    else:
        data = data + data[8:]
    return how, bytes(data)


def _load(path: Path) -> str:
    """Load ``path`` as a hot-path module: a stage (closed again) or the error's class."""
    try:
        stage = HotPathStage.from_wasm(path, SPEC, 48000, 2)
    except StellatuneError as e:
        assert str(e), "an error says what is wrong"
        return f"refused ({type(e).__name__})"
    try:
        x = np.zeros((64, 2), np.float32)
        out = Chain([stage], 48000, 2, block_frames=64).process(x)
        assert np.isfinite(out).all()
        return "loaded" if stage.fault is None else f"loaded, faulted ({stage.fault.kind})"
    finally:
        stage.close()


def test_broken_core_modules_are_refused_by_the_loader(fuzz, gain_files, tmp_path):
    path = tmp_path / "m.wasm"

    def check(case: tuple[str, bytes]) -> str:
        how, data = case
        path.write_bytes(data)
        return f"{how}: {_load(path)}"

    fuzz.run("wasm_core", broken_modules(gain_files["wasm/gain.hotpath.wasm"]), check)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_hostile_core_modules_are_refused_by_the_loader(gain_files, tmp_path, name):
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(FIXED[name](gain_files))
    outcome = _load(path)
    assert outcome.startswith("refused"), outcome


# --- the spec and init arguments the loader is given -----------------------------------------

any_int = st.integers(-(2**33), 2**33) | st.sampled_from(
    [0, 1, 63, 64, abi.SDK_IN_OFFSET, abi.SDK_OUT_OFFSET, abi.SDK_MAX_FRAMES, 2**16, 2**31, 2**32 - 1, 2**32]
)
#: One or two fields of the SDK's true spec changed to anything: most cases reach the module.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "role": st.sampled_from(list(abi.Role)),
    "wasm_rel_path": st.sampled_from(["", " ", "../x", "a\x00b", "/abs", "x" * 5000]),
    "abi_version": any_int,
    "process_export": st.sampled_from(["st_hot_init", "memory", "", "nope", "st_hot_reset"]),
    "init_export": st.sampled_from(["st_hot_process", "memory", "", "nope"]),
    "memory_export": st.sampled_from(["st_hot_init", "", "nope"]),
    "reset_export": st.sampled_from([None, "", "st_hot_process", "memory", "nope"]),
    "drop_export": st.sampled_from([None, "", "st_hot_process", "memory", "nope"]),
    "in_offset": any_int,
    "out_offset": st.none() | any_int,
    "max_frames": any_int,
    "channels": any_int,
    "sample_format": st.sampled_from(list(abi.SampleFormat)),
    "interleaved": st.just(False),
}
BUFFER_FIELDS = ("in_offset", "out_offset", "max_frames", "channels", "sample_format", "interleaved")


@st.composite
def init_cases(draw: st.DrawFn) -> tuple[abi.CoreModuleSpec, int, int]:
    """(spec, sample rate, stage channels): the loader's whole input but the module's bytes."""
    changes = draw(st.dictionaries(st.sampled_from(sorted(FIELDS)), st.just(None), min_size=0, max_size=2))
    values = {k: draw(FIELDS[k]) for k in changes}
    buffer = abi.BufferLayout(**{**SPEC.buffer.__dict__, **{k: v for k, v in values.items() if k in BUFFER_FIELDS}})
    top = {k: v for k, v in values.items() if k not in BUFFER_FIELDS}
    spec = abi.CoreModuleSpec(**{**SPEC.__dict__, "buffer": buffer, **top})
    rate = draw(st.sampled_from([48000] * 6 + [1, 8000, 768000]) | any_int)
    channels = buffer.channels if draw(st.integers(0, 4)) else draw(any_int)
    return spec, rate, channels


def test_any_spec_and_init_arguments_load_or_raise_a_hot_path_error(fuzz, gain_files, tmp_path):
    """Native builds are left out on purpose: a native kernel trusts its spec (an offset past
    its static arena is a write anywhere in the process), which is why only wasm is sandboxed."""
    path = tmp_path / "gain.hotpath.wasm"
    path.write_bytes(gain_files["wasm/gain.hotpath.wasm"])

    def check(case: tuple[abi.CoreModuleSpec, int, int]) -> str:
        spec, rate, channels = case
        try:
            stage = HotPathStage.from_wasm(path, spec, rate, channels)
        except StellatuneError as e:
            return f"refused ({type(e).__name__})"
        try:
            assert not spec.problems() and stage.channels == channels == spec.buffer.channels
            x = (np.random.default_rng(1).random((64, channels), dtype=np.float32) - 0.5) * 0.5
            out = Chain([stage], rate, channels, block_frames=min(64, spec.buffer.max_frames)).process(x)
            assert np.isfinite(out).all()
            return "loaded" if stage.fault is None else f"loaded, faulted ({stage.fault.kind})"
        finally:
            stage.close()

    outcomes = fuzz.run("hot_path_spec", init_cases(), check)
    assert any(k.startswith("loaded") for k in outcomes)


# --- a broken module inside an installed plugin ------------------------------------------------


@pytest.fixture
def own_cache_env(tmp_path: Path) -> Iterator[tuple[WasmPluginRuntime, ComponentExecutor]]:
    executor = ComponentExecutor(cache_dir=tmp_path / "component-cache", log_dir=tmp_path / "logs")
    (tmp_path / "plugins").mkdir()
    runtime = WasmPluginRuntime(tmp_path / "plugins", executor)
    yield runtime, executor
    runtime.shutdown()
    executor.shutdown()


def _package(root: Path, files: dict[str, bytes], replace: dict[str, bytes]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    for name, data in {**files, **replace}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_broken_hot_path_module_falls_back_to_the_component_and_says_why(fuzz, gain_files, own_cache_env, tmp_path):
    runtime, executor = own_cache_env

    def check(case: tuple[str, bytes]) -> str:
        how, data = case
        root = _package(tmp_path / "pkg", gain_files, {"wasm/gain.hotpath.wasm": data})
        package.install_from_artifact(runtime.plugins_dir, root)
        assert not runtime.sync_plugins().errors  # the component is intact
        try:
            stage = build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": -6}, 48000, 2)
        except StellatuneError as e:
            # A module that loads but lost what the config needs (a flipped export name: no
            # parameter table) is refused at build, naming what is missing.
            assert str(e) and "gain" in str(e)
            return f"{how}: refused at build ({type(e).__name__})"
        try:
            if stage.route == "component":
                reason = stage.fallback_reason or ""
                assert reason.startswith("core module rejected:"), reason
            x = np.full((64, 2), 0.5, np.float32)
            out = Chain([stage], 48000, 2, block_frames=64).process(x)
            assert np.isfinite(out).all()
            return f"{how}: {stage.route}"
        finally:
            stage.close()

    fuzz.run("wasm_hotpath_in_plugin", broken_modules(gain_files["wasm/gain.hotpath.wasm"]), check, short=25)


def test_a_broken_component_is_an_activation_error_and_the_plugin_stays_inactive(
    fuzz, gain_files, own_cache_env, tmp_path
):
    runtime, executor = own_cache_env
    at_start = diagnostics.live_counts()["component_instances"]

    def check(case: tuple[str, bytes]) -> str:
        how, data = case
        root = _package(tmp_path / "pkg", gain_files, {"wasm/gain.component.wasm": data})
        package.install_from_artifact(runtime.plugins_dir, root)
        try:
            return f"{how}: {_activate_and_build()}"
        finally:  # no previous version to fall back to: each case starts from nothing installed
            package.uninstall_by_id(runtime.plugins_dir, GAIN)
            assert not runtime.sync_plugins().errors
            gc.collect()
            assert diagnostics.live_counts()["component_instances"] == at_start

    def _activate_and_build() -> str:
        report = runtime.sync_plugins()
        if report.errors:
            assert any(GAIN in e for e in report.errors) and not runtime.is_active(GAIN), report.errors
            last_error = runtime.status(GAIN).last_error
            assert last_error and "Traceback" not in last_error
            with pytest.raises(RuntimeStateError, match="is not active"):
                build_dsp_stage(runtime, executor, GAIN, "gain", None, 48000, 2)
            return "refused at activation"
        # A flip in a byte nothing checks at load (a name, a constant): it activates, and then
        # either still works or fails when called, as a plugin error.
        assert runtime.is_active(GAIN)
        try:
            stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, 48000, 2)
        except StellatuneError as e:
            assert str(e)
            return f"refused at build ({type(e).__name__})"
        stage.close()
        return "still valid"

    source = gain_files["wasm/gain.component.wasm"]
    fuzz.run("wasm_component", broken_modules(source), check, short=25)


@pytest.mark.parametrize("name", ["empty", "text-not-binary", "section-size-lies", "16mib-noise", "4gib-memory"])
def test_hostile_components_are_refused_at_activation(gain_files, own_cache_env, tmp_path, name):
    runtime, _ = own_cache_env
    root = _package(tmp_path / "pkg", gain_files, {"wasm/gain.component.wasm": FIXED[name](gain_files)})
    package.install_from_artifact(runtime.plugins_dir, root)
    report = runtime.sync_plugins()
    assert not runtime.is_active(GAIN) and report.errors
    assert os.path.getsize(root / "wasm" / "gain.component.wasm") == len(FIXED[name](gain_files))
    assert json.dumps(report.to_json())  # the report (what `plugins sync` prints) is plain JSON


def test_a_hot_path_abi_error_is_what_the_loader_raises_for_noise(tmp_path):
    path = tmp_path / "noise.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0\xff\xff")
    with pytest.raises(HotPathAbiError):
        HotPathStage.from_wasm(path, SPEC, 48000, 2)
