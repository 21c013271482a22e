"""stellatune.Player with plugins at both ends of the queue: ``source:`` items (the example
folder source and wav decoder), seeking in a plugin-decoded item, and live edits with config
updates of every outcome during playback on the JACK dummy device."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile

import stellatune
from stellatune.engine.stats import quantile_us

from .conftest import GAIN, PYGAIN, RATE

FOLDER = "dev.stellatune.example.folder-source"


def until(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _ramp(n):
    """Left: a sine; right: a ramp, so every frame's value says where it came from."""
    t = np.arange(n)
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t / RATE), 0.5 * t / n], axis=1).astype(np.float32)


@pytest.fixture
def music(tmp_path, runtime, install, noise):
    """A granted music folder with two float WAVs and a ramp, the source configured on it."""
    install("folder-source", "wav-decoder")
    folder = tmp_path / "music"
    folder.mkdir()
    tracks = {"one.wav": noise(30011), "two.wav": noise(17777), "ramp.wav": _ramp(4 * RATE)}
    for name, x in tracks.items():
        soundfile.write(str(folder / name), x, RATE, subtype="FLOAT")
    executor = runtime.host
    executor.host_imports(FOLDER).grants.add_file_root(folder)
    executor.source(FOLDER, "folder").apply_config({"root": str(folder)})
    return folder, tracks


def _item(path: str) -> str:
    return f"source:{FOLDER}:folder:{json.dumps({'path': path})}"


def test_source_items_play_gaplessly_through_the_decoder_plugin(runtime, music, tmp_path):
    _, tracks = music
    out_path = tmp_path / "out.wav"
    events = []
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", offline=True, ring_frames=1 << 16) as p:
        p.subscribe(events.append, kinds=["track-started", "track-error"])
        p.enqueue(_item("one.wav"), _item("two.wav"))
        assert p.queue() == [_item("one.wav"), _item("two.wav")]
        p.play()
        assert p.wait(timeout=60)
    out, rate = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    assert rate == RATE
    np.testing.assert_array_equal(out, np.concatenate([tracks["one.wav"], tracks["two.wav"]]))
    assert [(e["kind"], e["item"]) for e in events] == [
        ("track-started", _item("one.wav")),
        ("track-started", _item("two.wav")),
    ]


def test_a_source_item_that_cannot_be_opened_is_a_track_error_and_the_queue_goes_on(runtime, music, tmp_path):
    _, tracks = music
    out_path = tmp_path / "out.wav"
    errors = []
    with stellatune.Player(
        runtime=runtime, output=f"file:{out_path}", offline=True, sample_rate=RATE, channels=2, ring_frames=1 << 16
    ) as p:
        p.subscribe(errors.append, kinds=["track-error"])
        p.enqueue(_item("missing.wav"), _item("two.wav"))
        p.play()
        assert p.wait(timeout=60)
        until(lambda: errors, what="the track-error event", timeout=10)
    assert errors[0]["item"] == _item("missing.wav")
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(out, tracks["two.wav"])


@pytest.mark.parametrize("kind", ["file", "source"])
def test_seek_in_a_plugin_decoded_item_lands_on_the_target(runtime, music, tmp_path, kind):
    folder, tracks = music
    src = tracks["ramp.wav"]
    item = str(folder / "ramp.wav") if kind == "file" else _item("ramp.wav")
    out_path = tmp_path / "out.wav"
    target = 3.0  # a whole millisecond: the decoder's seek-ms lands on this frame exactly
    with stellatune.Player(runtime=runtime, output=f"file:{out_path}", decoder="plugin", ring_frames=1 << 14) as p:
        p.enqueue(item)
        p.play()
        until(lambda: (p.position() or 0) >= 0.3, what="0.3 s played")
        assert p.seek(target)
        assert abs(p.position() - target) < 0.25
        assert p.wait(timeout=30)
    out, _ = soundfile.read(str(out_path), dtype="float32", always_2d=True)
    probe = int(target * RATE) + 1000  # past the 5 ms fade-in
    hits = np.flatnonzero(out[:, 1] == src[probe, 1])
    assert len(hits) == 1, "the post-seek audio is in the output once"
    k = hits[0]
    np.testing.assert_array_equal(out[k : k + len(src) - probe], src[probe:])  # decoded from the target on


