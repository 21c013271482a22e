"""A misbehaving stage is bypassed from the faulting block on; the rest of the chain keeps going."""

import numpy as np
import pytest

from stellatune.abi import Role
from stellatune.engine import Chain, HotPathStage
from stellatune.errors import EngineError


@pytest.mark.parametrize(
    "kernel, kind, code",
    [
        ("trap", "trap", 9),  # wasmtime TrapCode.UNREACHABLE
        ("loop", "timeout", 10),  # TrapCode.INTERRUPT, from the epoch watchdog
        ("grow", "memory-grow", 0),
        ("bad_frames", "bad-frames", 255),
        ("error", "error-code", 4),
    ],
)
def test_fault_bypasses_the_stage_and_keeps_the_chain(kernels, spec, noise, kernel, kind, code):
    hostile = HotPathStage.from_wasm(kernels[kernel], spec(), 48000, 2, {"after": 3})
    gain = HotPathStage.from_wasm(kernels["gain"], spec(), 48000, 2, {"gain": 0.5})
    # The looping case takes three overruns of this deadline; a healthy call takes microseconds,
    # so only a call descheduled for a quarter of a second could overrun it by accident.
    pipe = Chain([hostile, gain], 48000, 2, block_frames=256, offline_deadline_ms=250)
    x = noise(256 * 8)
    y = pipe.process(x)
    # The hostile stage passes audio through until it faults, and is skipped afterwards: either
    # way the gain after it is applied to every block.
    np.testing.assert_array_equal(y, x * np.float32(0.5))
    fault = hostile.fault
    # A timeout only skips its block; the third in a row (blocks 3, 4, 5) makes it permanent.
    first_bad = 3 + (2 if kind == "timeout" else 0)
    assert fault is not None and (fault.kind, fault.code) == (kind, code)
    # Bounds: a block skipped after an accidental overrun is not one the module counted.
    assert first_bad <= fault.block < 8
    if kind == "timeout":
        assert hostile.stats().timeouts >= 3
    if kind in ("trap", "timeout"):
        assert "wasm trap" in fault.message
    assert gain.fault is None
    assert hostile.stats().calls == 3  # blocks it processed; the faulting one is not one
    # Still bypassed on the next render, and its parameters can no longer be set.
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(0.5))
    with pytest.raises(EngineError, match=f"bypassed after {kind}"):
        hostile.set_param("after", 100)


def test_native_build_faults_on_bad_frames_too(kernels, spec, noise):
    stage = HotPathStage.from_native(kernels["bad_frames.so"], spec(), 48000, 2, {"after": 0})
    x = noise(512)
    np.testing.assert_array_equal(Chain([stage], 48000, 2).process(x), x)
    assert stage.fault.kind == "bad-frames" and stage.fault.block == 0


def test_a_full_sink_is_not_a_fault(kernels, spec, noise, sink_totals):
    """Would-block (5) from a sink means it took nothing this block (docs/hot-path-abi.md): the
    frames are kept and offered again (back-pressure), and the sink keeps running."""
    sink = HotPathStage.from_wasm(kernels["sink_full"], spec(Role.OUTPUT_SINK), 48000, 2)
    x = noise(256 * 6)
    Chain([sink], 48000, 2, block_frames=256).process(x)
    st = sink.stats()
    assert st.fault is None
    assert st.short_frames > 0 and st.dropped_frames == 0  # refused offers, then taken
    frames, total = sink_totals(sink)
    assert frames == len(x) and st.sink_frames == len(x)
    assert total == pytest.approx(float(np.sum(x, dtype=np.float64)), rel=1e-9, abs=1e-9)
