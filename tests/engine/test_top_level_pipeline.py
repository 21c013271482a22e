"""stellatune.Pipeline: installed plugins by name, used like a pedalboard (offline and live)."""

from __future__ import annotations

import numpy as np
import pytest

import stellatune
from stellatune import package
from stellatune.errors import EngineError, RuntimeStateError

GAIN = 'dev.stellatune.example.gain:gain:{"gain_db": -6}'


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory, built):
    d = tmp_path_factory.mktemp("plugins")
    for name in ("gain", "delay", "pygain"):
        package.install_from_artifact(d, built(name))
    return d


def _noise(frames: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((frames, channels), dtype=np.float32) - 0.5


def test_process_takes_the_sample_rate_with_the_call(plugins_dir):
    audio = _noise(4800, 2)
    with stellatune.Pipeline([GAIN], plugins_dir=plugins_dir) as board:
        out = board.process(audio, 48000)
        (stage,) = board.chain(48000, 2).stages
        assert stage.route == "hot-path"
    gain = np.float32(10 ** (-6 / 20))
    np.testing.assert_allclose(out, audio * gain, rtol=1e-6, atol=1e-7)


def test_mono_and_other_formats_get_their_own_stages(plugins_dir):
    mono = _noise(1000, 1)[:, 0]
    with stellatune.Pipeline([GAIN], plugins_dir=plugins_dir) as board:
        out = board.process(mono, 44100)
        assert out.shape == mono.shape
        board.process(_noise(1000, 2), 48000)
        assert set(board._chains) == {(44100, 1), (48000, 2)}


def test_state_carries_over_between_calls_like_a_stream(plugins_dir):
    """Rendering in two calls equals rendering at once: the delay line is kept per format."""
    audio = _noise(9600, 2)
    delay = stellatune.DspPlugin("dev.stellatune.example.delay", "delay", {"time_ms": 5, "mix": 0.5})
    with stellatune.Pipeline([delay], plugins_dir=plugins_dir) as whole:
        at_once = whole.process(audio, 48000)
    with stellatune.Pipeline([delay], plugins_dir=plugins_dir) as split:
        halves = np.concatenate([split.process(audio[:4800], 48000), split.process(audio[4800:], 48000)])
    np.testing.assert_array_equal(halves, at_once)
    assert not np.array_equal(at_once, audio)


def test_a_plugin_without_a_hot_path_runs_on_its_component(plugins_dir):
    audio = _noise(2048, 2)
    with stellatune.Pipeline(
        ['dev.stellatune.example.pygain:pygain:{"gain_db": -6}'], plugins_dir=plugins_dir
    ) as board:
        out = board.process(audio, 48000)
        (stage,) = board.chain(48000, 2).stages
        assert stage.route == "component" and stage.fallback_reason
    np.testing.assert_allclose(out, audio * np.float32(10 ** (-6 / 20)), rtol=1e-5, atol=1e-6)


def test_bad_specs_and_use_after_close_are_clear_errors(plugins_dir):
    with pytest.raises(EngineError, match="PLUGIN_ID:TYPE_ID"):
        stellatune.Pipeline(["just-an-id"], plugins_dir=plugins_dir)
    with pytest.raises(EngineError, match="JSON"):
        stellatune.DspPlugin.parse("a:b:{nope")
    board = stellatune.Pipeline([GAIN], plugins_dir=plugins_dir)
    board.close()
    board.close()  # idempotent
    with pytest.raises(RuntimeStateError):
        board.process(_noise(10, 2), 48000)
    with (
        stellatune.Pipeline(["dev.stellatune.example.missing:x"], plugins_dir=plugins_dir) as board,
        pytest.raises(RuntimeStateError),
    ):
        board.process(_noise(10, 2), 48000)


@pytest.mark.audio
def test_play_an_array_on_the_virtual_device(plugins_dir, jack_server, ring_frames):
    audio = _noise(48000 // 4, 2) * 0.1
    with stellatune.Pipeline([GAIN], plugins_dir=plugins_dir) as board:
        handle = board.play(audio, sample_rate=48000, ring_frames=ring_frames)
        assert handle.wait(timeout=10)
        stats = handle.stats()
    assert stats.callbacks > 0
    assert stats.ring_underruns == 0
