"""build_dsp_stage / build_sink_stage: the component is asked for its hot path first; a plugin
without one (pygain, Python) falls back to the component path, offline and live."""

import time

import numpy as np
import pytest

from stellatune.abi import Role
from stellatune.compose import build_dsp_stage, build_sink_stage
from stellatune.engine import Chain, ComponentStage, HotPathStage
from stellatune.errors import EngineError, HotPathAbiError, PluginError, RuntimeStateError
from stellatune.runtime.model import DesiredState

RATE = 48000
GAIN, PYGAIN = "dev.stellatune.example.gain", "dev.stellatune.example.pygain"


def db(gain_db: float) -> np.float32:
    return np.float32(10 ** (gain_db / 20))


@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
def test_gain_runs_the_core_module_its_component_describes(runtime, executor, install, noise, native):
    install("gain")
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", '{"gain_db": -6}', RATE, 2, native=native)
    assert isinstance(stage, HotPathStage)
    assert stage.route == ("native" if native else "hot-path") and stage.fallback_reason is None
    assert executor.live_instances(GAIN) == 1  # the stage holds its component processor
    x = noise(1000)
    np.testing.assert_allclose(Chain([stage], RATE, 2).process(x), x * db(-6), rtol=1e-6, atol=0)
    stage.close()
    assert executor.live_instances(GAIN) == 0


@pytest.mark.parametrize("name, type_id", [("eq", "eq"), ("compressor", "compressor"), ("delay", "delay")])
def test_every_c_example_gets_its_hot_path(runtime, executor, install, noise, name, type_id):
    (plugin,) = install(name)
    stage = build_dsp_stage(runtime, executor, plugin, type_id, None, RATE, 2)
    try:
        assert stage.route == "hot-path"
        y = Chain([stage], RATE, 2).process(noise(4096))
        assert np.isfinite(y).all() and stage.fault is None and stage.stats().calls == 16
    finally:
        stage.close()


def test_config_errors_are_clear_and_leak_no_instance(runtime, executor, install):
    install("gain")
    # The component sees the config first and names the key it does not know.
    with pytest.raises(PluginError, match='unknown config key "volume"'):
        build_dsp_stage(runtime, executor, GAIN, "gain", {"volume": 1}, RATE, 2)
    with pytest.raises(EngineError, match="not valid JSON"):
        build_dsp_stage(runtime, executor, GAIN, "gain", "{oops", RATE, 2)
    with pytest.raises(RuntimeStateError, match=r"no dsp ability 'eq' \(has: gain\)"):
        build_dsp_stage(runtime, executor, GAIN, "eq", None, RATE, 2)
    with pytest.raises(RuntimeStateError, match=r"'dev.nope' is not active"):
        build_dsp_stage(runtime, executor, "dev.nope", "gain", None, RATE, 2)
    (runtime.plugins_dir / GAIN / "native" / "gain.so").unlink()
    with pytest.raises(HotPathAbiError, match=r"no hot-path native build at native/gain.so"):
        build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2, native=True)
    assert executor.live_instances(GAIN) == 0


def test_a_broken_hot_path_falls_back_to_the_component(runtime, executor, install, noise):
    install("gain")
    module = runtime.plugins_dir / GAIN / "wasm" / "gain.hotpath.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0")  # a valid, empty module: exports nothing
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": -6}, RATE, 2)
    assert isinstance(stage, ComponentStage) and stage.route == "component"
    assert "core module rejected" in stage.fallback_reason and "missing export" in stage.fallback_reason
    x = noise(512)
    np.testing.assert_allclose(Chain([stage], RATE, 2).process(x), x * db(-6), rtol=1e-6)
    stage.close()


