"""Watchdog policy, reset, and the timing entry points.

The ``stall`` fixture spins until the epoch watchdog interrupts it on the next ``stall`` blocks
and halves the signal otherwise, so a skipped block is visible as unhalved audio.
"""

import numpy as np
import pytest

from stellatune.engine import ENGINE_CLOCK, Chain, HotPathStage
from stellatune.engine.stages import hot_path_engine
from stellatune.errors import EngineError

RATE = 48000
BLOCK = 256
#: Offline deadline of the stall tests. A stall spins until the watchdog interrupts it, so this
#: is how long each stalled block takes; a healthy call takes microseconds, so only one that the
#: machine deschedules for a quarter of a second could overrun it by accident.
STALL_DEADLINE_MS = 250


def halved(x, fresh_block=None):
    """What the stall kernel makes of x; the first block after init/reset gets +1 on sample 0."""
    y = x * np.float32(0.5)
    if fresh_block is not None:
        y[fresh_block * BLOCK, 0] += np.float32(1.0)
    return y


def stall_pipeline(kernels, spec, **options):
    stage = HotPathStage.from_wasm(kernels["stall"], spec(), RATE, 2, **options)
    return stage, Chain([stage], RATE, 2, block_frames=BLOCK, offline_deadline_ms=STALL_DEADLINE_MS)


def test_one_overrun_skips_that_block_and_the_stage_keeps_processing(kernels, spec, noise):
    stage, pipe = stall_pipeline(kernels, spec)
    x = noise(BLOCK * 4)
    np.testing.assert_array_equal(pipe.process(x), halved(x, fresh_block=0))
    stage.set_param("stall", 1)
    y = pipe.process(x)
    # Block 0 overran and passed through unchanged; blocks 1-3 were processed as usual.
    np.testing.assert_array_equal(y[:BLOCK], x[:BLOCK])
    np.testing.assert_array_equal(y[BLOCK:], halved(x)[BLOCK:])
    st = stage.stats()
    assert stage.fault is None and st.timeouts == 1 and st.calls == 7
    stage.set_param("stall", 0)  # still accepts parameters: it was never bypassed


@pytest.mark.parametrize("stalls, bypassed", [(2, False), (3, True)])
def test_only_three_overruns_in_a_row_bypass_the_stage(kernels, spec, noise, stalls, bypassed):
    stage, pipe = stall_pipeline(kernels, spec, config={"stall": stalls})
    x = noise(BLOCK * 6)
    y = pipe.process(x)
    np.testing.assert_array_equal(y[: stalls * BLOCK], x[: stalls * BLOCK])
    if bypassed:
        assert stage.fault.kind == "timeout" and stage.fault.block == 2
        np.testing.assert_array_equal(y, x)
    else:
        assert stage.fault is None
        np.testing.assert_array_equal(y[stalls * BLOCK :], halved(x, fresh_block=stalls)[stalls * BLOCK :])
    assert stage.stats().timeouts == stalls


def test_timeout_limit_is_per_stage(kernels, spec, noise):
    stage, pipe = stall_pipeline(kernels, spec, config={"stall": 1}, timeout_limit=1)
    pipe.process(noise(BLOCK * 2))
    assert stage.fault.kind == "timeout" and stage.fault.block == 0


def test_offline_runs_use_the_offline_deadline_and_restore_the_live_one(kernels, spec):
    stage, pipe = stall_pipeline(kernels, spec, deadline_ms=10)
    engine = hot_path_engine()
    live = stage._core.deadline_ticks
    assert live == engine.deadline_ticks(0.010)
    with pipe.running(offline=True):
        assert stage._core.deadline_ticks == engine.deadline_ticks(STALL_DEADLINE_MS / 1000)
    assert stage._core.deadline_ticks == live
    default = Chain([stage], RATE, 2)
    with default.running(offline=True):
        assert stage._core.deadline_ticks == engine.deadline_ticks(1.0)  # generous by default
    with default.running():
        assert stage._core.deadline_ticks == live


