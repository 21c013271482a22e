"""Live playback on a real (JACK dummy) device, verified by recording what reached it."""

import ctypes
import subprocess
import time

import numpy as np
import pytest
import soundfile

from stellatune.abi import Role
from stellatune.engine import Chain, HotPathStage
from stellatune.errors import AudioDeviceError, EngineError

RATE = 48000


def loop_back(capture_ports=2):
    """Route PortAudio's outputs into its own inputs instead of the dummy capture ports."""
    for ch in range(capture_ports):
        subprocess.run(["jack_disconnect", f"system:capture_{ch + 1}", f"PortAudio:in_{ch}"], capture_output=True)
        subprocess.run(["jack_connect", f"PortAudio:out_{ch}", f"PortAudio:in_{ch}"], check=True, capture_output=True)


def align(recorded, played, window=64):
    """Per channel (each was connected at its own moment): the first non-silent recorded index
    and the index in ``played`` it matches exactly."""
    out = []
    for ch in range(recorded.shape[1]):
        first = int(np.flatnonzero(recorded[:, ch])[0])
        probe = recorded[first : first + window, ch]
        views = np.lib.stride_tricks.sliding_window_view(played[:, ch], window)
        hits = np.flatnonzero(np.all(views == probe, axis=1))
        assert len(hits) == 1, f"channel {ch} does not match the played signal ({len(hits)} matches)"
        out.append((first, int(hits[0])))
    return out


def assert_recorded(recorded, expected):
    """Everything recorded after the loopback connection equals ``expected``, bit for bit."""
    for ch, (first, at) in enumerate(align(recorded, expected)):
        n = min(len(expected) - at, len(recorded) - first)  # the stream stops before the tail returns
        assert n > len(expected) // 3
        np.testing.assert_array_equal(recorded[first : first + n, ch], expected[at : at + n, ch])


def gain(kernels, spec, value):
    return HotPathStage.from_wasm(kernels["gain"], spec(), RATE, 2, {"gain": value})


@pytest.mark.audio
def test_loopback_records_exactly_what_the_chain_produced(jack_server, kernels, spec, noise, ring_frames):
    x = noise(RATE)
    pipe = Chain([gain(kernels, spec, 0.5)], RATE, 2)
    handle = pipe.play(x, frames=128, capture_seconds=1.5, ring_frames=ring_frames)
    time.sleep(0.1)
    loop_back()
    assert handle.wait(timeout=10)
    stats = handle.stats()
    assert_recorded(handle.captured(), x * np.float32(0.5))
    assert stats.finished and stats.frames_played == len(x)
    assert stats.ring_underruns == 0
    assert stats.callbacks >= len(x) // 128
    assert stats.output_latency_ms > 0


@pytest.mark.audio
def test_set_param_while_playing_reaches_the_module(jack_server, kernels, spec, noise):
    x = noise(RATE)
    stage = gain(kernels, spec, 0.5)
    handle = Chain([stage], RATE, 2).play(x, frames=128, capture_seconds=1.5)
    time.sleep(0.1)
    loop_back()
    time.sleep(0.3)
    stage.set_param("gain", 0.25)
    assert handle.wait(timeout=10)
    rec = handle.captured()
    first, at = align(rec, x * np.float32(0.5))[0]
    n = min(len(x) - at, len(rec) - first)
    got, src = rec[first : first + n, 0], x[at : at + n, 0]
    half = got == src * np.float32(0.5)
    quarter = got == src * np.float32(0.25)
    assert np.all(half | quarter)
    switch = int(np.argmax(quarter & ~half))
    assert half[:switch].all() and quarter[switch:].all() and 0 < switch < n


@pytest.mark.audio
def test_trapping_and_looping_stages_are_bypassed_while_playback_continues(
    jack_server, kernels, spec, noise, ring_frames
):
    x = noise(RATE)
    trap = HotPathStage.from_wasm(kernels["trap"], spec(), RATE, 2, {"after": 50})
    looping = HotPathStage.from_wasm(kernels["loop"], spec(), RATE, 2, {"after": 100})
    pipe = Chain([trap, looping, gain(kernels, spec, 0.5)], RATE, 2)
    handle = pipe.play(x, frames=128, capture_seconds=1.5, ring_frames=ring_frames)
    time.sleep(0.1)
    loop_back()
    assert handle.wait(timeout=10)
    stats = handle.stats()
    assert [s.fault.kind if s.fault else None for s in stats.stages] == ["trap", "timeout", None]
    # Bounds, not exact blocks: a call the machine descheduled past its 10 ms deadline is skipped
    # like an overrun (and not counted by the module), so a loaded machine shifts these later.
    assert stats.stages[0].fault.block >= 50
    # The loop overruns from its block 100 on: the third timeout in a row bypasses it.
    assert stats.stages[1].fault.block >= 102 and stats.stages[1].timeouts >= 3
    assert stats.finished and stats.frames_played == len(x) and stats.ring_underruns == 0
    assert_recorded(handle.captured(), x * np.float32(0.5))


