"""A source at another sample rate is resampled on the feeder (soxr) to the pipeline's rate:
offline through ``source_blocks`` and ``stellatune render --rate``, live through ``play``."""

import argparse

import numpy as np
import pytest
import soundfile

from stellatune.cli import audio
from stellatune.cli.context import add_plugins_dir_option
from stellatune.engine import Chain
from stellatune.engine.playback import BlockSource, source_blocks
from stellatune.errors import EngineError

SOURCE_RATE, RATE, TONE_HZ = 44100, 48000, 1000.0


def sine(seconds: float, rate: int = SOURCE_RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[:, None], channels, axis=1)


def peak_hz(x: np.ndarray, rate: int) -> float:
    """The strongest frequency of ``x`` (one channel), to within a bin (rate / len(x))."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


def chunked(x: np.ndarray, frames: int):
    return (x[i : i + frames] for i in range(0, len(x), frames))


def test_source_blocks_resample_to_the_pipeline_rate():
    x = sine(1.0)
    out = np.concatenate(list(source_blocks(BlockSource(chunked(x, 1000), SOURCE_RATE, 1), RATE, 2)))
    assert out.dtype == np.float32 and out.shape[1] == 2
    assert abs(len(out) - RATE) <= 2  # one second in, one second out (the filter's delay flushed)
    assert abs(peak_hz(out[:, 0], RATE) - TONE_HZ) <= RATE / len(out)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # mono copied to both channels
    middle = out[RATE // 4 : 3 * RATE // 4, 0]
    assert 0.49 < np.abs(middle).max() < 0.51  # the level survives; no seams at the 1000-frame edges


def test_a_source_at_the_pipeline_rate_passes_unchanged():
    x = sine(0.1, RATE, 2)
    out = np.concatenate(list(source_blocks(BlockSource(chunked(x, 333), RATE, 2), RATE, 2)))
    np.testing.assert_array_equal(out, x)


def test_bad_sources_are_refused_before_anything_plays():
    with pytest.raises(EngineError, match="3 channels"):
        source_blocks(BlockSource([], SOURCE_RATE, 3), RATE, 2)
    with pytest.raises(EngineError, match="0 Hz"):
        source_blocks(BlockSource([], 0, 2), RATE, 2)
    with pytest.raises(EngineError, match="shape"):
        list(source_blocks(BlockSource([np.zeros(10, np.float32)], SOURCE_RATE, 1), RATE, 2))


def run(argv):
    parser = argparse.ArgumentParser()
    add_plugins_dir_option(parser, top_level=True)
    audio.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_render_resamples_to_the_rate_asked_for(tmp_path, capsys):
    src, dst, same = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "same.wav"
    soundfile.write(src, sine(1.0, channels=2), SOURCE_RATE, subtype="FLOAT")
    plugins = ["--plugins-dir", str(tmp_path / "plugins")]
    assert run([*plugins, "render", str(src), str(dst), "--rate", str(RATE)]) == 0
    assert f"resampling {SOURCE_RATE} Hz -> {RATE} Hz" in capsys.readouterr().err
    out, rate = soundfile.read(dst, dtype="float32")
    assert rate == RATE and out.shape[1] == 2 and abs(len(out) - RATE) <= 2
    assert abs(peak_hz(out[:, 0], RATE) - TONE_HZ) <= RATE / len(out)
    # Without --rate the file's rate is kept and nothing is resampled.
    assert run([*plugins, "render", str(src), str(same)]) == 0
    assert "resampling" not in capsys.readouterr().err
    kept, rate = soundfile.read(same, dtype="float32")
    assert rate == SOURCE_RATE
    np.testing.assert_array_equal(kept, sine(1.0, channels=2))


@pytest.mark.audio
def test_a_44k_file_plays_through_a_48k_pipeline(jack_server, tmp_path, ring_frames):
    path = tmp_path / "44k.wav"
    soundfile.write(path, sine(1.0), SOURCE_RATE, subtype="FLOAT")
    handle = Chain([], RATE, 2).play(path, frames=128, ring_frames=ring_frames)
    assert handle.source_sample_rate == SOURCE_RATE and handle.decoder == "soundfile"
    assert handle.wait(timeout=10)
    stats = handle.stats()
    assert stats.finished and stats.ring_underruns == 0
    assert abs(stats.frames_played - RATE) <= 2
