"""Chain.process: the same C block loop as live playback, checked against numpy."""

import numpy as np
import pytest

from stellatune.abi import BufferLayout, CoreModuleSpec, Role
from stellatune.engine import Chain, HotPathStage
from stellatune.errors import EngineError, HotPathAbiError

_INIT = '(func (export "st_hot_init") (param i32 i32) (result i32) i32.const 0)'
_PROCESS = '(func (export "st_hot_process") (param i32 i32 i32 i32) (result i32) i32.const 0)'


def wat_module(path, *items: str):
    """Write a core module with a 5-page exported memory and ``items`` (WAT fields) to ``path``."""
    import wasmtime

    path.write_bytes(wasmtime.wat2wasm(" ".join(['(module (memory (export "memory") 5)', *items, ")"])))
    return path


def gain_stage(kernels, spec, gain, native=False):
    if native:
        return HotPathStage.from_native(kernels["gain.so"], spec(), 48000, 2, {"gain": gain})
    return HotPathStage.from_wasm(kernels["gain"], spec(), 48000, 2, {"gain": gain})


@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
@pytest.mark.parametrize("frames", [1, 255, 256, 1000, 48000])
def test_gain_equals_numpy_reference(kernels, spec, noise, native, frames):
    x = noise(frames)
    y = Chain([gain_stage(kernels, spec, 0.3, native)], 48000, 2).process(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, x * np.float32(0.3))


def test_wasm_and_native_builds_agree_bit_exactly(kernels, spec, noise):
    x = noise(10_000)
    wasm = Chain([gain_stage(kernels, spec, 0.7)], 48000, 2).process(x)
    native = Chain([gain_stage(kernels, spec, 0.7, native=True)], 48000, 2).process(x)
    np.testing.assert_array_equal(wasm, native)


def test_chain_applies_stages_in_order_and_leaves_input_alone(kernels, spec, noise):
    x = noise(4096)
    before = x.copy()
    chain = [gain_stage(kernels, spec, 0.5), gain_stage(kernels, spec, 0.25, native=True)]
    y = Chain(chain, 48000, 2, block_frames=128).process(x)
    np.testing.assert_array_equal(y, (x * np.float32(0.5)) * np.float32(0.25))
    np.testing.assert_array_equal(x, before)


def test_set_param_between_renders_reaches_the_module(kernels, spec, noise):
    stage = gain_stage(kernels, spec, 1.0)
    pipe = Chain([stage], 48000, 2)
    x = noise(512)
    np.testing.assert_array_equal(pipe.process(x), x)
    stage.set_param("gain", 2.0)
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(2.0))


def test_a_command_queued_after_the_last_block_is_applied_when_the_run_ends(kernels, spec, noise):
    stage = gain_stage(kernels, spec, 1.0)
    pipe = Chain([stage], 48000, 2)
    with pipe.running():
        stage.set_param("gain", 0.5)  # queued: no block follows it in this run
    stage.set_param("gain", 2.0)  # idle: applied at once; the queued 0.5 must not override it
    x = noise(512)
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(2.0))


def test_bypass_passes_blocks_through(kernels, spec, noise):
    stage = gain_stage(kernels, spec, 0.1)
    pipe = Chain([stage], 48000, 2)
    x = noise(600)
    stage.bypass()
    np.testing.assert_array_equal(pipe.process(x), x)
    stage.bypass(False)
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(0.1))


def test_float64_input_is_converted(kernels, spec, noise):
    x = noise(300).astype(np.float64)
    y = Chain([gain_stage(kernels, spec, 0.5)], 48000, 2).process(x)
    np.testing.assert_array_equal(y, x.astype(np.float32) * np.float32(0.5))


def test_param_names_and_stats(kernels, spec, noise):
    stage = gain_stage(kernels, spec, 0.5)
    Chain([stage], 48000, 2, block_frames=256).process(noise(2560))
    st = stage.stats()
    assert stage.param_names == ("gain",)
    assert st.calls == 10 and st.fault is None
    assert 0 < st.min_us <= st.p50_us <= st.p99_us <= st.max_us


@pytest.mark.parametrize(
    "config, match",
    [
        ({"volume": 1.0}, "unknown parameter 'volume'.*known: gain"),
        ({"gain": "loud"}, "must be a number"),
        ({"gain": True}, "must be a number"),
    ],
)
def test_bad_config_is_refused_with_a_clear_error(kernels, spec, config, match):
    with pytest.raises(EngineError, match=match):
        HotPathStage.from_wasm(kernels["gain"], spec(), 48000, 2, config)


def test_pipeline_refuses_mismatches(kernels, spec):
    stage = gain_stage(kernels, spec, 1.0)
    with pytest.raises(EngineError, match="44100 Hz"):
        Chain([stage], 44100, 2)
    with pytest.raises(EngineError, match="at most 1024 frames"):
        Chain([stage], 48000, 2, block_frames=2048)
    with pytest.raises(EngineError, match="only once"):
        Chain([stage, stage], 48000, 2)
    with pytest.raises(EngineError, match=r"shape \(frames, 2\)"):
        Chain([stage], 48000, 2).process(np.zeros((10, 3), np.float32))
    with pytest.raises(EngineError, match="float samples"):
        Chain([stage], 48000, 2).process(np.zeros((10, 2), np.int16))


