"""``stellatune render|play|devices`` driven through their argparse entry points."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stellatune.cli import audio
from stellatune.cli.context import add_plugins_dir_option
from stellatune.errors import EngineError, PluginError, RuntimeStateError

GAIN = "dev.stellatune.example.gain"
PYGAIN = "dev.stellatune.example.pygain"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"


def run(argv):
    parser = argparse.ArgumentParser()
    add_plugins_dir_option(parser, top_level=True)
    audio.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    from stellatune.package import install_from_artifact
    from stellatune.sdk.build import build_plugin

    root = tmp_path_factory.mktemp("plugins")
    for name in ("gain", "pygain"):
        install_from_artifact(root, build_plugin(EXAMPLES / name))
    return root


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.wav"
    assert run(["demo-track", str(path), "--seconds", "2"]) == 0
    return path


@pytest.mark.parametrize("native", [[], ["--native"]], ids=["wasm", "native"])
def test_render_applies_the_chain(plugins, track, tmp_path, native, capsys):
    out = tmp_path / "out.wav"
    rc = run(
        [
            "--plugins-dir",
            str(plugins),
            "render",
            str(track),
            str(out),
            "--dsp",
            f'{GAIN}:gain:{{"gain_db": -6}}',
            "--dsp",
            f"{GAIN}:gain",
            *native,
        ]
    )
    assert rc == 0
    x, rate = soundfile.read(track, dtype="float32")
    y, rate_out = soundfile.read(out, dtype="float32")
    assert rate_out == rate == 48000 and y.shape == x.shape
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), rtol=1e-6, atol=1e-9)
    assert "gain" in capsys.readouterr().err


def test_demo_track_is_musical_stereo_audio(track):
    x, rate = soundfile.read(track, dtype="float32")
    assert rate == 48000 and x.shape == (96000, 2)
    assert 0.5 < np.abs(x).max() <= 0.9 + 1e-6
    assert not np.array_equal(x[:, 0], x[:, 1])  # panned, not dual mono


@pytest.mark.parametrize(
    "dsp, error, match",
    [
        ("nocolon", EngineError, "expected PLUGIN_ID:TYPE_ID"),
        (f"{GAIN}:gain:{{bad json", EngineError, "not valid JSON"),
        (f'{GAIN}:gain:{{"volume": 1}}', PluginError, 'unknown config key "volume"'),
        ("dev.nope:gain", RuntimeStateError, "'dev.nope' is not active"),
    ],
)
def test_render_refuses_bad_stage_specs(plugins, track, tmp_path, dsp, error, match):
    with pytest.raises(error, match=match):
        run(["--plugins-dir", str(plugins), "render", str(track), str(tmp_path / "o.wav"), "--dsp", dsp])
    assert not (tmp_path / "o.wav").exists()


def test_render_refuses_unreadable_input(plugins, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    with pytest.raises(EngineError, match="cannot open"):
        run(["--plugins-dir", str(plugins), "render", str(bad), str(tmp_path / "o.wav")])


@pytest.mark.audio
def test_devices_and_play_on_the_jack_device(jack_server, plugins, track, capsys, ring_frames):
    assert run(["devices"]) == 0
    assert "system  [JACK Audio Connection Kit]" in capsys.readouterr().out
    assert (
        run(
            [
                "--plugins-dir",
                str(plugins),
                "play",
                str(track),
                "--dsp",
                f"{GAIN}:gain",
                "--seconds",
                "0.6",
                "--frames",
                "512",
                "--ring",
                str(ring_frames),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "callbacks" in captured.out and "ring underruns 0" in captured.out
    assert "hot-path, p50" in captured.err and "played " in captured.err  # per-stage times, then the totals


def test_render_falls_back_to_the_component_path(plugins, track, tmp_path, capsys):
    out = tmp_path / "out.wav"
    rc = run(
        [
            "--plugins-dir",
            str(plugins),
            "render",
            str(track),
            str(out),
            "--dsp",
            f'{PYGAIN}:pygain:{{"gain_db": -6}}',
            "--dsp",
            f"{GAIN}:gain",
        ]
    )
    assert rc == 0
    x, _ = soundfile.read(track, dtype="float32")
    y, _ = soundfile.read(out, dtype="float32")
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), rtol=1e-5, atol=1e-7)
    err = capsys.readouterr().err
    assert f"{PYGAIN}/pygain: component (the component offers no hot path" in err
    assert f"{GAIN}/gain: hot-path" in err


@pytest.mark.audio
def test_play_with_a_component_stage_prints_one_line_per_update(jack_server, plugins, track, capsys, ring_frames):
    assert (
        run(
            [
                "--plugins-dir",
                str(plugins),
                "play",
                str(track),
                "--dsp",
                f"{PYGAIN}:pygain",
                "--seconds",
                "1.2",
                "--ring",
                str(ring_frames),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out and len(lines) >= 2  # stdout is not a terminal here
    assert all("chain on the feeder" in line and "ring underruns 0" in line for line in lines)
