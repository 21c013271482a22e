"""stellatune.Player: gapless queue, resampling, seek, transport, volume, live edits, events."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

import stellatune
from stellatune import package
from stellatune.runtime import DesiredState

from .conftest import GAIN, RATE, db

GAIN_SPEC = f'{GAIN}:gain:{{"gain_db": -6}}'


def until(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_player_is_exported_lazily():
    from stellatune.compose import Player

    assert stellatune.Player is Player


def test_gapless_arrays_through_a_hot_path_stage(runtime, install, noise, tmp_path):
    install("gain")
    items = [noise(n) for n in (30000, 12345, 50001)]
    out_path = tmp_path / "out.wav"
    events = []
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True, ring_frames=1 << 16) as p:
        p.subscribe(events.append)
        p.set_chain([GAIN_SPEC])
        p.enqueue(*[(x, RATE) for x in items])
        p.play()
        assert p.chain()[0]["route"] == "hot-path"
        assert p.wait(timeout=60)
        json.dumps(p.status())
    out, rate = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    with stellatune.Pipeline([GAIN_SPEC], runtime=runtime) as board:
        ref = board.process(np.concatenate(items), RATE)
    assert rate == RATE and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)  # no frame inserted or dropped at the joins
    kinds = [e["kind"] for e in events if e["kind"] in ("track-started", "track-ended", "queue-empty")]
    assert kinds == ["track-started", "track-ended"] * 3 + ["queue-empty"]


def test_gapless_files(runtime, noise, tmp_path):
    items = [noise(n) for n in (40000, 23456)]
    paths = []
    for i, x in enumerate(items):
        paths.append(tmp_path / f"{i}.wav")
        soundfile.write(str(paths[-1]), x, RATE, subtype="FLOAT")
    out_path = tmp_path / "out.wav"
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True, decoder="builtin") as p:
        p.enqueue(*[str(x) for x in paths])
        p.play()
        assert p.wait(timeout=60)
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(out, np.concatenate(items))


def test_an_item_at_another_rate_is_resampled(runtime, noise, tmp_path):
    out_path = tmp_path / "out.wav"
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True) as p:
        p.enqueue((noise(48000), 48000), (noise(44100), 44100), (noise(48000), 48000))
        p.play()
        assert p.wait(timeout=60)
        assert p.sample_rate == 48000
    out, rate = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    assert rate == 48000 and abs(len(out) - 3 * 48000) <= 2


def _seek_signal(n):
    t = np.arange(n)
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t / RATE), 0.5 * t / n], axis=1).astype(np.float32)


def test_seek_lands_on_target_and_fades(runtime, tmp_path):
    src = _seek_signal(4 * RATE)
    out_path = tmp_path / "out.wav"
    target = 3.0
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", ring_frames=1 << 14) as p:
        events = []
        p.subscribe(events.append, kinds=["seeked"])
        p.enqueue((src, RATE))
        p.play()
        until(lambda: (p.position() or 0) >= 0.3, what="0.3 s played")
        assert p.seek(target)
        assert abs(p.position() - target) < 0.25
        assert p.wait(timeout=30)
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    T = int(target * RATE)
    probe = T + 1000  # past the 5 ms fade-in
    hits = np.flatnonzero(out[:, 1] == src[probe, 1])
    assert len(hits) == 1, "the post-seek audio is in the output once"
    k = hits[0]
    n = len(src) - probe
    np.testing.assert_array_equal(out[k : k + n], src[probe:])  # landed exactly on the target frame
    region = out[: k + n]
    assert np.max(np.abs(np.diff(region, axis=0))) < 0.05  # faded out and in: no click
    assert events and events[0]["position"] == target


def test_pause_holds_the_frame_counter(runtime, noise):
    with stellatune.Player(runtime=runtime, output="null", sample_rate=RATE, ring_frames=1 << 16) as p:
        p.enqueue((noise(5 * RATE), RATE))
        p.play()
        until(lambda: p.counters()["frames_played"] > 4800, what="some frames played")
        p.pause()
        time.sleep(0.3)  # the fade (5 ms) has long ended
        f1 = p.counters()["frames_played"]
        time.sleep(0.3)
        f2 = p.counters()["frames_played"]
        assert f2 == f1 and p.status()["state"] == "paused"
        p.resume()
        until(lambda: p.counters()["frames_played"] > f2 + 4800, what="playback resumed")
        assert p.counters()["ring_underruns"] == 0


def test_skip_goes_to_the_next_item(runtime, noise):
    with stellatune.Player(runtime=runtime, output="null", ring_frames=1 << 16) as p:
        events = []
        p.subscribe(events.append, kinds=["track-started", "track-ended"])
        p.enqueue((noise(10 * RATE), RATE), (noise(RATE // 2), RATE))
        p.play()
        until(lambda: (p.position() or 0) > 0.2, what="first item playing")
        p.skip()
        assert p.wait(timeout=20)
        played = p.counters()["frames_played"]
        assert played < 5 * RATE  # the 10 s item did not play out
        until(lambda: len(events) >= 4, what="events", timeout=5)
    assert [(e["kind"], e["item_no"]) for e in events] == [
        ("track-started", 1),
        ("track-ended", 1),
        ("track-started", 2),
        ("track-ended", 2),
    ]


def test_volume_ramps_without_steps(runtime, tmp_path):
    dc = np.full((2 * RATE, 2), 0.5, np.float32)
    out_path = tmp_path / "out.wav"
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", ring_frames=1 << 16) as p:
        p.enqueue((dc, RATE))
        p.play()
        until(lambda: (p.position() or 0) > 0.3, what="playing")
        p.volume_db = -20.0
        assert p.wait(timeout=20)
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    nz = np.flatnonzero(out[:, 0])
    body = out[nz[0] : nz[-1] + 1, 0]
    assert np.max(np.abs(np.diff(body))) < 0.01  # smoothed: no zipper step
    assert abs(body[-1] - 0.5 * db(-20)) < 1e-3 and body[0] == 0.5


def test_live_edits_during_playback(runtime, install, noise, ring_frames):
    install("gain", "eq")
    with stellatune.Player(runtime=runtime, output="null", ring_frames=ring_frames) as p:
        p.set_chain([GAIN_SPEC])
        p.enqueue((noise(8 * RATE), RATE))
        p.play()
        modes = set()
        for i in range(50):
            k = i % 5
            if k == 0:
                p.insert_stage(0, f"{GAIN}:gain")
            elif k == 1:
                p.move_stage(0, len(p.chain()) - 1)
            elif k == 2:
                p.bypass(0, i % 2 == 0)
            elif k == 3:
                modes.add(p.update_config(0, {"gain_db": -float(i % 12)}))
            else:
                p.remove_stage(len(p.chain()) - 1)
        assert p.update_config(0, {"gain_db": 1000}) == "reject"
        status = p.status()
        assert status["state"] == "playing" and status["current"] == "array"
        assert status["counters"]["chain_swaps"] >= 30
        assert modes == {"hot-apply"}
        assert p.counters()["ring_underruns"] == 0
        json.dumps(status)


def test_disabling_a_plugin_mid_play_removes_its_stage(runtime, install, noise):
    install("gain")
    with stellatune.Player(runtime=runtime, output="null", ring_frames=1 << 16) as p:
        removed = []
        p.subscribe(removed.append, kinds=["stage-removed"])
        p.set_chain([GAIN_SPEC])
        p.enqueue((noise(4 * RATE), RATE))
        p.play()
        until(lambda: (p.position() or 0) > 0.2, what="playing")
        runtime.set_desired_state(GAIN, DesiredState.DISABLED)
        until(lambda: not p.chain(), what="the stage removed", timeout=10)
        f = p.counters()["frames_played"]
        until(lambda: p.counters()["frames_played"] > f + 4800, what="music goes on")
        assert p.status()["state"] == "playing"
        until(lambda: removed, what="event", timeout=5)


def test_a_failing_callback_does_not_break_the_player(runtime, noise):
    seen = []
    with stellatune.Player(runtime=runtime, output="null", offline=True) as p:
        p.subscribe(lambda e: 1 / 0)
        unsubscribe = p.subscribe(seen.append)
        p.enqueue((noise(4800), RATE))
        p.play()
        assert p.wait(timeout=20)
        until(lambda: any(e["kind"] == "queue-empty" for e in seen), what="queue-empty", timeout=5)
        unsubscribe()
    p.close()  # idempotent
    with pytest.raises(stellatune.RuntimeStateError):
        p.enqueue((noise(10), RATE))


@pytest.mark.audio
def test_plays_on_the_jack_dummy_device(jack_server, runtime, install, noise):
    install("gain")
    with stellatune.Player(runtime=runtime, ring_frames=1 << 16) as p:
        p.set_chain([GAIN_SPEC])
        p.enqueue((noise(RATE // 2), RATE), (noise(RATE // 2), RATE))
        p.play()
        assert p.wait(timeout=30)
        c = p.counters()
        assert c["frames_played"] == RATE and c["ring_underruns"] == 0


@pytest.mark.slow
def test_a_component_stage_moves_the_chain_to_the_feeder_and_back(runtime, install, noise):
    install("gain", "pygain")
    with stellatune.Player(runtime=runtime, output="null", ring_frames=1 << 16) as p:
        p.set_chain([GAIN_SPEC])
        p.enqueue((noise(6 * RATE), RATE))
        p.play()
        until(lambda: (p.position() or 0) > 0.2, what="playing")
        p.insert_stage(1, "dev.stellatune.example.pygain:pygain")
        assert p.status()["chain_thread"] == "feeder"
        assert [s["route"] for s in p.chain()] == ["hot-path", "component"]
        before = p.position()
        p.remove_stage(1)
        assert p.status()["chain_thread"] == "driver"
        assert p.position() >= before - 0.2  # decoding went on from where it played
        f = p.counters()["frames_played"]
        until(lambda: p.counters()["frames_played"] > f + 4800, what="music goes on")


@pytest.mark.slow  # builds a Python component (cached after the first run)
def test_a_faulting_stage_is_reported_and_the_music_goes_on(runtime, noise, tmp_path):
    from stellatune.sdk.build import build_plugin

    liar = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "liar-dsp"
    package.install_from_artifact(runtime.plugins_dir, build_plugin(liar))
    assert not runtime.sync_plugins().errors
    faults = []
    x = noise(RATE // 2)
    out_path = tmp_path / "out.wav"
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True, ring_frames=1 << 16) as p:
        p.subscribe(faults.append, kinds=["stage-fault"])
        # A DSP that answers 3 samples for every block: a contract error, so the stage faults.
        p.set_chain(['dev.stellatune.test.liar-dsp:liar:{"samples": 3}'])
        p.enqueue((x, RATE))
        p.play()
        assert p.wait(timeout=60)
        until(lambda: faults, what="the stage-fault event", timeout=10)
        assert p.status()["chain"][0]["fault"] is not None
    assert faults[0]["fault"] == "plugin-error" and faults[0]["index"] == 0
    assert "liar" in faults[0]["spec"]
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(out, x)  # the faulted stage passed every block on untouched


def test_seek_and_skip_act_on_the_item_heard_not_the_one_decoded_ahead(runtime, noise, tmp_path):
    # The ring (2.7 s) holds more than the first item (1.5 s): by the time the first item is
    # heard, the feeder is already decoding the second. Seek and skip must still mean the first.
    first, second, third = _seek_signal(int(1.5 * RATE)), noise(RATE // 2), noise(RATE // 2)
    out_path = tmp_path / "out.wav"
    events = []
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", ring_frames=1 << 17) as p:
        p.subscribe(events.append, kinds=["track-started", "track-ended"])
        p.enqueue((first, RATE), (second, RATE), (third, RATE))
        p.play()
        until(lambda: (p.position() or 0) >= 0.2, what="the first item heard")
        assert p.current() is not None and p.status()["current"] == p.current()
        target = 1.0
        assert p.seek(target)
        assert abs(p.position() - target) < 0.25  # in the first item, not the second
        until(lambda: (p.position() or 0) >= target + 0.1, what="played on after the seek")
        p.skip()  # skips the rest of the first item; the second plays whole
        assert p.wait(timeout=30)
        until(lambda: len(events) >= 6, what="events", timeout=5)
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    probe = int(target * RATE) + 1000  # past the 5 ms fade-in
    assert len(np.flatnonzero(out[:, 1] == first[probe, 1])) == 1, "the seek landed in the first item"
    k = int(np.flatnonzero(out[:, 1] == second[1000, 1])[0]) - 1000
    np.testing.assert_array_equal(out[k + 1000 : k + len(second)], second[1000:])  # whole, after the fade-in
    k3 = k + len(second)  # and the third right after it, gapless (the file may end in silence)
    np.testing.assert_array_equal(out[k3 : k3 + len(third)], third)
    assert not np.any(out[k3 + len(third) :]), "nothing but silence after the queue played out"
    assert [(e["kind"], e["item_no"]) for e in events] == [
        ("track-started", 1),
        ("track-ended", 1),
        ("track-started", 2),
        ("track-ended", 2),
        ("track-started", 3),
        ("track-ended", 3),
    ]


def test_reloading_a_plugin_mid_play_swaps_its_stage(runtime, install, noise):
    install("gain")
    with stellatune.Player(runtime=runtime, output="null", ring_frames=1 << 16) as p:
        events = []
        p.subscribe(events.append, kinds=["stage-reloaded", "stage-removed"])
        p.set_chain([GAIN_SPEC])
        p.enqueue((noise(6 * RATE), RATE))
        p.play()
        until(lambda: (p.position() or 0) > 0.2, what="playing")
        before = p._live.entries[0].stage
        # A host grant is part of the plugin's signature: the next sync reloads it.
        runtime.grant(GAIN, {"env": ["LANG"]})
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        until(lambda: events, what="the stage swapped", timeout=10)
        assert [e["kind"] for e in events] == ["stage-reloaded"] and events[0]["route"] == "hot-path"
        after = p._live.entries[0].stage
        assert after is not before and before.closed and not after.closed
        assert p.chain()[0]["route"] == "hot-path"
        f = p.counters()["frames_played"]
        until(lambda: p.counters()["frames_played"] > f + 4800, what="music goes on")
        assert p.status()["state"] == "playing"


def test_a_failed_play_leaves_a_stopped_player_that_plays_once_fixed(runtime, install, noise, tmp_path):
    install("gain")
    out_path = tmp_path / "out.wav"
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True, ring_frames=1 << 16) as p:
        p.set_chain([GAIN_SPEC])
        p.enqueue((noise(20000), RATE))
        # The plugin goes away between the edit and play(): the stage cannot be built.
        runtime.set_desired_state(GAIN, DesiredState.DISABLED)
        runtime.sync_plugins()
        with pytest.raises(stellatune.RuntimeStateError):
            p.play()
        assert p.status()["state"] == "stopped" and p.queue() == ["array"]  # nothing lost
        runtime.set_desired_state(GAIN, DesiredState.ENABLED)
        runtime.sync_plugins()
        p.play()
        assert p.wait(timeout=60)
        assert p.counters()["frames_played"] == 20000


def test_unplayable_items_at_the_head_leave_the_queue_with_track_error(runtime, noise, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all\n")
    events = []
    with stellatune.Player(runtime=runtime, output="null", offline=True, ring_frames=1 << 16) as p:
        p.subscribe(events.append, kinds=["track-error"])
        p.enqueue(str(not_audio), str(tmp_path / "gone.wav"), (noise(12000), RATE))
        p.play()
        assert p.wait(timeout=60)
        assert p.counters()["frames_played"] == 12000
        p._events.flush()
        assert [e["item"] for e in events] == [str(not_audio), str(tmp_path / "gone.wav")]
        # Only unplayable items: the error is raised, the queue is empty, the player usable.
        p.stop()
    with stellatune.Player(runtime=runtime, output="null", offline=True, ring_frames=1 << 16) as p:
        p.enqueue(str(not_audio))
        with pytest.raises(stellatune.StellatuneError):
            p.play()
        assert p.queue() == [] and p.status()["state"] == "stopped"
        p.enqueue((noise(4800), RATE))
        p.play()
        assert p.wait(timeout=60) and p.counters()["frames_played"] == 4800


def test_stopped_chain_edits_are_checked_as_a_playing_chain_would_be(runtime, install):
    install("gain")
    events = []
    with stellatune.Player(runtime=runtime, output="null", sample_rate=RATE) as p:
        p.subscribe(events.append, kinds=["config-rejected"])
        with pytest.raises(stellatune.RuntimeStateError, match="not active"):
            p.insert_stage(0, "no.such.plugin:gain")
        with pytest.raises(stellatune.RuntimeStateError, match="no dsp ability"):
            p.set_chain([f"{GAIN}:nope"])
        with pytest.raises(stellatune.PluginError):
            p.set_chain([f'{GAIN}:gain:{{"gain_db": 1000}}'])  # out of the plugin's range
        assert p.chain() == []
        p.set_chain([GAIN_SPEC])
        assert p.update_config(0, {"gain_db": 1000}) == "reject"
        assert p.update_config(0, {"bogus": 1}) == "reject"
        assert p.update_config(0, {"gain_db": -3}) == "recreate"
        assert json.loads(p.chain()[0]["spec"].split(":", 2)[2]) == {"gain_db": -3}
        for bad in (5, -1):
            with pytest.raises(IndexError):
                p.remove_stage(bad)
        with pytest.raises(IndexError):
            p.insert_stage(3, GAIN_SPEC)
        p._events.flush()
        assert len(events) == 2


def test_seek_refuses_nan_and_clamps_far_positions(runtime, noise):
    with stellatune.Player(runtime=runtime, output="null", offline=True, ring_frames=1 << 16) as p:
        p.enqueue((noise(48000), RATE), (noise(4800), RATE))
        p.play()
        with pytest.raises(ValueError):
            p.seek(float("nan"))
        p.seek(1e308)  # past the end: the item ends, the next plays
        assert p.wait(timeout=60)