@pytest.mark.audio
def test_audio_thread_runs_while_another_thread_holds_the_gil(jack_server, kernels, spec, noise):
    x = noise(3 * RATE)
    # The ring holds 2.7 s once prefilled: the 1 s without the GIL cannot drain it.
    handle = Chain([gain(kernels, spec, 0.5)], RATE, 2).play(x, frames=128, ring_frames=1 << 18)
    try:
        time.sleep(0.3)
        before = handle.stats().callbacks
        # PyDLL calls keep the GIL: no Python thread can run for this second.
        ctypes.PyDLL(None).usleep(1_000_000)
        during = handle.stats().callbacks - before
        assert during >= 0.8 * RATE / 128, f"only {during} callbacks while the GIL was held"
        assert handle.stats().ring_underruns == 0
    finally:
        handle.stop()


@pytest.mark.audio
def test_plays_files_and_upmixes_mono(jack_server, kernels, spec, noise, tmp_path):
    stereo, mono = tmp_path / "stereo.wav", tmp_path / "mono.flac"
    soundfile.write(stereo, noise(RATE // 4), RATE, subtype="FLOAT")
    soundfile.write(mono, noise(RATE // 4, 1), RATE)
    pipe = Chain([gain(kernels, spec, 0.5)], RATE, 2)
    for path in (stereo, mono):
        handle = pipe.play(path, frames=128)
        assert handle.wait(timeout=10)
        assert handle.stats().frames_played == RATE // 4


@pytest.mark.audio
def test_bad_device_or_source_fails_cleanly_and_frees_the_pipeline(jack_server, kernels, spec, noise, tmp_path):
    pipe = Chain([gain(kernels, spec, 0.5)], RATE, 2)
    with pytest.raises(AudioDeviceError, match="no output device matches 'no-such-card'"):
        pipe.play(noise(RATE), device="no-such-card")
    three_channels = tmp_path / "3ch.wav"  # another rate is resampled now; a channel count is refused
    soundfile.write(three_channels, np.zeros((100, 3), np.float32), RATE)
    with pytest.raises(EngineError, match="3 channels"):
        pipe.play(three_channels)
    with pytest.raises(EngineError, match="cannot open"):
        pipe.play(tmp_path / "missing.wav")
    with pytest.raises(EngineError, match="power of two >= 256"):
        pipe.play(noise(RATE), ring_frames=3000)
    x = noise(256)
    np.testing.assert_array_equal(pipe.process(x), x * np.float32(0.5))


def test_output_sink_is_paced_by_the_engine_clock(kernels, spec, noise, sink_totals, ring_frames):
    x = noise(RATE // 5)
    sink = HotPathStage.from_wasm(kernels["sink"], spec(Role.OUTPUT_SINK), RATE, 2)
    pipe = Chain([gain(kernels, spec, 0.5), sink], RATE, 2)
    started = time.monotonic()
    handle = pipe.play(x, frames=256, ring_frames=ring_frames)
    assert handle.wait(timeout=10)
    elapsed = time.monotonic() - started
    stats = handle.stats()
    assert stats.frames_played == len(x) and stats.ring_underruns == 0
    frames, total = sink_totals(sink)
    assert frames == len(x)
    assert total == pytest.approx(float(np.sum(x * np.float32(0.5), dtype=np.float64)), rel=1e-9, abs=1e-9)
    # Real-time pacing: 0.2 s of audio cannot be consumed much faster than 0.2 s.
    assert elapsed >= 0.15


def test_design_b_on_the_engine_clock_plays_everything_and_leaves_the_source_alone(
    kernels, spec, noise, sink_totals, ring_frames
):
    from stellatune.engine import ENGINE_CLOCK

    x = noise(RATE // 10)
    before = x.copy()
    sink = HotPathStage.from_wasm(kernels["sink"], spec(Role.OUTPUT_SINK), RATE, 2)
    pipe = Chain([gain(kernels, spec, 0.5), sink], RATE, 2)
    handle = pipe.play(x, device=ENGINE_CLOCK, frames=128, chain_in_callback=False, ring_frames=ring_frames)
    assert handle.wait(timeout=10)
    np.testing.assert_array_equal(x, before)
    frames, total = sink_totals(sink)
    assert frames == len(x) and handle.stats().ring_underruns == 0
    assert total == pytest.approx(float(np.sum(x * np.float32(0.5), dtype=np.float64)), rel=1e-9, abs=1e-9)
