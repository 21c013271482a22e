"""No NaN or infinity ever reaches an output, and no subnormal leaves a stage.

A DSP stage whose output block holds a NaN/Inf is faulted (kind ``non-finite``, bypassed from
then on) and its *input* passes on for that block; subnormal bit patterns are flushed to a
signed zero; the chain's own input is cleaned (NaN/Inf -> 0, counted). The hostile modules are
real wasm (and native) builds of fixtures/nonfinite.c, which store the bit patterns as integers
and scribble over their own in-region first."""

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stellatune.abi import Role
from stellatune.engine import ENGINE_CLOCK, Chain, ComponentStage, HotPathStage, _core
from stellatune.errors import EngineError

from .conftest import WASM_FLAGS
from .test_playback import assert_recorded, loop_back

FIXTURES = Path(__file__).parent / "fixtures"
RATE = 48000
BLOCK = 256
AFTER = 3
#: kind parameter of fixtures/nonfinite.c -> the bit pattern it stores
PATTERNS = {
    "nan": (1, 0x7FC00000),
    "+inf": (2, 0x7F800000),
    "-inf": (3, 0xFF800000),
    "subnormal": (4, 0x00000001),
    "-subnormal": (5, 0x807FFFFF),
}
NON_FINITE = ["nan", "+inf", "-inf"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    clang = shutil.which("clang-14") or shutil.which("clang")
    if clang is None:
        pytest.fail("clang-14 is required to build the engine's fixture kernels")
    out = tmp_path_factory.mktemp("nonfinite")
    src = str(FIXTURES / "nonfinite.c")
    subprocess.run([clang, *WASM_FLAGS, "-o", str(out / "nf.wasm"), src], check=True)
    subprocess.run([clang, "-O2", "-shared", "-fPIC", "-o", str(out / "nf.so"), src], check=True)
    return {"wasm": out / "nf.wasm", "native": out / "nf.so"}


def bad_stage(hostile, spec, kind: str, native=False, index=7, after=AFTER, gain=1.0) -> HotPathStage:
    config = {"gain": gain, "after": after, "kind": PATTERNS[kind][0], "index": index}
    if native:
        return HotPathStage.from_native(hostile["native"], spec(), RATE, 2, config)
    return HotPathStage.from_wasm(hostile["wasm"], spec(), RATE, 2, config)


def gain(kernels, spec, value: float, native=False) -> HotPathStage:
    if native:
        return HotPathStage.from_native(kernels["gain.so"], spec(), RATE, 2, {"gain": value})
    return HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2, {"gain": value})


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_clean(a: np.ndarray) -> None:
    """All finite, and no subnormal bit pattern (exponent 0 with a non-zero mantissa)."""
    assert np.isfinite(a).all()
    b = bits(a)
    assert not (((b & 0x7F800000) == 0) & ((b & 0x007FFFFF) != 0)).any()


def close_all(*pipes):
    for pipe in pipes:
        for s in pipe.stages:
            s.close()


# --- offline: a non-finite output in the middle and at the end of a chain ------------------


@pytest.mark.parametrize("kind", NON_FINITE)
@pytest.mark.parametrize("where", ["middle", "end"])
@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
@pytest.mark.parametrize("index", [0, 100, BLOCK * 2 - 1], ids=["first", "inside", "last"])
def test_a_non_finite_output_faults_the_stage_and_its_input_passes_on(
    kernels, spec, noise, hostile, kind, where, native, index
):
    reference = Chain([gain(kernels, spec, 0.5), gain(kernels, spec, 0.25, native=True)], RATE, 2, block_frames=BLOCK)
    first, second = gain(kernels, spec, 0.5), gain(kernels, spec, 0.25, native=True)
    bad = bad_stage(hostile, spec, kind, native, index=index)
    pipe = Chain([first, bad, second] if where == "middle" else [first, second, bad], RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 6)
    out = pipe.process(x)
    assert_clean(out)
    # Every block equals the chain without the bad stage: the faulting block carries its input
    # (not the scribbled in-region, not its output), the later ones skip it.
    np.testing.assert_array_equal(out, reference.process(x))
    fault = bad.fault
    assert (fault.kind, fault.code, fault.block, fault.message) == ("non-finite", index, AFTER, "")
    assert bad.stats().calls == AFTER and bad.stats().fault == fault
    assert first.fault is None and second.fault is None
    close_all(reference, pipe)