def test_reset_clears_history_offline(kernels, spec, noise):
    stage, pipe = stall_pipeline(kernels, spec)
    x = noise(BLOCK * 2)
    np.testing.assert_array_equal(pipe.process(x), halved(x, fresh_block=0))
    np.testing.assert_array_equal(pipe.process(x), halved(x))  # history: no longer fresh
    pipe.reset()
    np.testing.assert_array_equal(pipe.process(x), halved(x, fresh_block=0))
    assert stage.stats().resets == 1


def test_reset_while_playing_goes_through_the_command_queue(kernels, spec, noise):
    stage, pipe = stall_pipeline(kernels, spec)
    handle = pipe.play(noise(RATE), device=ENGINE_CLOCK, frames=128)
    try:
        pipe.reset()
        assert handle.wait(timeout=10)
    finally:
        handle.stop()
    assert stage.stats().resets == 1 and stage.fault is None


def test_pipeline_reset_skips_a_faulted_stage_and_resets_the_rest(kernels, spec, noise):
    broken = HotPathStage.from_wasm(kernels["stall"], spec(), RATE, 2, {"stall": 1}, timeout_limit=1)
    healthy = HotPathStage.from_wasm(kernels["stall"], spec(), RATE, 2)
    pipe = Chain([broken, healthy], RATE, 2, block_frames=BLOCK, offline_deadline_ms=STALL_DEADLINE_MS)
    pipe.process(noise(BLOCK))
    assert broken.fault is not None and broken.fault.kind == "timeout"
    pipe.reset()  # the bypassed stage has nothing to reset; it must not stop the others'
    assert healthy.stats().resets == 1


def test_a_stage_without_reset_export_ignores_reset(kernels, spec, noise):
    gain = HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2, {"gain": 0.5})
    Chain([gain], RATE, 2).reset()
    assert gain.stats().resets == 0


def test_time_blocks_times_one_stage_in_c(kernels, spec, noise):
    gain = HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2, {"gain": 0.5})
    alone = Chain([gain], RATE, 2, block_frames=BLOCK)
    ns = alone.time_blocks(noise(BLOCK), 200)
    st = gain.stats()
    assert ns > 0 and st.calls == 200 and st.fault is None
    assert st.min_us <= st.p50_us <= st.p99_us <= st.p999_us <= st.max_us
    with pytest.raises(EngineError, match="expected a block of shape"):
        alone.time_blocks(noise(BLOCK, 1), 10)
    with pytest.raises(EngineError, match="iterations must be > 0"):
        alone.time_blocks(noise(BLOCK), 0)


@pytest.mark.parametrize("native", [False, True])
def test_time_calls_splits_a_process_call_into_its_parts(kernels, spec, native):
    path = kernels["gain.so"] if native else kernels["gain"]
    load = HotPathStage.from_native if native else HotPathStage.from_wasm
    stage = load(path, spec(), RATE, 2, {"gain": 0.5})
    try:
        parts = stage.time_calls(128, 500)
        expected = {"call", "timer"} if native else {"call", "timer", "entry", "grow_check", "deadline"}
        assert set(parts) == expected
        assert all(ns > 0 for ns in parts.values())
        assert stage.fault is None
    finally:
        stage.close()


def test_time_calls_on_a_trapping_stage_raises_and_records_the_fault(kernels, spec):
    stage = HotPathStage.from_wasm(kernels["trap"], spec(), RATE, 2, {"after": 0})
    try:
        with pytest.raises(EngineError, match="faulted"):
            stage.time_calls(128, 10)
        assert stage.fault is not None and stage.fault.kind == "trap"
        with pytest.raises(EngineError, match="faulted"):
            stage.time_calls(128, 10)  # a faulted stage is not called again
    finally:
        stage.close()
