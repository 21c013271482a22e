"""Concurrent sessions: four offline ``stellatune.Pipeline`` renders and one live ``Player`` in
one process, each on its own thread, and every offline result bit-identical to the same render
run alone.

The four pipelines differ on purpose: two open runtimes of their own on the plugins directory,
two share the player's runtime and executor (so the same component instances' executor serves
several threads); three run hot-path chains, one a chain with a Python component (pygain:
the component path, Python calls under the GIL). Each renders its input in uneven chunks, so
plugin state (delay lines, envelopes) carries across calls, and does it ``passes`` times. The
player plays a hot-path chain on the JACK dummy device (tests/player's way) throughout; it
must keep playing. Nothing about time is asserted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

import stellatune

from .conftest import RATE, noise, spec

pytestmark = [pytest.mark.stress, pytest.mark.audio, pytest.mark.slow]

PYGAIN = "dev.stellatune.example.pygain:pygain"
#: name -> (chain, uses the shared runtime, input seed)
SESSIONS: dict[str, tuple[list[str], bool, int]] = {
    "gain+eq (own runtime)": ([spec("gain"), spec("eq")], False, 1),
    "compressor+delay (own runtime)": ([spec("compressor"), spec("delay")], False, 2),
    "eq+compressor+gain (shared runtime)": (
        [spec("eq", low_gain_db=-6.0), spec("compressor", ratio=8.0), spec("gain", gain_db=3.0)],
        True,
        3,
    ),
    "pygain+delay (shared runtime)": ([f'{PYGAIN}:{{"gain_db": -3}}', spec("delay", time_ms=40.0)], True, 4),
}
CHUNKS = (4800, 1, 777, 48000, 12345, 256)


def render(make: Callable[[], stellatune.Pipeline], x: np.ndarray, passes: int) -> list[np.ndarray]:
    """``passes`` renders of ``x``, each with a fresh pipeline, in uneven chunks."""
    outs = []
    for _ in range(passes):
        with make() as board:
            parts, at, i = [], 0, 0
            while at < len(x):
                n = CHUNKS[i % len(CHUNKS)]
                parts.append(board.process(x[at : at + n], RATE))
                at, i = at + n, i + 1
            outs.append(np.concatenate(parts))
    return outs


def test_four_offline_pipelines_and_a_live_player_on_threads(jack_server, env, install_examples, ring_frames, evidence):
    runtime, _ = env
    install_examples("gain", "eq", "compressor", "delay", "pygain")
    seconds, passes = evidence.scale(5, 30), evidence.scale(3, 5)
    inputs = {name: noise(int(seconds * RATE), seed=seed) for name, (_, _, seed) in SESSIONS.items()}

    def maker(name: str) -> Callable[[], stellatune.Pipeline]:
        chain, shared = SESSIONS[name][:2]
        if shared:
            return lambda: stellatune.Pipeline(chain, runtime=runtime)
        return lambda: stellatune.Pipeline(chain, plugins_dir=runtime.plugins_dir)

    # Alone first: one render each, nothing else running.
    alone = {name: render(maker(name), inputs[name], 1)[0] for name in SESSIONS}

    # Then all at once, with the player playing.
    events: list[dict] = []
    results: dict[str, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    with stellatune.Player(runtime=runtime, ring_frames=ring_frames) as player:
        player.subscribe(events.append, kinds=["stage-fault", "track-error", "xrun"])
        player.set_chain([spec("gain"), spec("eq"), spec("compressor"), spec("delay")])
        loop = noise(10 * RATE, seed=7)
        player.enqueue((loop, RATE), (loop, RATE))
        player.play()
        deadline = time.monotonic() + 30
        while player.counters().get("frames_played", 0) < RATE // 10:
            assert time.monotonic() < deadline, "the player never started playing"
            time.sleep(0.01)
        played_before = player.counters()["frames_played"]

        def run(name: str) -> None:
            try:
                results[name] = render(maker(name), inputs[name], passes)
            except BaseException as e:  # noqa: BLE001 (handed to the test thread)
                errors.append(e)

        threads = [threading.Thread(target=run, args=(name,), name=f"session {name}") for name in SESSIONS]
        began = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            if len(player.queue()) < 2:  # keep the player fed for as long as the renders take
                player.enqueue((loop, RATE))
            for t in threads:
                t.join(0.2)
            assert time.monotonic() - began < 600, "the concurrent renders did not finish"
        elapsed = time.monotonic() - began
        counters = player.counters()
        status = player.status()
    assert not errors, errors
    # Bit-identical, not close: the same stages on the same input in the same order.
    mismatches = [
        f"{name}, pass {i}"
        for name in SESSIONS
        for i, out in enumerate(results[name])
        if not np.array_equal(out.view(np.uint32), alone[name].view(np.uint32))
    ]
    faults = [e for e in events if e["kind"] in ("stage-fault", "track-error")]
    evidence.record(
        "stress_concurrent_sessions",
        sessions=list(SESSIONS),
        seconds_of_audio_each=seconds,
        passes=passes,
        mismatches=len(mismatches),
        mismatched=mismatches,
        concurrent_wall_s=round(elapsed, 2),
        player_state=status["state"],
        player_frames_played_during=counters["frames_played"] - played_before,
        player_xruns=counters["device_underflows"],
        player_ring_underruns=counters["ring_underruns"],
        player_faults=len(faults),
    )
    assert all(len(results[name]) == passes for name in SESSIONS)
    assert not mismatches, mismatches
    assert status["state"] == "playing", status
    assert counters["frames_played"] > played_before, "the player stopped while the renders ran"
    assert not faults, faults