def test_the_fault_is_for_good_and_the_stage_is_never_called_again(kernels, spec, noise, hostile):
    bad = bad_stage(hostile, spec, "nan", after=0)
    after = gain(kernels, spec, 2.0)
    pipe = Chain([bad, after], RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 2)
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(2.0))
    assert (bad.fault.kind, bad.fault.block) == ("non-finite", 0)
    with pytest.raises(EngineError, match="bypassed after non-finite"):
        bad.set_param("kind", 0)  # a faulted stage takes no more calls: the policy of a trap
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(2.0))
    assert bad.stats().calls == 0
    close_all(pipe)


@pytest.mark.parametrize("kind", ["subnormal", "-subnormal"])
@pytest.mark.parametrize("where", ["middle", "end"])
@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
def test_subnormal_outputs_are_flushed_to_a_signed_zero_without_a_fault(
    kernels, spec, noise, hostile, kind, where, native
):
    index = 5
    first, last = gain(kernels, spec, 0.5), gain(kernels, spec, 1.0, native=True)
    sub = bad_stage(hostile, spec, kind, native, index=index, after=0)
    pipe = Chain([first, sub, last] if where == "middle" else [first, last, sub], RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 3)
    out = pipe.process(x)
    assert_clean(out)
    expected = x * np.float32(0.5)
    for start in range(0, len(x), BLOCK):
        frame, ch = divmod(start * 2 + index, 2)
        expected[frame, ch] = -0.0 if kind.startswith("-") else 0.0
    np.testing.assert_array_equal(bits(out), bits(expected))  # bit for bit: the zero's sign too
    assert sub.fault is None and sub.stats().calls == 3
    close_all(pipe)


# --- the chain's input -----------------------------------------------------------------------


@pytest.mark.parametrize("stages", ["none", "hot-path", "component-first"])
def test_non_finite_input_is_replaced_by_zero_and_counted(kernels, spec, noise, stages):
    x = noise(BLOCK * 2)
    x[3, 0], x[10, 1], x[300, 0] = np.nan, np.inf, -np.inf
    x[20, 1] = np.float32(-1e-40)  # subnormal: flushed, not counted
    chain = []
    if stages == "hot-path":
        chain = [gain(kernels, spec, 2.0)]
    elif stages == "component-first":
        seen = []
        chain = [
            ComponentStage(
                name="py",
                role=Role.DSP_TRANSFORM,
                sample_rate=RATE,
                channels=2,
                process=lambda b: (seen.append(np.isfinite(b).all()), b * 2)[1],
                fallback_reason="test",
            ),
            gain(kernels, spec, 1.0),
        ]
    pipe = Chain(chain, RATE, 2, block_frames=BLOCK)
    out = pipe.process(x)
    assert_clean(out)
    clean = x.copy()
    clean[~np.isfinite(clean)] = 0
    clean[20, 1] = -0.0
    np.testing.assert_array_equal(bits(out), bits(clean * np.float32(1.0 if stages == "none" else 2.0)))
    assert pipe.nonfinite_input_samples == 3
    if stages == "component-first":
        assert all(seen)  # the component stage never saw the NaN
    assert all(s.fault is None for s in pipe.stages)
    close_all(pipe)


# --- component-path stages get the same guarantee ----------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "inf", "float64-overflow"])
def test_a_component_stage_with_a_non_finite_output_is_faulted(kernels, spec, noise, bad):
    value = {"nan": np.float32(np.nan), "inf": np.float32(np.inf), "float64-overflow": 1e300}[bad]

    def process(block):
        out = block.astype(np.float64 if bad == "float64-overflow" else np.float32) * 2
        if calls.append(1) or len(calls) > 2:
            block[:] = 1000.0  # writes into the block it was given: must not leak either
            out[1, 1] = value
        return out

    calls = []
    py = ComponentStage(
        name="py", role=Role.DSP_TRANSFORM, sample_rate=RATE, channels=2, process=process, fallback_reason="test"
    )
    after = gain(kernels, spec, 0.5)
    pipe = Chain([py, after], RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 4)
    out = pipe.process(x)
    assert_clean(out)
    expected = x * np.float32(0.5)
    expected[: 2 * BLOCK] = (x[: 2 * BLOCK] * np.float32(2)) * np.float32(0.5)
    np.testing.assert_array_equal(out, expected)
    assert (py.fault.kind, py.fault.code, py.fault.block) == ("non-finite", 3, 2)
    assert len(calls) == 3  # bypassed after the fault
    close_all(pipe)


