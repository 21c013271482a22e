"""Compatibility of the wasm runtime with the native one, plugin by plugin.

For every example DSP written in C (examples/plugins/*/src/*.c with a dsp ability: gain, eq,
compressor, delay), the plugin is built once from its source (``built``, the SDK builder: the
hot-path core module *and* ``native/<name>.so`` from the same C, same flags), installed, and
built into engine stages both ways through ``build_dsp_stage(native=False/True)``. Then:

1. **Output.** The same seeded inputs (noise, a sine sweep, impulses, full-scale and silence)
   and the same configs (defaults, every range's minimum, maximum and middle, seeded random
   points) at several formats and block sizes, with a parameter change half-way, must give
   **bit-identical** output. That is the claim, not a tolerance: both builds run the same C
   with plain IEEE arithmetic, no ``-ffast-math``, no FMA contraction (wasm has no FMA; the
   native build targets baseline x86-64, which has none either) and the SDK's own math
   (``st_exp``, ``st_sin``...) instead of two different libms (stellatune/sdk/cbuild.py,
   stellatune_sdk.h). A difference here is a real divergence, so no tolerance is allowed.
2. **Latency envelope.** Per-block process time through the engine's C block loop and its
   per-stage C clock (the log-bucket histogram behind ``stage.stats()``), for wasm and native at
   64, 128 and 256 frames, run by the benchmark's own harness (bench/stbench/timing.py:
   ``ChainCase`` in ``interleaved_rounds``). Recorded as evidence only: a loaded CI machine says
   nothing about the runtime, so nothing is asserted about time.
3. **Error behaviour.** The same fault in each build, contained the same way where the native
   build can be contained at all: a NaN in the output (fault ``non-finite`` at the same block,
   the input passes on, the stage bypassed after), a SOFT_ERROR flag (counted, output kept),
   NEED_RESET (tests/fixtures/plugins/reset-dsp: reset before the next block in both).
   **What native cannot contain**, and so is only run in wasm: a trap (``unreachable`` is a
   SIGILL that kills the host process natively) and an endless loop (a native call cannot be
   preempted; the wasm stage is stopped by the epoch deadline and bypassed). The fault fixture is
   tests/fixtures/plugins/fault-dsp, a C plugin built both ways like the examples.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stellatune import package
from stellatune.compose import build_dsp_stage
from stellatune.engine import Chain, HotPathStage
from stellatune.executor import ComponentExecutor
from stellatune.paths import default_cache_dir
from stellatune.runtime import WasmPluginRuntime
from stellatune.sdk.build import build_plugin

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from stbench.kernels import CONFIGS as BENCH_CONFIGS  # noqa: E402 (bench/ on the path first)
from stbench.timing import ChainCase, interleaved_rounds  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "plugins"
FAULT_DSP = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "fault-dsp"
RESET_DSP = REPO / "tests" / "fixtures" / "plugins" / "reset-dsp"


def c_dsp_examples() -> list[str]:
    """Every example with a C hot-path source and a dsp ability."""
    out = []
    for d in sorted(EXAMPLES.iterdir()):
        if not any((d / "src").glob("*.c")) or not (d / "plugin.json").is_file():
            continue
        manifest = json.loads((d / "plugin.json").read_text())
        if any(a["kind"] == "dsp" for c in manifest["components"] for a in c["abilities"]):
            out.append(d.name)
    return out


DSPS = c_dsp_examples()


def _ability(name: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    manifest = json.loads((EXAMPLES / name / "plugin.json").read_text())
    ability = manifest["components"][0]["abilities"][0]
    schema = json.loads(ability["config_schema_json"])["properties"]
    return manifest["id"], ability["type_id"], schema, json.loads(ability["default_config_json"])


def configs(name: str) -> dict[str, dict[str, float]]:
    """Named configs over the ability's schema: defaults, all minima, all maxima, middles, and
    three seeded random points inside the ranges."""
    _, _, schema, _ = _ability(name)
    ranged = {k: p for k, p in schema.items() if "minimum" in p and "maximum" in p}
    out = {
        "defaults": {},
        "minima": {k: p["minimum"] for k, p in ranged.items()},
        "maxima": {k: p["maximum"] for k, p in ranged.items()},
        "middles": {k: (p["minimum"] + p["maximum"]) / 2 for k, p in ranged.items()},
    }
    rng = np.random.default_rng(sum(map(ord, name)))
    for i in range(3):
        out[f"random{i}"] = {k: float(rng.uniform(p["minimum"], p["maximum"])) for k, p in ranged.items()}
    return out


def changes(name: str) -> dict[str, float]:
    """A parameter change applied half-way (the parameters set between blocks, not the ones
    that need a new instance)."""
    _, _, schema, _ = _ability(name)
    rng = np.random.default_rng(7)
    recreate = {"max_delay_ms"}  # ST_PARAM_RECREATE in delay.c: not a hot-path set_param
    return {
        k: float(rng.uniform(p["minimum"], p["maximum"]))
        for k, p in schema.items()
        if "minimum" in p and k not in recreate
    }


def signals(frames: int, channels: int, rate: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    t = np.arange(frames) / rate
    sweep = np.sin(2 * np.pi * (20 + (rate / 2.5 - 20) * t / t[-1] / 2) * t)
    impulses = np.zeros(frames)
    impulses[:: max(1, frames // 7)] = 1.0
    out = {
        "noise": (rng.random((frames, channels)) - 0.5) * 0.8,
        "sweep": np.repeat(sweep[:, None], channels, axis=1) * 0.7,
        "impulses": np.repeat(impulses[:, None], channels, axis=1),
        "full-scale": np.where(rng.random((frames, channels)) < 0.5, -1.0, 1.0),
        "silence": np.zeros((frames, channels)),
        "tiny": (rng.random((frames, channels)) - 0.5) * 1e-30,  # subnormal territory
    }
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[WasmPluginRuntime, ComponentExecutor]]:
    executor = ComponentExecutor(cache_dir=default_cache_dir(), log_dir=tmp_path / "logs")
    (tmp_path / "plugins").mkdir()
    runtime = WasmPluginRuntime(tmp_path / "plugins", executor)
    yield runtime, executor
    runtime.shutdown()
    executor.shutdown()


def _install(runtime: WasmPluginRuntime, artifact: Path) -> str:
    plugin_id = package.install_from_artifact(runtime.plugins_dir, artifact).id
    assert not runtime.sync_plugins().errors
    return plugin_id


def _pair(runtime, executor, plugin_id, type_id, config, rate, channels) -> tuple[HotPathStage, HotPathStage]:
    wasm = build_dsp_stage(runtime, executor, plugin_id, type_id, config, rate, channels)
    try:
        native = build_dsp_stage(runtime, executor, plugin_id, type_id, config, rate, channels, native=True)
    except BaseException:
        wasm.close()
        raise
    assert (wasm.route, native.route) == ("hot-path", "native"), wasm.fallback_reason
    assert wasm.param_names == native.param_names
    return wasm, native


# --- 1. output ---------------------------------------------------------------------------------

#: (sample rate, channels, block frames): the common case, another rate in mono, and a surround
#: layout with odd blocks (a remainder in every SIMD loop).
FORMATS = [(48000, 2, 256), (44100, 1, 64), (96000, 6, 1000)]


@pytest.mark.slow
def test_wasm_output_equals_native_output_for_every_example_dsp(env, built, evidence):
    runtime, executor = env
    seconds = evidence.scale(1, 4)
    figures: dict[str, Any] = {}
    for name in DSPS:
        plugin_id = _install(runtime, built(name))
        _, type_id, _, _ = _ability(name)
        worst, cases, differing = 0.0, 0, []
        for config_name, config in configs(name).items():
            for rate, channels, block in FORMATS:
                wasm, native = _pair(runtime, executor, plugin_id, type_id, config, rate, channels)
                try:
                    chains = [Chain([s], rate, channels, block_frames=block) for s in (wasm, native)]
                    for signal_name, x in signals(int(seconds * rate), channels, rate).items():
                        half = len(x) // 2
                        a1, b1 = (c.process(x[:half]) for c in chains)
                        for s in (wasm, native):  # a parameter change between blocks, both ways
                            s.configure(changes(name))
                        a2, b2 = (c.process(x[half:]) for c in chains)
                        a, b = np.concatenate([a1, a2]), np.concatenate([b1, b2])
                        cases += 1
                        assert wasm.fault is None and native.fault is None
                        err = float(np.max(np.abs(a.astype(np.float64) - b))) if len(a) else 0.0
                        worst = max(worst, err)
                        if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                            differing.append(f"{config_name}/{rate}x{channels}/{block}/{signal_name}: {err:g}")
                        for s in (wasm, native):  # the next signal starts from the same state
                            s.configure({**_ability(name)[3], **config})
                            s.reset()
                finally:
                    wasm.close()
                    native.close()
        figures[name] = {"cases": cases, "max_abs_error": worst, "bit_exact": not differing, "differing": differing}
        package.uninstall_by_id(runtime.plugins_dir, plugin_id)
        runtime.sync_plugins()
    evidence.record(
        "compat_output",
        plugins=figures,
        formats=[list(f) for f in FORMATS],
        seconds_per_signal=seconds,
        claim="bit-exact (same C, IEEE arithmetic, no FMA, the SDK's own math on both targets)",
    )
    assert set(figures) == set(DSPS) and {"gain", "eq", "compressor", "delay"} <= set(DSPS)
    for name, f in figures.items():
        assert f["bit_exact"], f"{name}: wasm and native differ ({f['max_abs_error']:g}): {f['differing'][:5]}"


# --- 2. latency envelope -----------------------------------------------------------------------


@pytest.mark.slow
def test_latency_envelope_of_wasm_and_native_at_64_128_256_frames(env, built, evidence):
    """Per-block times from the engine's C clock, recorded; nothing about time is asserted."""
    runtime, executor = env
    rounds = evidence.scale(5, 30)
    source = np.ascontiguousarray(signals(48000, 2, 48000)["noise"])
    envelope: dict[str, Any] = {}
    faults: list[dict] = []
    for name in DSPS:
        plugin_id = _install(runtime, built(name))
        _, type_id, _, _ = _ability(name)
        # The benchmark's settings, which make each kernel do real work (every EQ band on...).
        config = BENCH_CONFIGS.get(name, configs(name)["random0"])
        envelope[name] = {"config": config}
        for frames in (64, 128, 256):

            def make(native: bool, plugin_id=plugin_id, type_id=type_id, config=config) -> Callable[[], list[Any]]:
                return lambda: [build_dsp_stage(runtime, executor, plugin_id, type_id, config, 48000, 2, native=native)]

            cases = {
                route: ChainCase(make(route == "native"), frames, source, f"{name}/{route}/{frames}", faults)
                for route in ("wasm", "native")
            }
            try:
                per_round = interleaved_rounds(cases, rounds)
                envelope[name][str(frames)] = {
                    route: _envelope(case.stages[0], per_round[route]) for route, case in cases.items()
                }
            finally:
                for case in cases.values():
                    case.close()
        package.uninstall_by_id(runtime.plugins_dir, plugin_id)
        runtime.sync_plugins()
    evidence.record(
        "compat_latency",
        envelope=envelope,
        rounds=rounds,
        source_frames=len(source),
        faults=faults,
        how="per-block process time of one stage in the engine's C block loop (bench/stbench/timing.py ChainCase)",
    )
    for name in DSPS:
        for frames in (64, 128, 256):
            for route in ("wasm", "native"):
                assert envelope[name][str(frames)][route]["blocks"] > 0


