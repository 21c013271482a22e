"""What callers hand ``Pipeline`` and ``Player`` that is not audio as the engine knows it: integer
PCM, rates past the plugin contract, volumes that would be NaN, odd constructor arguments,
stage indexes past the chain, a closed player. Each is an ``EngineError`` (or ``ValueError`` /
``IndexError``, as Python has it) naming the argument, before anything plays."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile

import stellatune
from stellatune import EngineError
from stellatune.compose import DspPlugin

RATE = 48000
GAIN = "dev.stellatune.example.gain"
DELAY = "dev.stellatune.example.delay"


def test_the_volume_set_before_play_holds_from_the_first_sample(runtime, install, tmp_path):
    out = tmp_path / "v.wav"
    x = np.full((RATE // 2, 2), 0.5, np.float32)
    with stellatune.Player(runtime=runtime, output=f"file:{out}", offline=True, ring_frames=1 << 16) as p:
        p.volume_db = -20.0
        p.enqueue((x, RATE))
        p.play()
        assert p.wait(timeout=60)
    y, _ = soundfile.read(str(out), dtype="float32", always_2d=True)
    fade_in = int(0.005 * RATE)  # the 5 ms start fade; after it, -20 dB exactly
    np.testing.assert_allclose(y[fade_in + 10 :], 0.05, rtol=1e-5)
    assert np.abs(y).max() <= 0.05 + 1e-6  # no unity-gain burst before the smoothing caught up


@pytest.mark.parametrize("db", [float("nan"), float("inf"), float("-inf"), 1000.0])
def test_a_volume_that_would_be_nan_or_deafening_is_refused(runtime, db):
    with stellatune.Player(runtime=runtime, output="null", sample_rate=RATE) as p:
        with pytest.raises(ValueError):
            p.volume_db = db
        assert p.volume_db == 0.0
        p.volume_db = -1000.0  # silence is fine
        assert p.volume_db == -1000.0


@pytest.mark.parametrize("rate", [2**32 + 48000, 2**32 + 1, 768001, 0, -1, 44100.5])
def test_rates_outside_the_plugin_contract_are_refused(runtime, install, rate):
    install("delay")
    with (
        stellatune.Pipeline([f"{DELAY}:delay"], runtime=runtime) as board,
        pytest.raises(EngineError, match="sample_rate"),
    ):
        board.process(np.zeros((64, 2), np.float32), rate)
    with pytest.raises(EngineError, match="sample_rate"):
        stellatune.Player(runtime=runtime, output="null", offline=True, sample_rate=rate)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.complex64, np.bool_, object])
def test_samples_that_are_not_float_are_refused(runtime, install, dtype, tmp_path):
    install("gain")
    x = np.ones((64, 2), dtype=dtype)
    with stellatune.Pipeline([f"{GAIN}:gain"], runtime=runtime) as board:
        with pytest.raises(EngineError, match="float samples"):
            board.process(x, RATE)
        np.testing.assert_array_equal(board.process(np.full((64, 2), 0.25), RATE), 0.25)  # float64 is fine
    errors = []
    with stellatune.Player(runtime=runtime, output="null", offline=True, ring_frames=1 << 16) as p:
        p.subscribe(errors.append, kinds=["track-error"])
        p.enqueue((x, RATE), (np.zeros((480, 2), np.float32), RATE))
        p.play()
        assert p.wait(timeout=60) and p.counters()["frames_played"] == 480  # the int item was skipped
        p._events.flush()
        assert len(errors) == 1 and "float samples" in errors[0]["error"]


def test_threads_that_use_a_fresh_pipeline_at_once_get_one_chain_in_sequence(runtime, install):
    install("delay")
    spec = f'{DELAY}:delay:{{"time_ms": 50, "mix": 1, "feedback": 0}}'
    impulse = np.zeros((1200, 2), np.float32)
    impulse[-1] = 0.5  # its echo falls 50 ms later: into the next call's output
    with stellatune.Pipeline([spec], runtime=runtime) as board:
        expected = sorted((board.process(impulse, RATE) for _ in range(2)), key=lambda a: float(np.abs(a).sum()))
    for _ in range(3):
        with stellatune.Pipeline([spec], runtime=runtime) as board:
            outs: list[np.ndarray] = []
            start = threading.Barrier(2)

            def run(board=board, outs=outs, start=start) -> None:
                start.wait()
                outs.append(board.process(impulse, RATE))

            threads = [threading.Thread(target=run) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert len(board._chains) == 1 and len(outs) == 2  # one chain; both calls ran
            # One after the other on one delay line: the second call hears the first's echo.
            got = sorted(outs, key=lambda a: float(np.abs(a).sum()))
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"decoder": "bogus"}, "decoder"),
        ({"channels": -2}, "channels"),
        ({"channels": 0}, "channels"),
        ({"frames": -1}, "frames"),
        ({"frames": 1.5}, "frames"),
        ({"sample_rate": float("nan")}, "sample_rate"),
        ({"sample_rate": 0}, "sample_rate"),
    ],
)
def test_player_arguments_are_checked_when_it_is_made(runtime, kwargs, says):
    with pytest.raises(EngineError, match=says):
        stellatune.Player(runtime=runtime, output="null", **kwargs)


def test_an_output_file_that_cannot_be_written_is_an_engine_error_and_the_player_stays_usable(runtime, tmp_path):
    with stellatune.Player(runtime=runtime, output=f"file:{tmp_path / 'no' / 'dir' / 'x.wav'}", offline=True) as p:
        p.enqueue((np.zeros((480, 2), np.float32), RATE))
        with pytest.raises(EngineError, match="cannot write"):
            p.play()
        assert p.status()["state"] == "stopped" and p.queue() == ["array"]


def test_a_closed_player_refuses_edits_and_stays_closed(runtime, install):
    install("gain")
    p = stellatune.Player(runtime=runtime, output="null", sample_rate=RATE)
    p.set_chain([f"{GAIN}:gain"])
    p.close()
    for edit in (lambda: p.remove_stage(0), lambda: p.move_stage(0, 0), lambda: p.bypass(0)):
        with pytest.raises(stellatune.RuntimeStateError):
            edit()
    p.stop()
    assert p.status()["state"] == "closed"


@pytest.mark.parametrize("bad", [None, 3, ("a", "b")])
def test_a_stage_spec_that_is_not_text_is_an_engine_error(bad):
    with pytest.raises(EngineError):
        DspPlugin.parse(bad)  # type: ignore[arg-type]
    with pytest.raises(EngineError):
        DspPlugin("a", "b", bad)  # type: ignore[arg-type]
