"""`stellatune plugins build|info` and `stellatune decode`, run through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stellatune.cli import EXIT_FAILURE, EXIT_NOT_INSTALLED, EXIT_OK, main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"

# These build Python components (cached after the first run).
pytestmark = pytest.mark.slow


def test_build_install_info_and_decode(tmp_path, plugins_dir, capsys, tone):
    home = ["--plugins-dir", str(plugins_dir)]
    out_zip = tmp_path / "wav-decoder.zip"
    assert main([*home, "plugins", "build", str(EXAMPLES / "wav-decoder"), "--out", str(out_zip)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == str(out_zip)
    assert main([*home, "plugins", "install", str(out_zip)]) == EXIT_OK
    capsys.readouterr()

    assert main([*home, "plugins", "info", "dev.stellatune.example.wav-decoder", "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert (info["state"], info["desired_state"], info["last_error"]) == ("active", "enabled", None)
    assert info["components"] == [
        {
            "id": "wav-decoder",
            "path": "wasm/wav-decoder.wasm",
            "world": "stellatune:plugin/decoder-plugin@0.1.0",
            "abilities": [{"kind": "decoder", "type_id": "wav", "display_name": "WAV / PCM"}],
        }
    ]

    signal = tone(2400, 2)
    track = tmp_path / "track.wav"
    sf.write(track, signal, 44100, subtype="PCM_24")
    decoded = tmp_path / "decoded.wav"
    assert main([*home, "decode", str(track), "--out", str(decoded)]) == EXIT_OK
    assert "decoded by dev.stellatune.example.wav-decoder/wav" in capsys.readouterr().out
    data, rate = sf.read(decoded, dtype="float32")
    assert rate == 44100 and np.max(np.abs(data - signal)) < 2**-22


def test_info_of_a_plugin_that_is_not_installed(plugins_dir, capsys):
    assert main(["--plugins-dir", str(plugins_dir), "plugins", "info", "no.such.plugin"]) == EXIT_NOT_INSTALLED
    assert "not installed" in capsys.readouterr().err


def test_decode_without_a_decoder_that_can_read_it(tmp_path, plugins_dir, capsys):
    junk = tmp_path / "noise.xyz"
    junk.write_bytes(b"\x00" * 64)
    assert (
        main(["--plugins-dir", str(plugins_dir), "decode", str(junk), "--out", str(tmp_path / "o.wav")]) == EXIT_FAILURE
    )
    assert "no decoder could open" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_decode_into_a_missing_directory_is_an_error_and_leaves_nothing(tmp_path, plugins_dir, built, capsys, tone):
    home = ["--plugins-dir", str(plugins_dir)]
    assert main([*home, "plugins", "install", str(built("wav-decoder"))]) == EXIT_OK
    track = tmp_path / "track.wav"
    sf.write(track, tone(480, 2), 48000)
    out = tmp_path / "no-such-dir" / "o.wav"
    capsys.readouterr()
    assert main([*home, "decode", str(track), "--out", str(out)]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "Traceback" not in err
    assert not out.parent.exists()