def _envelope(stage: HotPathStage, per_round_ns: list[float]) -> dict[str, float]:
    st = stage.stats()  # the C per-stage clock: every block of every round (and the warm-up)
    ordered = sorted(per_round_ns)
    return {
        "blocks": st.calls,
        "p50_us": st.p50_us,
        "p99_us": st.p99_us,
        "max_us": st.max_us,
        "mean_us": st.mean_us,
        "median_round_ns_per_block": ordered[len(ordered) // 2],
    }


# --- 3. error behaviour ------------------------------------------------------------------------


def _run_both(runtime, executor, plugin_id, type_id, config, x, block=64, **chain_options):
    wasm, native = _pair(runtime, executor, plugin_id, type_id, config, 48000, 2)
    try:
        outs = [Chain([s], 48000, 2, block_frames=block, **chain_options).process(x) for s in (wasm, native)]
        return outs, [s.stats() for s in (wasm, native)]
    finally:
        wasm.close()
        native.close()


@pytest.fixture
def fault_dsp(env) -> str:
    return _install(env[0], build_plugin(FAULT_DSP))


def test_a_nan_is_contained_the_same_way_in_wasm_and_native(env, fault_dsp, evidence):
    runtime, executor = env
    x = signals(64 * 8, 2, 48000)["noise"]
    (a, b), (sa, sb) = _run_both(runtime, executor, fault_dsp, "fault", {"mode": 1, "after": 3}, x)
    for st in (sa, sb):
        assert st.fault is not None and (st.fault.kind, st.fault.block) == ("non-finite", 3)
        assert st.calls == 3  # the healthy blocks; bypassed after the fault, never called again
    assert sa.fault.code == sb.fault.code  # the same sample index
    expected = x.copy()
    expected[: 3 * 64] *= np.float32(0.5)  # halved until the fault; its input passes on after
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(a, b)
    evidence.record(
        "compat_fault_nonfinite",
        wasm={"kind": sa.fault.kind, "block": sa.fault.block, "code": sa.fault.code},
        native={"kind": sb.fault.kind, "block": sb.fault.block, "code": sb.fault.code},
        same=True,
    )


def test_a_soft_error_flag_is_counted_the_same_way_in_wasm_and_native(env, fault_dsp):
    runtime, executor = env
    x = signals(64 * 8, 2, 48000)["noise"]
    (a, b), (sa, sb) = _run_both(runtime, executor, fault_dsp, "fault", {"mode": 2, "after": 3}, x)
    assert sa.fault is None and sb.fault is None
    assert sa.soft_errors == sb.soft_errors == 5
    np.testing.assert_array_equal(a, x * np.float32(0.5))
    np.testing.assert_array_equal(a, b)


def test_need_reset_is_honoured_the_same_way_in_wasm_and_native(env):
    runtime, executor = env
    plugin_id = _install(runtime, build_plugin(RESET_DSP))
    x = np.zeros((64 * 12, 2), np.float32)
    (a, b), (sa, sb) = _run_both(runtime, executor, plugin_id, "reset", {"every": 4}, x)
    per_block = a[::64, 0]
    np.testing.assert_array_equal(per_block, np.tile(np.arange(4, dtype=np.float32), 3))
    np.testing.assert_array_equal(a, b)
    assert sa.resets == sb.resets > 0 and sa.fault is None and sb.fault is None


@pytest.mark.parametrize("mode, kind", [(3, "trap"), (4, "timeout")], ids=["trap", "endless-loop"])
def test_what_only_the_sandbox_contains(env, fault_dsp, mode, kind, evidence):
    """A trap and an endless loop, wasm only: natively the first is a SIGILL that ends the
    process and the second a call nothing can preempt, so there is no native side to compare.
    The wasm stage is bypassed and the chain goes on."""
    runtime, executor = env
    x = signals(64 * 8, 2, 48000)["noise"]
    stage = build_dsp_stage(runtime, executor, fault_dsp, "fault", {"mode": mode, "after": 2}, 48000, 2)
    try:
        out = Chain([stage], 48000, 2, block_frames=64, offline_deadline_ms=50).process(x)
        fault = stage.fault
        assert fault is not None and fault.kind == kind, fault
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[: 2 * 64], x[: 2 * 64] * np.float32(0.5))
        np.testing.assert_array_equal(out[-64:], x[-64:])  # bypassed: the input passes on
    finally:
        stage.close()
    evidence.record(f"compat_fault_{kind}", wasm={"kind": fault.kind, "block": fault.block}, native="not containable")