def test_a_component_stage_output_with_subnormals_is_flushed(noise):
    def process(block):
        out = block.copy()
        out.view(np.uint32)[0, 0] = 0x80000001
        return out

    py = ComponentStage(
        name="py", role=Role.DSP_TRANSFORM, sample_rate=RATE, channels=2, process=process, fallback_reason="test"
    )
    pipe = Chain([py], RATE, 2, block_frames=BLOCK)
    out = pipe.process(noise(BLOCK))
    assert_clean(out)
    assert bits(out)[0, 0] == 0x80000000 and py.fault is None


# --- live: the device, a sink stage, design B ------------------------------------------------


@pytest.mark.audio
def test_live_playback_on_the_device_never_plays_a_non_finite_sample(
    jack_server, kernels, spec, noise, hostile, ring_frames
):
    x = noise(RATE)
    x[5000, 0] = np.nan  # the source's own NaN: replaced by 0 before the chain
    bad = bad_stage(hostile, spec, "+inf", after=40)
    pipe = Chain([gain(kernels, spec, 0.5), bad], RATE, 2)
    handle = pipe.play(x, frames=128, capture_seconds=1.5, ring_frames=ring_frames)
    time.sleep(0.1)
    loop_back()
    assert handle.wait(timeout=10)
    stats = handle.stats()
    recorded = handle.captured()
    assert np.isfinite(recorded).all()
    clean = x.copy()
    clean[5000, 0] = 0
    assert_recorded(recorded, clean * np.float32(0.5))  # bit for bit: the faulted block included
    assert stats.stages[1].fault.kind == "non-finite" and stats.stages[1].fault.block >= 40
    assert stats.nonfinite_input_samples == 1
    assert stats.finished and stats.ring_underruns == 0
    close_all(pipe)