#: The JACK dummy device on a shared VM reports xruns from scheduling noise alone: the server's
#: own thread is late, not our callback. Their number is the host's (from 0 to over 4 a second
#: on the same CI machine), so without ``--strict-realtime`` the test asserts what is ours: the
#: callback kept its deadline (render time p99.9 under half the period) and no frame was lost.
#: ``--strict-realtime`` also asserts no xrun (and uses the production decode ring).
CALLBACK_BUDGET_SHARE = 0.5


@pytest.mark.audio
@pytest.mark.slow  # pygain is a Python component (built once, cached)
def test_live_edits_and_config_updates_during_playback_on_the_jack_device(
    jack_server, runtime, install, noise, ring_frames, request
):
    install("gain", "pygain")
    strict = request.config.getoption("--strict-realtime")
    seconds = 24  # 100 rounds of edits over ~18 s, inside 20 s of playback as the issue asks
    outcomes: dict[str, int] = {"hot-apply": 0, "reject": 0, "recreate": 0}
    events = []
    with stellatune.Player(runtime=runtime, ring_frames=ring_frames) as p:
        p.subscribe(events.append, kinds=["config-applied", "config-rejected", "stage-fault", "track-error"])
        # pygain (component path) keeps the whole chain on the feeder: every edit below is a swap
        # between its pieces, with no flush, so the ring's fill is what carries the music.
        p.set_chain([f"{PYGAIN}:pygain", f'{GAIN}:gain:{{"gain_db": -3}}'])
        p.enqueue((noise(seconds * RATE), RATE))
        p.play()
        until(lambda: (p.position() or 0) > 0.2, what="playing")
        started = time.monotonic()
        invert = False
        for i in range(100):
            n = len(p.chain())
            k = i % 5
            if k == 0:
                p.insert_stage(n, f"{GAIN}:gain")
            elif k == 1:
                p.move_stage(n - 1, 1)
            elif k == 2:
                p.bypass(1, i % 2 == 0)
            elif k == 3:
                p.update_config(1, {"gain_db": -float(i % 12)})
            else:
                p.remove_stage(1)
            # pygain's config, one of each outcome per round: hot-apply (gain), reject (out of
            # range), recreate (phase inversion: a new instance, state carried, crossfaded).
            outcomes[p.update_config(0, {"gain_db": -float(i % 6), "invert": invert})] += 1
            outcomes[p.update_config(0, {"gain_db": 1000, "invert": invert})] += 1
            invert = not invert
            outcomes[p.update_config(0, {"gain_db": -2, "invert": invert})] += 1
            time.sleep(max(0.0, started + (i + 1) * 0.18 - time.monotonic()))  # ~18 s of edits
        status = p.status()
        assert status["state"] == "playing" and status["current"] == "array"
        assert status["chain_thread"] == "feeder"
        assert status["chain"][0]["route"] == "component"
        assert p.wait(timeout=seconds + 30)
        c = p.counters()
        period_ns = p.frames / RATE * 1e9
    assert outcomes == {"hot-apply": 100, "reject": 100, "recreate": 100}, outcomes
    assert not [e for e in events if e["kind"] in ("stage-fault", "track-error")], events
    assert sum(e["kind"] == "config-rejected" for e in events) == outcomes["reject"]
    assert c["frames_played"] == seconds * RATE  # every frame played, none lost to an edit
    assert c["ring_underruns"] == 0
    render_p999_ns = 1000 * quantile_us(c["render_hist"], c["callbacks"], 0.999, 0, c["render_max_ns"])
    assert render_p999_ns < CALLBACK_BUDGET_SHARE * period_ns, c
    if strict:
        assert c["device_underflows"] == 0, c
