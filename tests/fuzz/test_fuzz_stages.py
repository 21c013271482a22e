"""Fuzzing stage construction: ``build_dsp_stage`` over the real example DSPs with arbitrary
configs, sample rates and channel counts (the hot-path module's init arguments), and over a
lying plugin whose ``describe-hot-path`` answer (the stage spec) is arbitrary.

Each build either gives a stage that processes a block without raising and with finite output,
or raises a ``StellatuneError`` subclass: never a TypeError, an OverflowError, a struct.error or
a crash. Every stage and processor is closed again, so the test's leak check (tests/conftest.py)
proves nothing was left live; the live counters are also compared after every example.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from hypothesis import strategies as st

from stellatune import abi, diagnostics, package
from stellatune.compose import build_dsp_stage
from stellatune.engine import Chain
from stellatune.errors import EngineError, StellatuneError
from stellatune.executor import ComponentExecutor
from stellatune.paths import default_cache_dir
from stellatune.sdk.build import build_plugin

from ..compose.conftest import install, runtime  # noqa: F401

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
DSPS = ("gain", "eq", "compressor", "delay")
LIAR = "dev.stellatune.test.liar-dsp"
LIVE = ("hotpath_stages", "hotpath_stores", "component_instances", "component_stores")


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[ComponentExecutor]:
    """Compiled components from the user cache (as tests/host_e2e), so liar-dsp's Python
    component is compiled once per machine, not once per session."""
    ex = ComponentExecutor(cache_dir=default_cache_dir(), log_dir=tmp_path / "logs")
    yield ex
    ex.shutdown()


def _schema_keys(name: str) -> list[str]:
    ability = json.loads((EXAMPLES / name / "plugin.json").read_text())["components"][0]["abilities"][0]
    return sorted(json.loads(ability["config_schema_json"])["properties"])


KEYS = {name: _schema_keys(name) for name in DSPS}

config_values = (
    st.floats()
    | st.floats(min_value=-200, max_value=20000)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -0.0, 1e-45, 1e308, -1e308, 0.95, 1000, 24, -96, 96, 2**31, 2**32])
    | st.booleans()
    | st.none()
    | st.text(max_size=8)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@st.composite
def dsp_builds(draw: st.DrawFn) -> tuple[str, Any, int, int]:
    name = draw(st.sampled_from(DSPS))
    keys = st.sampled_from(KEYS[name]) | st.text(max_size=10)
    config: Any = draw(st.dictionaries(keys, config_values, max_size=4))
    shape = draw(st.sampled_from(["dict"] * 8 + ["text", "garbage-text", "none", "list"]))
    if shape == "text":
        config = json.dumps(config, allow_nan=True)  # NaN/Infinity spelt out: not JSON to a strict reader
    elif shape == "garbage-text":
        config = draw(st.text(max_size=20))
    elif shape == "none":
        config = None
    elif shape == "list":
        config = [1, 2]
    # Mostly a format the plugins take (so configs reach the module), sometimes anything.
    if draw(st.integers(0, 3)):
        rate = draw(st.sampled_from([48000, 44100, 96000, 8000, 768000]))
        channels = draw(st.sampled_from([1, 2, 2, 2, 6, 8]))
    else:
        rate = draw(
            st.sampled_from([768001, 1, 0, -48000, 2**32, 2**40]) | st.integers(min_value=-(2**33), max_value=2**33)
        )
        channels = draw(st.sampled_from([9, 32, 33, 0, -1, 0x10000]) | st.integers(-5, 70000))
    return name, config, rate, channels


def _live(baseline: Optional[dict[str, int]] = None) -> dict[str, int]:
    """The live counters; when they differ from ``baseline``, after a full collection (a closed
    stage's store goes when Python frees the stage object, which a cycle may delay)."""
    counts = diagnostics.live_counts()
    now = {k: counts.get(k, 0) for k in LIVE}
    if baseline is not None and now != baseline:
        gc.collect()
        counts = diagnostics.live_counts()
        now = {k: counts.get(k, 0) for k in LIVE}
    return now


def _run_block(stage: Any) -> str:
    """One block through the stage in the engine: never raises, never lets a NaN out."""
    block = (np.random.default_rng(3).random((64, stage.channels), dtype=np.float32) - 0.5) * 0.5
    out = Chain([stage], stage.sample_rate, stage.channels, block_frames=64).process(block)
    assert out.shape == block.shape and np.isfinite(out).all()
    return "fault" if stage.fault is not None else stage.route


def _build_and_run(build: Callable[[], Any]) -> str:
    """Build a stage, run a block through it, close it: the outcome label. (A function of its
    own, so no frame still holds the closed stage when the caller counts live objects.)"""
    try:
        stage = build()
    except StellatuneError as e:
        return f"refused ({type(e).__name__})"
    try:
        if stage.route == "component":
            assert stage.fallback_reason, "a component-path stage says why it is not on the hot path"
            assert "\0" not in stage.fallback_reason
        return _run_block(stage)
    finally:
        stage.close()


def test_arbitrary_configs_rates_and_channels_build_a_stage_or_a_stellatune_error(fuzz, runtime, executor, install):
    ids = dict(zip(DSPS, install(*DSPS), strict=True))
    baseline = _live()

    def check(case: tuple[str, Any, int, int]) -> str:
        name, config, rate, channels = case
        outcome = _build_and_run(lambda: build_dsp_stage(runtime, executor, ids[name], name, config, rate, channels))
        assert _live(baseline) == baseline, f"{name} {config!r} {rate} Hz x {channels}: live objects left"
        return outcome

    outcomes = fuzz.run("stage_build", dsp_builds(), check)
    assert any(k in outcomes for k in ("hot-path", "component"))


@pytest.fixture
def liar_with_a_module(runtime, built, tmp_path):
    """liar-dsp, installed with a real hot-path core module beside it (the gain example's, at
    the path the liar names by default), so lies about the layout reach the loader."""
    root = tmp_path / "liar-pkg"
    with zipfile.ZipFile(build_plugin(FIXTURES / "liar-dsp")) as zf:
        zf.extractall(root)
    with zipfile.ZipFile(built("gain")) as zf:
        (root / "wasm" / "liar.hotpath.wasm").write_bytes(zf.read("wasm/gain.hotpath.wasm"))
    package.install_from_artifact(runtime.plugins_dir, root)
    shutil.rmtree(root)
    assert not runtime.sync_plugins().errors
    return LIAR


u32ish = (
    st.integers(0, 0xFFFF_FFFF)
    | st.sampled_from([0, 4, 60, 64, 1024, abi.SDK_IN_OFFSET, abi.SDK_OUT_OFFSET, 65536, 131072, 0xFFFF_FFFF])
    | st.integers(-10, -1)  # outside u32: the guest's own lowering refuses these (a plugin error)
)
spec_lies = st.fixed_dictionaries(
    {},
    optional={
        "in_offset": u32ish,
        "out_offset": st.none() | u32ish,
        "max_frames": u32ish | st.sampled_from([1, 63, 64, 4096, 4097, abi.SDK_MAX_FRAMES]),
        "channels": st.integers(0, 0xFFFF) | st.sampled_from([1, 2, 3, 32, 33, 0x10000]),
        "abi_version": st.sampled_from([0, 1, 2, 0xFFFF_FFFF]),
        "wasm_rel_path": st.sampled_from(
            ["wasm/liar.hotpath.wasm", "wasm/liar-dsp.wasm", "plugin.json", "wasm", "../x", "/etc/passwd", "a\x00b"]
        )
        | st.text(max_size=10),
        "process_export": st.sampled_from(["st_hot_process", "st_hot_init", "memory", "", "nope", "p" * 300]),
    },
)


def test_a_lying_stage_spec_gives_a_working_stage_or_a_stellatune_error(fuzz, runtime, executor, liar_with_a_module):
    baseline = _live()

    def check(lie: dict[str, Any]) -> str:
        outcome = _build_and_run(lambda: build_dsp_stage(runtime, executor, LIAR, "liar", {"spec": lie}, 48000, 2))
        assert _live(baseline) == baseline, f"{lie!r}: live objects left"
        return outcome

    honest = {
        "in_offset": abi.SDK_IN_OFFSET,
        "out_offset": abi.SDK_OUT_OFFSET,
        "max_frames": abi.SDK_MAX_FRAMES,
        "channels": 2,
    }
    # The truth loads the module (init runs), and then the config's "spec" key is refused: it is
    # not a parameter of the module. So every lie below reaches the loader, never a block.
    with pytest.raises(EngineError, match="unknown parameter 'spec'"):
        build_dsp_stage(runtime, executor, LIAR, "liar", {"spec": honest}, 48000, 2)
    outcomes = fuzz.run("stage_spec", spec_lies | st.just(honest), check)
    assert all(not math.isnan(n) for n in outcomes.values())
