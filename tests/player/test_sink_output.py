"""Output sinks as the Player's output: back-pressure (nothing dropped, in order), the hot path
and the component path, NEED_RESET and DRAINED acted on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

import stellatune
from stellatune import package
from stellatune.compose import build_dsp_stage, build_sink_stage
from stellatune.engine import ENGINE_CLOCK, Chain
from stellatune.sdk.build import build_plugin

from .conftest import RATE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
SINK = "dev.stellatune.example.passthrough-sink"
HALF = f'sink:{SINK}:passthrough:{{"max_accept": 64}}'  # blocks are 128 frames: half of each


def install_fixture(runtime, name: str) -> str:
    pid = package.install_from_artifact(runtime.plugins_dir, build_plugin(FIXTURES / name)).id
    report = runtime.sync_plugins()
    assert not report.errors, report.errors
    return pid


def fnv(x: np.ndarray) -> int:
    h = 0xCBF29CE484222325
    for w in np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).ravel().tolist():
        h = ((h ^ w) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_a_half_taking_sink_gets_every_frame_once_in_order(runtime, install, executor, noise):
    """The driver offers what the sink did not take again, before any newer frame."""
    install("passthrough-sink")
    sink = build_sink_stage(runtime, executor, SINK, "passthrough", "default", {"max_accept": 64}, RATE, 2)
    try:
        x = noise(RATE // 4)
        handle = Chain([sink], RATE, 2, block_frames=128).play(x, device=ENGINE_CLOCK, frames=128)
        assert handle.wait(timeout=60)
        handle.stop()
        st = sink.stats()
        assert st.sink_frames == len(x) and st.dropped_frames == 0 and st.short_frames > 0
        store, instance = sink._core.keepalive[2], sink._core.keepalive[3]
        exports = instance.exports(store)
        assert exports["st_sink_frames_consumed"](store, 1) == len(x)
        assert exports["st_sink_checksum"](store, 1) & 0xFFFFFFFFFFFFFFFF == fnv(x)
    finally:
        sink.close()


def test_player_on_a_hot_path_sink_with_back_pressure(runtime, install, noise):
    install("passthrough-sink", "gain")
    x = noise(30000)
    with stellatune.Player(runtime=runtime, output=HALF, offline=True) as p:
        p.set_chain(['dev.stellatune.example.gain:gain:{"gain_db": -6}'])
        p.enqueue((x, RATE))
        p.play()
        assert p.wait(timeout=60)
        sink = p.status()["sink"]
        json.dumps(p.status())
    assert sink["route"] == "hot-path" and sink["fault"] is None
    assert sink["frames_taken"] == len(x) and sink["frames_dropped"] == 0
    assert sink["frames_offered_again"] > 0 and sink["pending_frames"] == 0 and sink["drained"]


def test_player_on_a_component_sink_writes_the_input(runtime, install, noise, tmp_path):
    """wav-sink has no hot path: the feeder writes each block, offering the rest again when a
    write takes only part (max_chunk_frames 100 < the 128-frame blocks)."""
    install("wav-sink")
    out = tmp_path / "sink.wav"
    x = noise(20000)
    cfg = json.dumps({"target": {"id": "file", "path": str(out)}, "max_chunk_frames": 100})
    with stellatune.Player(runtime=runtime, output=f"sink:dev.stellatune.example.wav-sink:wav-file:{cfg}") as p:
        p.enqueue((x, RATE))
        p.play()
        assert p.wait(timeout=60)
        sink = p.status()["sink"]
        assert sink["route"] == "component" and sink["fault"] is None
        assert sink["frames_taken"] == len(x) and sink["frames_dropped"] == 0
        assert sink["frames_offered_again"] > 0
    got, rate = soundfile.read(str(out), dtype="float32", always_2d=True)
    assert rate == RATE
    np.testing.assert_array_equal(got, x)


def test_need_reset_resets_before_the_next_block(runtime, executor):
    pid = install_fixture(runtime, "reset-dsp")
    stage = build_dsp_stage(runtime, executor, pid, "reset", {"every": 4}, RATE, 2)
    try:
        out = Chain([stage], RATE, 2, block_frames=64).process(np.zeros((64 * 12, 2), np.float32))
        assert out[::64, 0].tolist() == [0, 1, 2, 3] * 3
        assert stage.stats().resets == 2  # before blocks 4 and 8 (block 12 never came)
    finally:
        stage.close()


@pytest.mark.parametrize("polls", [200, 1_000_000])
def test_the_queue_plays_out_once_the_sink_drained(runtime, noise, polls):
    """At the end the driver polls the sink (zero-frame calls) until it reports DRAINED; the
    wait is bounded by drain_timeout_s."""
    pid = install_fixture(runtime, "drain-sink")
    bound = 0.3
    with stellatune.Player(
        runtime=runtime, output=f'sink:{pid}:drain:{{"polls": {polls}}}', offline=True, drain_timeout_s=bound
    ) as p:
        p.enqueue((noise(4800), RATE))
        t0 = time.monotonic()
        p.play()
        assert p.wait(timeout=60)
        took = time.monotonic() - t0
        sink = p.status()["sink"]
    if polls == 200:
        assert sink["drained"] and sink["drain_timeouts"] == 0
    else:
        assert not sink["drained"] and sink["drain_timeouts"] == 1 and took >= bound