def test_pygain_has_no_hot_path_and_runs_on_the_component_path_offline(runtime, executor, install, noise):
    install("gain", "pygain")
    py = build_dsp_stage(runtime, executor, PYGAIN, "pygain", {"gain_db": -6}, RATE, 2)
    assert isinstance(py, ComponentStage) and py.route == "component"
    assert py.fallback_reason == f"the component offers no hot path for {RATE} Hz x 2 ch"
    hot = build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": 6}, RATE, 2)
    # hot-path → component → hot-path: the C chain is split around the Python call.
    pipe = Chain(
        [hot, py, build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": -6}, RATE, 2)], RATE, 2, block_frames=256
    )
    x = noise(1000)  # not a whole number of blocks
    np.testing.assert_allclose(pipe.process(x), x * db(6) * db(-6) * db(-6), rtol=1e-5, atol=1e-7)
    assert [s.stats().calls for s in pipe.stages] == [4, 4, 4]
    py.set_param("invert", True)  # a partial update through the plugin's plan: gain_db stays
    np.testing.assert_allclose(pipe.process(x), -x * db(6) * db(-6) * db(-6), rtol=1e-5, atol=1e-7)
    py.configure({"gain_db": 0, "invert": False})
    np.testing.assert_allclose(pipe.process(x), x * db(6) * db(-6), rtol=1e-5, atol=1e-7)
    for stage in pipe.stages:
        stage.close()


def test_pygain_plays_live_on_the_feeder_thread(runtime, executor, install, noise):
    install("gain", "pygain")
    received = []

    def record(block):
        received.append(block.copy())
        return len(block)

    stages = [
        build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": -6}, RATE, 2),
        build_dsp_stage(runtime, executor, PYGAIN, "pygain", {"gain_db": -6}, RATE, 2),
        ComponentStage(
            name="recorder",
            role=Role.OUTPUT_SINK,
            sample_rate=RATE,
            channels=2,
            process=record,
            fallback_reason="test sink",
        ),
    ]
    pipe = Chain(stages, RATE, 2, block_frames=256)
    x = noise(RATE // 4)
    handle = pipe.play(x, frames=128)  # a sink at the end and no device: the engine clock
    try:
        assert handle.wait(timeout=30)
    finally:
        handle.stop()
    stats = handle.stats()
    assert stats.chain_thread == "feeder" and stats.finished and stats.frames_played == len(x)
    assert all(s.fault is None for s in stats.stages)
    np.testing.assert_allclose(np.concatenate(received), x * db(-6) * db(-6), rtol=1e-5, atol=1e-7)
    for stage in stages:
        stage.close()


def test_hot_path_chains_still_run_in_the_callback(runtime, executor, install, noise):
    install("gain")
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2)
    pipe = Chain([stage], RATE, 2)
    handle = pipe.play(noise(RATE // 8), device="engine-clock", frames=128)
    try:
        assert handle.wait(timeout=10)
    finally:
        handle.stop()
    stats = handle.stats()
    assert stats.chain_thread == "callback"
    assert stats.callback_p50_us <= stats.callback_p99_us <= stats.callback_p999_us <= stats.render_max_us
    assert stats.period_us == pytest.approx(128 / RATE * 1e6)
    stage.close()


def test_disabling_the_plugin_underneath_fails_stages_cleanly(runtime, executor, install, noise):
    install("gain", "pygain")
    hot = build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": -6}, RATE, 2)
    py = build_dsp_stage(runtime, executor, PYGAIN, "pygain", {"gain_db": -6}, RATE, 2)
    pipe = Chain([hot, py], RATE, 2)
    runtime.set_desired_state(PYGAIN, DesiredState.DISABLED)
    runtime.set_desired_state(GAIN, DesiredState.DISABLED)
    assert executor.live_instances(PYGAIN) == 0 and executor.live_instances(GAIN) == 0
    x = noise(512)
    # The core module does not depend on the component instance; the component stage faults
    # on its first block and passes audio through from then on.
    np.testing.assert_allclose(pipe.process(x), x * db(-6), rtol=1e-6)
    assert py.fault.kind == "plugin-error" and py.fault.block == 0 and "RuntimeStateError" in py.fault.message
    assert hot.fault is None
    hot.close()
    py.close()  # nothing left to close: no error
    with pytest.raises(RuntimeStateError, match="not active"):
        build_dsp_stage(runtime, executor, PYGAIN, "pygain", None, RATE, 2)


def test_runtime_shutdown_tears_down_what_stages_hold(runtime, executor, install):
    install("gain")
    stage = build_dsp_stage(runtime, executor, GAIN, "gain", None, RATE, 2)
    runtime.shutdown()
    assert executor.live_instances(GAIN) == 0
    stage.close()


def test_a_plugin_refusing_its_config_is_a_plugin_error(runtime, executor, install):
    install("gain")
    with pytest.raises(PluginError):
        build_dsp_stage(runtime, executor, GAIN, "gain", {"gain_db": "loud"}, RATE, 2)
    assert executor.live_instances(GAIN) == 0


def test_passthrough_sink_gets_its_role_2_core_module(runtime, executor, install, noise):
    (sink_id,) = install("passthrough-sink")
    stage = build_sink_stage(runtime, executor, sink_id, "passthrough", "{}", None, RATE, 2)
    try:
        assert isinstance(stage, HotPathStage) and stage.role is Role.OUTPUT_SINK and stage.route == "hot-path"
        x = noise(1024)
        np.testing.assert_array_equal(Chain([stage], RATE, 2).process(x), x)  # a sink leaves audio alone
        st = stage.stats()
        assert st.calls == 4 and st.short_frames == 0 and st.fault is None
    finally:
        stage.close()
    assert executor.live_instances(sink_id) == 0


def test_disabling_a_plugin_while_it_plays_on_the_component_path(runtime, executor, install, noise):
    install("pygain")
    py = build_dsp_stage(runtime, executor, PYGAIN, "pygain", {"gain_db": -6}, RATE, 2)
    received = []

    def record(block):
        received.append(block.copy())
        return len(block)

    sink = ComponentStage(
        name="recorder",
        role=Role.OUTPUT_SINK,
        sample_rate=RATE,
        channels=2,
        process=record,
        fallback_reason="test sink",
    )
    x = noise(2 * RATE)  # 2 s played in real time: room to disable it mid-play on a loaded machine
    handle = Chain([py, sink], RATE, 2).play(x, frames=128)
    try:
        deadline = time.monotonic() + 30
        while len(received) < 8:  # the feeder has rendered some blocks
            assert time.monotonic() < deadline, "the feeder rendered fewer than 8 blocks in 30 s"
            assert not handle.wait(timeout=0.01), "played out before the plugin could be disabled"
        runtime.set_desired_state(PYGAIN, DesiredState.DISABLED)
        assert handle.wait(timeout=30)
    finally:
        handle.stop()
    out = np.concatenate(received)
    cut = py.fault.block * 256
    assert py.fault.kind == "plugin-error" and 8 <= py.fault.block < len(x) // 256
    np.testing.assert_allclose(out[:cut], x[:cut] * db(-6), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out[cut:], x[cut:])  # passed through once the plugin was gone
    assert handle.stats().finished and executor.live_instances(PYGAIN) == 0
    py.close()