def test_a_stage_runs_in_one_pipeline_at_a_time(kernels, spec, noise):
    stage = gain_stage(kernels, spec, 1.0)
    first, second = Chain([stage], 48000, 2), Chain([stage], 48000, 2)
    with first.running(), pytest.raises(EngineError, match="already running"):
        second.process(noise(16))


def test_spec_problems_are_hot_path_abi_errors(kernels, spec):
    bad = CoreModuleSpec(
        role=Role.DSP_TRANSFORM,
        wasm_rel_path="x.wasm",
        buffer=BufferLayout(in_offset=16, out_offset=None, max_frames=0, channels=2),
    )
    with pytest.raises(HotPathAbiError) as e:
        HotPathStage.from_wasm(kernels["gain"], bad, 48000, 2)
    for part in ("max-frames", "host scratch", "needs out-offset"):
        assert part in str(e.value)
    with pytest.raises(HotPathAbiError, match="spec has 2 channels"):
        HotPathStage.from_wasm(kernels["gain"], spec(), 48000, 1)


def test_buffers_outside_memory_are_refused(kernels):
    far = CoreModuleSpec(
        role=Role.DSP_TRANSFORM,
        wasm_rel_path="x.wasm",
        buffer=BufferLayout(in_offset=10_000_000, out_offset=10_100_000, max_frames=256, channels=2),
    )
    with pytest.raises(HotPathAbiError, match="memory is"):
        HotPathStage.from_wasm(kernels["gain"], far, 48000, 2)


def test_module_with_imports_or_wrong_exports_is_refused(tmp_path, spec):
    import wasmtime

    importing = tmp_path / "importing.wasm"
    importing.write_bytes(wasmtime.wat2wasm('(module (import "env" "f" (func)) (memory (export "memory") 1))'))
    with pytest.raises(HotPathAbiError, match=r"must not import anything.*env.f"):
        HotPathStage.from_wasm(importing, spec(), 48000, 2)
    wrong = wat_module(
        tmp_path / "wrong.wasm", _INIT, '(func (export "st_hot_process") (param i32) (result i32) i32.const 0)'
    )
    with pytest.raises(HotPathAbiError, match="signature"):
        HotPathStage.from_wasm(wrong, spec(), 48000, 2)
    missing = wat_module(tmp_path / "missing.wasm")
    with pytest.raises(HotPathAbiError, match="missing export 'st_hot_init'"):
        HotPathStage.from_wasm(missing, spec(), 48000, 2)
    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"not wasm")
    with pytest.raises(HotPathAbiError, match="not a valid core module"):
        HotPathStage.from_wasm(garbage, spec(), 48000, 2)
    with pytest.raises(HotPathAbiError, match="cannot read the core module"):
        HotPathStage.from_wasm(tmp_path / "absent.wasm", spec(), 48000, 2)
    # The optional exports are checked too: calling a mistyped one would fail outside our errors.
    bad_names = wat_module(
        tmp_path / "bad_names.wasm",
        _INIT,
        _PROCESS,
        '(func (export "st_hot_param_names") (param i32) (result i32) i32.const 0)',
    )
    with pytest.raises(HotPathAbiError, match="signature"):
        HotPathStage.from_wasm(bad_names, spec(), 48000, 2)


def test_init_error_code_is_reported(kernels, spec):
    # The sink fixture refuses to run as a dsp-transform (init returns 2 = unsupported).
    with pytest.raises(HotPathAbiError, match="init returned error code 2"):
        HotPathStage.from_wasm(kernels["sink"], spec(), 48000, 2)


def test_a_module_that_loops_in_init_is_interrupted(tmp_path, spec):
    looping = wat_module(
        tmp_path / "init_loop.wasm",
        _PROCESS,
        '(func (export "st_hot_init") (param i32 i32) (result i32) (loop $l (br $l)) i32.const 0)',
    )
    with pytest.raises(HotPathAbiError, match=r"(?s)init trapped.*wasm trap: interrupt"):
        HotPathStage.from_wasm(looping, spec(), 48000, 2)


def test_watchdog_cost_measurement_runs(tmp_path):
    from stellatune.engine import measure

    cost = measure.epoch_cost(measure._gain_module(tmp_path), seconds=0.05)
    assert set(cost) == {"on", "off"}
    assert all(0 < c["p50_us"] <= c["p99_us"] for c in cost.values())


@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
def test_denormals_flush_inside_the_chain_only(kernels, spec, native):
    # 1e-30 * 1e-10 is a float32 subnormal: the chain flushes it to zero (FTZ/DAZ), and the
    # caller's thread gets its IEEE mode back afterwards.
    x = np.full((256, 2), 1e-30, np.float32)
    y = Chain([gain_stage(kernels, spec, 1e-10, native)], 48000, 2).process(x)
    assert not y.any()
    assert (x[0, 0] * np.float32(1e-10)) != 0


def test_a_name_table_at_offset_0_means_no_parameters(tmp_path, spec):
    module = wat_module(
        tmp_path / "no_params.wasm",
        '(data (i32.const 0) "junk\\00")',
        _INIT,
        _PROCESS,
        '(func (export "st_hot_param_names") (result i32) i32.const 0)',
    )
    assert HotPathStage.from_wasm(module, spec(), 48000, 2).param_names == ()
