"""Whose xrun: the playback counters that tell a block the chain made late (``late_renders``) from
a callback the device began late (``late_wakeups``), on the JACK dummy device."""

import os
import signal
import subprocess
import time

import pytest

from stellatune.engine import Chain, HotPathStage

from ..conftest import wait_for

RATE = 48000
FRAMES = 128  # the session server's period: 2.67 ms


def _jackd_pid(name: str) -> int:
    found = subprocess.run(["pgrep", "-f", f"jackd -n {name} "], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    assert len(pids) == 1, f"expected one jackd for {name}, found {pids}"
    return pids[0]


@pytest.mark.audio
def test_a_block_the_chain_overran_is_a_late_render(jack_server, kernels, spec, noise):
    # The stall kernel spins until its 6 ms deadline interrupts it: one block over 2 periods.
    stage = HotPathStage.from_wasm(kernels["stall"], spec(), RATE, 2, {"stall": 0}, deadline_ms=6.0)
    handle = Chain([stage], RATE, 2).play(noise(2 * RATE), frames=FRAMES)
    try:
        wait_for(lambda: handle.stats().callbacks > 50, "playback to start", limit_s=10)
        before = handle.stats().late_renders
        stage.set_param("stall", 1)
        wait_for(lambda: handle.stats().late_renders > before, "the stalled block", limit_s=10)
        stats = handle.stats()
        assert stats.stages[0].timeouts >= 1 and stats.stages[0].fault is None  # skipped, not bypassed
        assert stats.render_max_us > stats.period_us
    finally:
        handle.stop()
        stage.close()


@pytest.mark.audio
def test_a_device_that_stops_calling_is_a_late_wakeup(jack_server, kernels, spec, noise):
    stage = HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2, {"gain": 0.5})
    handle = Chain([stage], RATE, 2).play(noise(3 * RATE), frames=FRAMES)
    pid = _jackd_pid(jack_server)
    try:
        wait_for(lambda: handle.stats().callbacks > 50, "playback to start", limit_s=10)
        before = handle.stats()
        os.kill(pid, signal.SIGSTOP)  # the device's clock stops: no callback for 50 ms
        try:
            time.sleep(0.05)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: handle.stats().callbacks > before.callbacks + 50, "callbacks again", limit_s=10)
        after = handle.stats()
        assert after.late_wakeups >= before.late_wakeups + 1
    finally:
        handle.stop()
        stage.close()
