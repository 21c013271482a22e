"""A decoder plugin as the pipeline's source: ``plugin_decoded_source`` offline, through
``stellatune render|play --decoder plugin``, and live on the JACK dummy device."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stellatune.cli import audio
from stellatune.cli.context import add_plugins_dir_option
from stellatune.compose import plugin_decoded_source
from stellatune.engine import Chain
from stellatune.errors import PluginError

WAV = "dev.stellatune.example.wav-decoder"
SOURCE_RATE, RATE = 44100, 48000


def run(argv):
    parser = argparse.ArgumentParser()
    add_plugins_dir_option(parser, top_level=True)
    audio.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def track(tmp_path, noise) -> Path:
    """Half a second of stereo noise at 44.1 kHz, as float WAV (decoded exactly by both decoders)."""
    path = tmp_path / "track.wav"
    soundfile.write(path, noise(SOURCE_RATE // 2), SOURCE_RATE, subtype="FLOAT")
    return path


def test_the_wav_plugin_decodes_what_soundfile_decodes(runtime, executor, install, track):
    install("wav-decoder")
    source = plugin_decoded_source(runtime, executor, track, block_frames=1000)
    try:
        assert (source.sample_rate, source.channels, source.label) == (SOURCE_RATE, 2, f"{WAV}/wav")
        decoded = np.concatenate(list(source.blocks))
    finally:
        source.close()
    np.testing.assert_array_equal(decoded, soundfile.read(track, dtype="float32")[0])


def test_no_decoder_plugin_is_a_clear_error(runtime, executor, track):
    with pytest.raises(PluginError, match="no decoder could open"):
        plugin_decoded_source(runtime, executor, track)


def test_render_through_the_decoder_plugin_equals_the_soundfile_render(runtime, install, track, tmp_path, capsys):
    install("wav-decoder")
    plugins = ["--plugins-dir", str(runtime.plugins_dir)]
    builtin, plugin = tmp_path / "builtin.wav", tmp_path / "plugin.wav"
    assert run([*plugins, "render", str(track), str(builtin), "--rate", str(RATE)]) == 0
    assert "decoder:" not in capsys.readouterr().err
    assert run([*plugins, "render", str(track), str(plugin), "--rate", str(RATE), "--decoder", "plugin"]) == 0
    err = capsys.readouterr().err
    assert f"decoder: {WAV}/wav (plugin)" in err and f"resampling {SOURCE_RATE} Hz -> {RATE} Hz" in err
    a, rate_a = soundfile.read(builtin, dtype="float32")
    b, rate_b = soundfile.read(plugin, dtype="float32")
    assert rate_a == rate_b == RATE and abs(len(a) - RATE // 2) <= 2
    np.testing.assert_array_equal(a, b)


@pytest.mark.audio
def test_live_play_from_the_decoder_plugin_has_no_ring_underruns(
    jack_server, runtime, executor, install, track, ring_frames
):
    install("wav-decoder")
    source = plugin_decoded_source(runtime, executor, track)
    handle = Chain([], RATE, 2).play(source, frames=128, ring_frames=ring_frames)
    assert handle.decoder == f"{WAV}/wav" and handle.source_sample_rate == SOURCE_RATE
    assert handle.wait(timeout=10)
    stats = handle.stats()
    assert stats.finished and stats.ring_underruns == 0
    assert abs(stats.frames_played - RATE // 2) <= 2


@pytest.mark.audio
def test_cli_play_with_the_decoder_plugin(jack_server, runtime, install, track, capsys, ring_frames):
    install("wav-decoder")
    argv = [
        "--plugins-dir",
        str(runtime.plugins_dir),
        "play",
        str(track),
        "--decoder",
        "plugin",
        "--rate",
        str(RATE),
        "--ring",
        str(ring_frames),
    ]
    assert run(argv) == 0
    captured = capsys.readouterr()
    assert f"decoder: {WAV}/wav (plugin)" in captured.err
    assert f"resampling {SOURCE_RATE} Hz -> {RATE} Hz" in captured.err
    assert "ring underruns 0" in captured.out