@pytest.mark.parametrize("design", ["callback", "feeder"])
def test_an_output_sink_stage_never_receives_a_non_finite_sample(
    kernels, spec, noise, hostile, sink_totals, ring_frames, design
):
    x = noise(RATE // 10)
    x[100, 1] = -np.inf
    bad = bad_stage(hostile, spec, "nan", after=5, index=3)
    sink = HotPathStage.from_wasm(kernels["sink"], spec(Role.OUTPUT_SINK), RATE, 2)
    pipe = Chain([gain(kernels, spec, 0.5), bad, sink], RATE, 2)
    handle = pipe.play(
        x, device=ENGINE_CLOCK, frames=128, ring_frames=ring_frames, chain_in_callback=design == "callback"
    )
    assert handle.wait(timeout=10)
    frames, total = sink_totals(sink)  # a single NaN/Inf would make the sum non-finite
    clean = x.copy()
    clean[100, 1] = 0
    assert frames == len(x) and np.isfinite(total)
    assert total == pytest.approx(float(np.sum(clean * np.float32(0.5), dtype=np.float64)), rel=1e-9, abs=1e-9)
    assert bad.fault.kind == "non-finite" and handle.stats().nonfinite_input_samples == 1
    close_all(pipe)


def test_design_b_with_a_component_stage_records_only_finite_blocks(kernels, spec, noise, hostile):
    recorded = []

    def record(block):
        recorded.append(block.copy())
        return len(block)

    x = noise(RATE // 10)
    x[7, 0] = np.nan
    bad = bad_stage(hostile, spec, "-inf", after=2)
    recorder = ComponentStage(
        name="rec", role=Role.OUTPUT_SINK, sample_rate=RATE, channels=2, process=record, fallback_reason="test"
    )
    pipe = Chain([bad, gain(kernels, spec, 0.5), recorder], RATE, 2)
    handle = pipe.play(x, device=ENGINE_CLOCK, frames=128)
    assert handle.wait(timeout=10)
    got = np.concatenate(recorded)
    clean = x.copy()
    clean[7, 0] = 0
    assert_clean(got)
    np.testing.assert_array_equal(got, clean * np.float32(0.5))
    assert bad.fault.kind == "non-finite" and handle.stats().nonfinite_input_samples == 1
    close_all(pipe)


# --- the check itself, on random blocks ---------------------------------------------------------

SPECIAL = st.sampled_from(
    [
        0x7FC00000,
        0xFFC00001,
        0x7F800000,
        0xFF800000,
        0x7FFFFFFF,  # NaN/Inf
        0x00000001,
        0x807FFFFF,
        0x00400000,  # subnormals
        0x00000000,
        0x80000000,
        0x00800000,
        0x7F7FFFFF,
        0xFF7FFFFF,
    ]
)  # edges


@settings(max_examples=300, deadline=None)
@given(frames=st.integers(1, 300), data=st.data())
def test_scan_and_sanitize_agree_with_numpy(frames, data):
    raw = data.draw(hnp.arrays(np.uint32, (frames, 2), elements=st.integers(0, 2**32 - 1)))
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, frames - 1)), data.draw(st.integers(0, 1))] = data.draw(SPECIAL)
    block = raw.view(np.float32)
    exponent, mantissa = raw & 0x7F800000, raw & 0x007FFFFF
    non_finite = exponent == 0x7F800000
    subnormal = (exponent == 0) & (mantissa != 0)

    assert _core.scan_samples(block) == (bool(non_finite.any()), bool(subnormal.any()))
    flat = non_finite.ravel()
    assert _core.first_nonfinite(block) == (int(np.argmax(flat)) if flat.any() else flat.size)

    cleaned = block.copy()
    assert _core.sanitize_samples(cleaned) == int(non_finite.sum())
    expected = raw.copy()
    expected[non_finite] = 0
    expected[subnormal] &= 0x80000000
    np.testing.assert_array_equal(cleaned.view(np.uint32), expected)
    assert _core.scan_samples(cleaned) == (False, False)


# --- the check is fused into the block loop's copies: the paths that opens ---------------------


@pytest.mark.parametrize("kind", NON_FINITE)
@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
@pytest.mark.parametrize("index", [0, BLOCK * 2 - 1], ids=["first", "last"])
def test_a_lone_non_finite_stage_passes_its_input_on_although_it_lives_in_the_output_buffer(
    hostile, spec, noise, kind, native, index
):
    # One DSP stage: its input is the chain's buffer, which its output is copied back into, so
    # the output must be tested before that copy overwrites the input.
    bad = bad_stage(hostile, spec, kind, native, index=index, gain=0.5)
    pipe = Chain([bad], RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 6)
    out = pipe.process(x)
    assert_clean(out)
    expected = x * np.float32(0.5)
    expected[AFTER * BLOCK :] = x[AFTER * BLOCK :]  # the faulting block and the later ones: the input
    np.testing.assert_array_equal(out, expected)
    assert (bad.fault.kind, bad.fault.code, bad.fault.block) == ("non-finite", index, AFTER)
    assert bad.stats().calls == AFTER
    close_all(pipe)


def test_a_lone_faulting_stage_still_hands_on_a_flushed_and_cleaned_input(hostile, spec, noise):
    # The block never leaves the buffer after the fault: the input clean must still happen there.
    x = noise(BLOCK * 2)
    x[1, 0], x[2, 1] = np.nan, np.float32(-1e-40)
    bad = bad_stage(hostile, spec, "nan", after=0)
    pipe = Chain([bad], RATE, 2, block_frames=BLOCK)
    out = pipe.process(x)
    clean = x.copy()
    clean[1, 0], clean[2, 1] = 0, -0.0
    np.testing.assert_array_equal(bits(out), bits(clean))
    assert pipe.nonfinite_input_samples == 1 and bad.fault.kind == "non-finite"
    close_all(pipe)


