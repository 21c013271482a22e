"""The components built from the same C kernels: instantiation with nothing but the type-only
interfaces, describe-hot-path against the core module's arena, the component processing path
against the hot path, and the config quartet (which also exercises the SDK's JSON reader and
number writer)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stellatune import abi

DSP = "stellatune:plugin/dsp@0.1.0"
LIFECYCLE = "stellatune:plugin/lifecycle@0.1.0"


def spec_from_record(rec) -> abi.CoreModuleSpec:
    """The executor's job, done here to check the record maps onto CoreModuleSpec cleanly."""
    b = rec.buffer
    return abi.CoreModuleSpec(
        role=abi.Role[rec.role.upper().replace("-", "_")],
        wasm_rel_path=getattr(rec, "wasm-rel-path"),
        abi_version=getattr(rec, "abi-version"),
        memory_export=getattr(rec, "memory-export"),
        init_export=getattr(rec, "init-export"),
        process_export=getattr(rec, "process-export"),
        reset_export=getattr(rec, "reset-export"),
        drop_export=getattr(rec, "drop-export"),
        buffer=abi.BufferLayout(
            in_offset=getattr(b, "in-offset"),
            out_offset=getattr(b, "out-offset"),
            max_frames=getattr(b, "max-frames"),
            channels=b.channels,
            sample_format=abi.SampleFormat[getattr(b, "sample-format").upper()],
            interleaved=b.interleaved,
        ),
    )


