"""Soak: real-time playback of an 8-plugin chain at 64 frames on the JACK dummy device, with the
other core loaded, while a thread edits the chain and the config every second.

The chain is the benchmark's (bench/stbench/realtime.py ``CHAIN8``: gain, eq, compressor, delay,
twice, with the benchmark's settings), all on the hot path, so it runs in the device callback.
The JACK server is a private one at 64 frames per period and the busy core a spinning process,
both the benchmark's own helpers (``jack_dummy``, ``busy_core``). The editor, each second, in
turn: updates a stage's config (hot-applied), bypasses or un-bypasses a stage, moves a stage,
replaces a stage by a fresh one (remove + insert), and sets the whole chain again. It keeps the
queue fed (a 10 s loop of noise).

Duration: 20 s, 600 s (the issue's 10 minutes) under ``--full``. Recorded: callbacks, xruns
(device underflows), ring underruns, the callback-time distribution (the driver's per-block
histogram: p50/p99/p99.9/max, and as a share of the 1.33 ms period) and each stage's process
time. Asserted: the player kept playing (its frame counter went on, the state is ``playing``),
every edit went through, and no stage faulted for anything but scheduling (a ``timeout`` on a
loaded machine). Xruns and ring underruns are asserted to be 0 only under
``--strict-realtime`` (a claim about the machine; a shared VM reports a few from its own
scheduling alone).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import stellatune
from stellatune.engine.stats import quantile_us

from .conftest import HOT_DSPS, RATE, noise, spec

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from stbench.realtime import CHAIN8, busy_core, jack_dummy  # noqa: E402 (bench/ on the path first)

pytestmark = [pytest.mark.stress, pytest.mark.audio, pytest.mark.slow]

FRAMES = 64
EDITS = ("config", "bypass", "move", "replace", "set-chain")


# The long form plays for 600 s, past the suite's 600 s per-test timeout (pyproject.toml).
@pytest.mark.timeout(1200)
def test_soak_8_plugin_chain_at_64_frames_while_edited(env, install_examples, ring_frames, request, evidence):
    runtime, _ = env
    install_examples("gain", "eq", "compressor", "delay")
    strict = request.config.getoption("--strict-realtime")
    seconds = evidence.scale(20, 600)
    chain = [spec(name) for name in CHAIN8]
    loop = noise(10 * RATE, seed=5)
    rng = np.random.default_rng(17)
    events: list[dict] = []
    edits = {e: 0 for e in EDITS}
    edit_errors: list[BaseException] = []
    progress: list[int] = []  # frames played, once a second
    stop = threading.Event()

    with (
        jack_dummy(FRAMES),
        busy_core(),
        stellatune.Player(runtime=runtime, frames=FRAMES, ring_frames=ring_frames) as p,
    ):
        p.subscribe(events.append, kinds=["stage-fault", "track-error", "xrun", "stage-removed"])
        p.set_chain(chain)
        p.enqueue((loop, RATE), (loop, RATE))
        p.play()
        deadline = time.monotonic() + 30
        while p.counters().get("frames_played", 0) < RATE // 10:
            assert time.monotonic() < deadline, "the player never started"
            time.sleep(0.01)
        start = p.counters()

        def editor() -> None:
            k = 0
            while not stop.wait(1.0):
                try:
                    if len(p.queue()) < 2:
                        p.enqueue((loop, RATE))
                    kind = EDITS[k % len(EDITS)]
                    n = len(p.chain())
                    i = int(rng.integers(0, n))
                    if kind == "config":
                        entry = p.chain()[i]["spec"]
                        name = next(x for x, (pid, _, _) in HOT_DSPS.items() if entry.startswith(pid + ":"))
                        key, value = next(iter(HOT_DSPS[name][2].items()))
                        assert p.update_config(i, {key: value * float(rng.uniform(0.6, 1.0))}) == "hot-apply"
                    elif kind == "bypass":
                        p.bypass(i, not p.chain()[i]["bypassed"])
                    elif kind == "move":
                        p.move_stage(i, int(rng.integers(0, n)))
                    elif kind == "replace":
                        entry = p.chain()[i]["spec"]
                        p.remove_stage(i)
                        p.insert_stage(i, entry)
                    else:
                        p.set_chain(chain)
                    edits[kind] += 1
                    progress.append(p.counters()["frames_played"])
                    k += 1
                except BaseException as e:  # noqa: BLE001 (handed to the test thread)
                    edit_errors.append(e)
                    return

        thread = threading.Thread(target=editor, name="soak-editor", daemon=True)
        thread.start()
        try:
            time.sleep(seconds)
        finally:
            stop.set()
            thread.join(30)
        end = p.counters()
        status = p.status()
        timings = p.stage_timings()
    assert not thread.is_alive(), "the editor hung"

    callbacks = end["callbacks"] - start["callbacks"]
    played = end["frames_played"] - start["frames_played"]
    hist = end["render_hist"]
    period_us = FRAMES / RATE * 1e6

    def q(p_: float) -> float:
        return quantile_us(hist, end["callbacks"], p_, 0, end["render_max_ns"])

    faults = [e for e in events if e["kind"] == "stage-fault" and e["fault"] != "timeout"]
    timeouts = [e for e in events if e["kind"] == "stage-fault" and e["fault"] == "timeout"]
    stalled = sum(1 for a, b in itertools.pairwise(progress) if b <= a)
    figures = {
        "seconds": seconds,
        "frames": FRAMES,
        "chain": list(CHAIN8),
        "other_core_loaded": True,
        "strict_realtime": strict,
        "ring_frames": ring_frames,
        "callbacks": callbacks,
        "frames_per_callback": played / callbacks if callbacks else None,
        "frames_played": played,
        "xruns": end["device_underflows"] - start["device_underflows"],
        "ring_underruns": end["ring_underruns"] - start["ring_underruns"],
        "edits": edits,
        "edit_errors": [repr(e) for e in edit_errors],
        "seconds_without_progress": stalled,
        "callback_us": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": end["render_max_ns"] / 1000},
        "xruns_per_minute": 60.0 * (end["device_underflows"] - start["device_underflows"]) / seconds,
        "callback_load": {
            "p99": q(0.99) / period_us,
            "p999": q(0.999) / period_us,
            "max": end["render_max_ns"] / 1000 / period_us,
            "period_us": period_us,
        },
        "stages": [
            {
                "spec": t["spec"].split(":", 1)[0],
                "calls": t["timing"]["calls"],
                "p50_us": quantile_us(
                    t["timing"]["hist"], t["timing"]["calls"], 0.5, t["timing"]["min_ns"], t["timing"]["max_ns"]
                ),
                "p99_us": quantile_us(
                    t["timing"]["hist"], t["timing"]["calls"], 0.99, t["timing"]["min_ns"], t["timing"]["max_ns"]
                ),
                "max_us": t["timing"]["max_ns"] / 1000,
            }
            for t in timings
        ],
        "faults": len(faults),
        "fault_events": faults,
        "scheduling_timeouts": len(timeouts),
    }
    evidence.record("stress_soak", **figures)

    assert not edit_errors, edit_errors
    assert sum(edits.values()) >= max(1, seconds // 2), edits  # the editor ran all along
    assert status["state"] == "playing", status
    assert played > 0 and progress and progress[-1] > progress[0], "the player stopped playing"
    assert figures["frames_per_callback"] == FRAMES, (
        f"the device ran {figures['frames_per_callback']} frames per callback"
    )
    assert not faults, faults
    assert not [e for e in events if e["kind"] in ("track-error", "stage-removed")], events
    if strict:
        assert figures["xruns"] == 0 and figures["ring_underruns"] == 0, figures