@pytest.mark.parametrize("where", ["middle", "end"])
def test_two_consecutive_non_finite_stages_both_fault_and_the_block_before_them_passes_on(
    kernels, spec, noise, hostile, where
):
    reference = Chain([gain(kernels, spec, 0.5), gain(kernels, spec, 0.25, native=True)], RATE, 2, block_frames=BLOCK)
    first, last = gain(kernels, spec, 0.5), gain(kernels, spec, 0.25, native=True)
    bad1 = bad_stage(hostile, spec, "nan", index=11)
    bad2 = bad_stage(hostile, spec, "-inf", native=True, index=12, after=AFTER + 1)
    stages = [first, bad1, bad2, last] if where == "middle" else [first, last, bad1, bad2]
    pipe = Chain(stages, RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 6)
    out = pipe.process(x)
    assert_clean(out)
    np.testing.assert_array_equal(out, reference.process(x))
    # bad2 got bad1's input at block AFTER (bad1's own call counted nothing), and faults a block later
    assert (bad1.fault.kind, bad1.fault.code, bad1.fault.block) == ("non-finite", 11, AFTER)
    assert (bad2.fault.kind, bad2.fault.code, bad2.fault.block) == ("non-finite", 12, AFTER + 1)
    assert bad1.stats().calls == AFTER and bad2.stats().calls == AFTER + 1
    close_all(reference, pipe)


def test_both_faulting_in_the_same_block_hand_on_the_input_of_the_first(kernels, spec, noise, hostile):
    first = gain(kernels, spec, 0.5)
    bad1, bad2 = bad_stage(hostile, spec, "+inf", index=0), bad_stage(hostile, spec, "nan", index=1)
    pipe = Chain([first, bad1, bad2], RATE, 2, block_frames=BLOCK)
    x = noise(BLOCK * 5)
    out = pipe.process(x)
    assert_clean(out)
    np.testing.assert_array_equal(out, x * np.float32(0.5))
    assert (bad1.fault.code, bad1.fault.block) == (0, AFTER)
    # bad2 processed bad1's input (finite) at block AFTER, and then wrote its own NaN
    assert (bad2.fault.kind, bad2.fault.code, bad2.fault.block) == ("non-finite", 1, AFTER)
    close_all(pipe)


@pytest.mark.parametrize("native", [False, True], ids=["wasm", "native"])
def test_a_non_finite_stage_right_before_an_output_sink_hands_it_its_input(
    kernels, spec, noise, hostile, sink_totals, native
):
    # The copy into the sink's region is the check of the stage before it.
    x = noise(BLOCK * 5)
    bad = bad_stage(hostile, spec, "nan", native, index=9, gain=0.5)
    sink = HotPathStage.from_wasm(kernels["sink"], spec(Role.OUTPUT_SINK), RATE, 2)
    pipe = Chain([bad, sink], RATE, 2, block_frames=BLOCK)
    pipe.process(x)
    frames, total = sink_totals(sink)
    expected = x * np.float32(0.5)
    expected[AFTER * BLOCK :] = x[AFTER * BLOCK :]
    assert frames == len(x) and np.isfinite(total)
    assert total == pytest.approx(float(np.sum(expected, dtype=np.float64)), rel=1e-9, abs=1e-9)
    assert (bad.fault.kind, bad.fault.block) == ("non-finite", AFTER)
    close_all(pipe)


@settings(max_examples=200, deadline=None)
@given(frames=st.integers(1, 300), data=st.data())
def test_the_fused_copy_agrees_with_numpy(frames, data):
    raw = data.draw(hnp.arrays(np.uint32, (frames, 2), elements=st.integers(0, 2**32 - 1)))
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, frames - 1)), data.draw(st.integers(0, 1))] = data.draw(SPECIAL)
    exponent = raw & 0x7F800000
    non_finite = exponent == 0x7F800000
    expected = raw.copy()
    expected[exponent == 0] &= 0x80000000
    for daz in (False, True):  # the float path (DAZ, as in the chain) and the integer one
        dst, found = _core.copy_check(raw.view(np.float32), daz=daz)
        assert found == bool(non_finite.any())
        finite = ~non_finite
        np.testing.assert_array_equal(dst.view(np.uint32)[finite], expected[finite])