def f32bytes(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


@pytest.fixture
def gain(component):
    c = component("gain")
    proc = c("create", c.spec(48000, 2))
    return c, proc


def test_instantiates_without_imports_and_runs_lifecycle(component, built):
    c = component("gain")
    assert set(c.component.type.imports(c.store.engine)) == {
        "stellatune:plugin/common@0.1.0",
        "stellatune:plugin/hot-path@0.1.0",
    }  # types only
    assert {DSP, LIFECYCLE} <= set(c.component.type.exports(c.store.engine))
    assert c.func("on-enable", LIFECYCLE)(c.store) is None
    assert c.func("on-disable", LIFECYCLE)(c.store, "host-disable") is None


@pytest.mark.parametrize("name", ["gain", "delay", "passthrough-sink"])
def test_instantiation_time_is_reported(component, capsys, name):
    """Reported, not asserted (the machines are noisy); the instances must work."""
    c = component(name)  # compiled once per session
    times = []
    for _ in range(20):
        store = type(c.store)(c.store.engine)
        t = time.perf_counter()
        instance = c.linker.instantiate(store, c.component)
        times.append(time.perf_counter() - t)
    lifecycle = instance.get_export_index(store, LIFECYCLE)
    on_enable = instance.get_func(store, instance.get_export_index(store, "on-enable", lifecycle))
    assert on_enable(store) is None
    with capsys.disabled():
        print(f"\n[sdk] {name} component instantiation: median {np.median(times) * 1e6:.0f} us")


@pytest.mark.parametrize("name", ["gain", "eq", "compressor", "delay"])
@pytest.mark.parametrize("channels", [1, 2, 8])
def test_describe_hot_path_matches_the_core_module(component, hot, name, channels):
    c = component(name)
    proc = c("create", c.spec(44100, channels))
    spec = spec_from_record(c("[method]processor.describe-hot-path", proc, c.spec(44100, channels)))
    assert spec == abi.sdk_core_module_spec(f"wasm/{name}.hotpath.wasm", abi.Role.DSP_TRANSFORM, channels)
    assert spec.problems() == []
    # The offsets really are the core module's: init with them and run a block.
    m = hot(name)
    assert m.init(channels=channels, sample_rate=44100, max_frames=spec.buffer.max_frames) == 0


@pytest.mark.parametrize("sample_rate,channels", [(48000, 9), (48000, 0), (0, 2), (800000, 2)])
def test_describe_hot_path_is_none_beyond_sdk_limits(gain, sample_rate, channels):
    c, proc = gain
    assert c("[method]processor.describe-hot-path", proc, c.spec(sample_rate, channels)) is None


NON_DEFAULT_CONFIGS = {
    "gain": {"gain_db": -9.5},
    "eq": {"low_gain_db": 4, "mid2_freq": 1800, "mid2_gain_db": -3, "high_gain_db": 2.5},
    "compressor": {"threshold_db": -30, "ratio": 8, "attack_ms": 1},
    "delay": {"time_ms": 20, "feedback": 0.5, "mix": 0.5},
}


@pytest.mark.parametrize("name", ["gain", "eq", "compressor", "delay"])
def test_component_processing_equals_the_hot_path(component, hot, noise, name):
    config = NON_DEFAULT_CONFIGS[name]
    x = noise(5000, 2)
    c = component(name)
    proc = c("create", c.spec(48000, 2))
    assert c("[method]processor.apply-config-update-json", proc, json.dumps(config)) is None
    via_component = np.concatenate(
        [
            np.frombuffer(
                bytes(c("[method]processor.process-interleaved-f32", proc, 2, f32bytes(x[a : a + 2500]))), dtype="<f4"
            ).reshape(-1, 2)
            for a in (0, 2500)
        ]
    )
    m = hot(name)
    assert m.init(channels=2, max_frames=4096) == 0
    m.configure(**config)
    # The component processes in blocks of up to 4096 frames; so does this.
    np.testing.assert_array_equal(via_component, np.concatenate([m.process(x[0:2500]), m.process(x[2500:5000])]))


def test_config_apply_changes_the_gain(gain, noise):
    c, proc = gain
    x = noise(256, 2)

    def process():
        return np.frombuffer(
            bytes(c("[method]processor.process-interleaved-f32", proc, 2, f32bytes(x))), dtype="<f4"
        ).reshape(x.shape)

    np.testing.assert_array_equal(process(), x)
    assert c("[method]processor.apply-config-update-json", proc, '{"gain_db": -6}') is None
    np.testing.assert_array_equal(process(), x * np.float32(10 ** (-6 / 20)))


def test_plan_hot_applies_valid_and_rejects_invalid_config(gain):
    c, proc = gain
    plan = c("[method]processor.plan-config-update-json", proc, '{"gain_db": 3}')
    assert (plan.mode, plan.reason) == ("hot-apply", None)
    plan = c("[method]processor.plan-config-update-json", proc, '{"gain_db": 100}')
    assert plan.mode == "reject" and "gain_db" in plan.reason and "24" in plan.reason
    # Planning changes nothing.
    assert json.loads(c("[method]processor.export-state-json", proc)) == {"gain_db": 0}


@pytest.mark.parametrize(
    "bad,fragment",
    [
        ('{"gain_db": "loud"}', "gain_db"),
        ('{"gain_db": 30}', "gain_db"),
        ('{"volume": 1}', 'unknown config key "volume"'),
        ('{"gain_db": -3', "JSON object"),
        ("[1, 2]", "JSON object"),
        ('{"gain_db": -3} x', "JSON object"),
        ('{"gain_db": 01}', "JSON object"),
        ('{"gain_db": {"nested": 1}}', "gain_db"),
    ],
)
def test_bad_config_is_refused_and_changes_nothing(gain, bad, fragment):
    c, proc = gain
    assert c("[method]processor.apply-config-update-json", proc, '{"gain_db": -2.5}') is None
    err = c("[method]processor.apply-config-update-json", proc, bad)
    assert err.tag == "invalid-arg" and fragment in err.payload
    assert json.loads(c("[method]processor.export-state-json", proc)) == {"gain_db": -2.5}


def test_config_is_all_or_nothing(component):
    c = component("delay")
    proc = c("create", c.spec(48000, 2))
    err = c("[method]processor.apply-config-update-json", proc, '{"time_ms": 10, "feedback": 2.0}')
    assert err.tag == "invalid-arg"
    assert json.loads(c("[method]processor.export-state-json", proc)) == {
        "time_ms": 250,
        "feedback": 0.35,
        "mix": 0.3,
        "max_delay_ms": 1000,
    }


def test_json_reader_accepts_whitespace_exponents_and_empty_objects(gain):
    c, proc = gain
    assert c("[method]processor.apply-config-update-json", proc, ' \n{ "gain_db" :\t-1.5e1 }\r\n') is None
    assert json.loads(c("[method]processor.export-state-json", proc)) == {"gain_db": -15}
    assert c("[method]processor.apply-config-update-json", proc, "{}") is None
    assert json.loads(c("[method]processor.export-state-json", proc)) == {"gain_db": -15}


# The factory fixture hands out a fresh instance per call, so reusing it across examples is safe.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(min_value=-96, max_value=24, width=32))
def test_export_writes_numbers_that_read_back_exactly(component, value):
    c = component("gain")
    proc = c("create", c.spec(48000, 1))
    assert c("[method]processor.apply-config-update-json", proc, json.dumps({"gain_db": value})) is None
    exported = c("[method]processor.export-state-json", proc)
    assert np.float32(json.loads(exported)["gain_db"]) == np.float32(value)
    # and import (= apply) of the export restores the same state in a new processor
    other = c("create", c.spec(48000, 1))
    assert c("[method]processor.import-state-json", other, exported) is None
    assert c("[method]processor.export-state-json", other) == exported


def test_process_rejects_wrong_channels_and_partial_frames(gain):
    c, proc = gain
    err = c("[method]processor.process-interleaved-f32", proc, 1, bytes(8))
    assert err.tag == "invalid-arg"
    err = c("[method]processor.process-interleaved-f32", proc, 2, bytes(12))
    assert err.tag == "invalid-arg"
    assert bytes(c("[method]processor.process-interleaved-f32", proc, 2, b"")) == b""


def test_large_lists_are_processed_in_sdk_blocks(gain, noise):
    c, proc = gain
    c("[method]processor.apply-config-update-json", proc, '{"gain_db": 6}')
    x = noise(40000, 2)  # ~10 SDK blocks in one call
    out = np.frombuffer(
        bytes(c("[method]processor.process-interleaved-f32", proc, 2, f32bytes(x))), dtype="<f4"
    ).reshape(x.shape)
    np.testing.assert_array_equal(out, x * np.float32(10 ** (6 / 20)))


def test_a_list_beyond_the_argument_heap_traps_cleanly(gain):
    """Arguments live in a 1 MiB heap; a bigger list is refused by a trap, not by corruption."""
    c, proc = gain
    with pytest.raises(wasmtime.WasmtimeError):
        c("[method]processor.process-interleaved-f32", proc, 2, bytes(2 << 20))


def test_layouts_and_output_channels(gain):
    c, proc = gain
    assert c("[method]processor.supported-layouts", proc) == 0xFFFFFFFF
    assert c("[method]processor.output-channels", proc) == 0


def test_create_refuses_bad_specs_and_too_many_processors(component):
    c = component("gain")
    err = c("create", c.spec(48000, 9))
    assert err.tag == "unsupported"
    procs = [c("create", c.spec(48000, 2)) for _ in range(abi.SDK_MAX_INSTANCES)]
    err = c("create", c.spec(48000, 2))
    assert err.tag == "unsupported"
    procs[0].drop(c.store)  # the destructor frees the slot
    again = c("create", c.spec(48000, 2))
    assert c("[method]processor.output-channels", again) == 0


def test_closed_processor_refuses_calls(gain):
    c, proc = gain
    c("[method]processor.close", proc)
    err = c("[method]processor.apply-config-update-json", proc, "{}")
    assert err.tag == "invalid-arg" and "closed" in err.payload
    err = c("[method]processor.process-interleaved-f32", proc, 2, bytes(8))
    assert err.tag == "invalid-arg"


# --- output-sink world --------------------------------------------------------------------


@pytest.fixture
def sink(component):
    c = component("passthrough-sink")
    return c, c("create")


def test_sink_session_flow(sink, noise):
    c, s = sink
    targets = json.loads(c("[method]session.list-targets-json", s))
    assert targets and targets[0]["id"] == "default"
    negotiated = c("[method]session.negotiate-spec-json", s, json.dumps(targets[0]), c.spec(44100, 2))
    assert (getattr(negotiated.spec, "sample-rate"), negotiated.spec.channels) == (44100, 2)
    assert getattr(negotiated, "prefer-track-rate") is False
    err = c("[method]session.write-interleaved-f32", s, 2, f32bytes(noise(4, 2)))
    assert err.tag == "invalid-arg" and "open" in err.payload
    assert c("[method]session.open-json", s, json.dumps(targets[0]), c.spec(44100, 2)) is None
    assert c("[method]session.write-interleaved-f32", s, 2, f32bytes(noise(300, 2))) == 300
    status = c("[method]session.query-status", s)
    assert (getattr(status, "queued-samples"), status.running) == (0, True)
    assert c("[method]session.flush", s) is None
    assert c("[method]session.reset", s) is None


def test_sink_partial_write_follows_max_accept(sink, noise):
    c, s = sink
    assert c("[method]session.apply-config-update-json", s, '{"max_accept": 64}') is None
    assert c("[method]session.open-json", s, "{}", c.spec(48000, 2)) is None
    assert c("[method]session.write-interleaved-f32", s, 2, f32bytes(noise(300, 2))) == 64


def test_sink_describe_hot_path(sink):
    c, s = sink
    spec = spec_from_record(c("[method]session.describe-hot-path", s, c.spec(48000, 2)))
    assert spec == abi.sdk_core_module_spec("wasm/passthrough-sink.hotpath.wasm", abi.Role.OUTPUT_SINK, 2)
    assert spec.buffer.out_offset is None and spec.problems() == []
