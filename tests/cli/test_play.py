"""``stellatune play``: gapless files on the Player, the terminal UI driven for real in tmux (keys,
the status line redrawn in place, the terminal restored), and the plain progress lines."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stellatune import package
from stellatune.cli import main
from stellatune.cli.playcmd import parse_keys

RATE = 48000
GAIN = "dev.stellatune.example.gain"
STELLATUNE = Path(sys.executable).parent / "stellatune"


@pytest.fixture(scope="module")
def plugins(tmp_path_factory, built):
    root = tmp_path_factory.mktemp("plugins")
    package.install_from_artifact(root, built("gain"))
    return root


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t)[:, None] + 0.01 * rng.standard_normal((len(t), 2))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracks")
    paths = []
    for name, seconds, freq in (("alpha", 6.0, 440), ("beta", 6.0, 660)):
        paths.append(folder / f"{name}.wav")
        soundfile.write(str(paths[-1]), _tone(seconds, freq, len(paths)), RATE, subtype="FLOAT")
    return paths


def test_keys_are_parsed_with_arrows_in_both_cursor_modes():
    assert parse_keys(b" nq") == ["pause", "next", "quit"]
    assert parse_keys(b"\x1b[C\x1b[D\x1bOC\x1bODx") == ["forward", "back", "forward", "back"]
    assert parse_keys(b"N\x1b[A") == ["next"]  # up arrow: ignored


def test_offline_out_is_the_gapless_processed_concatenation(plugins, tracks, tmp_path, capsys):
    out = tmp_path / "out.wav"
    spec = f'{GAIN}:gain:{{"gain_db": -6}}'
    argv = ["--plugins-dir", str(plugins), "play", *map(str, tracks), "--dsp", spec, "--out", str(out), "--offline"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.out  # not a terminal: one progress line per update
    lines = captured.out.splitlines()
    assert lines and all("ring underruns 0" in line and "chain on the driver" in line for line in lines)
    assert f"{GAIN}/gain: hot-path" in captured.err or "hot-path" in captured.err
    assert "played 576000 frames" in captured.err
    import stellatune

    x = np.concatenate([soundfile.read(str(p), dtype="float32", always_2d=True)[0] for p in tracks])
    with stellatune.Pipeline([spec], plugins_dir=plugins) as board:
        ref = board.process(x, RATE)
    y, rate = soundfile.read(str(out), dtype="float32", always_2d=True)
    assert rate == RATE
    np.testing.assert_array_equal(y, ref)  # gapless and bit-exact


def test_a_sink_output_passes_through_to_the_player(plugins, tracks, capsys):
    rc = main(
        ["--plugins-dir", str(plugins), "play", str(tracks[0]), "--sink", "dev.example.none:sink", "--seconds", "1"]
    )
    err = capsys.readouterr().err
    # Until the Player has sink outputs its error is the CLI's one line; after, an unknown sink fails too.
    assert rc == 1
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_offline_needs_a_file_or_null_output(tracks, capsys):
    assert main(["play", str(tracks[0]), "--device", "system", "--offline"]) == 1
    assert "--offline needs --out" in capsys.readouterr().err


# --- the terminal UI, for real, in tmux ------------------------------------------------------


class Tmux:
    def __init__(self, tmp: Path):
        self.socket = f"st-play-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp

    def _run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def start(self, argv: list[str]) -> None:
        # After the command: its exit code and whether the terminal is back in canonical mode with echo.
        # The shell traps SIGINT (a handler, so the child gets the default back) to outlive a Ctrl-C.
        script = f"trap true INT; {shlex.join(argv)}; echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo; sleep 600"
        self._run("new-session", "-d", "-x", "160", "-y", "24", "sh", "-c", script)

    def keys(self, *keys: str) -> None:
        self._run("send-keys", *keys)

    def screen(self) -> str:
        return self._run("capture-pane", "-p")

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = re.search(pattern, screen)
            if found:
                return found
            assert time.monotonic() < deadline, f"no {pattern!r} on the screen:\n{screen}"
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux (Debian tmux, scripts/setup) is required for the terminal UI tests")
    t = Tmux(tmp_path)
    yield t
    t.close()


# Underruns are not asserted: the production ring on a loaded machine may see one (and a ring
# holding the whole track would let the feeder run a track ahead, where a seek lands: docs).
STATUS = r"(>|\|\|) (\d+):(\d\d)/0:06  \[{n}/2\] {name}\.wav  xruns \d+  underruns \d+  chain load \d+% \(driver\)"


def _play(plugins, tracks) -> list[str]:
    return [
        str(STELLATUNE),
        "--plugins-dir",
        str(plugins),
        "play",
        *map(str, tracks),
        "--dsp",
        f"{GAIN}:gain",
        "--device",
        "null",  # the engine clock in real time: no sound card
    ]


def test_terminal_keys_pause_skip_seek_and_quit(tmux, plugins, tracks):
    tmux.start(_play(plugins, tracks))
    tmux.wait_for("space pause")
    tmux.wait_for(STATUS.format(n=1, name="alpha"))
    tmux.keys("Space")
    tmux.wait_for(r"\|\| \d+:\d\d/0:06  \[1/2\] alpha")
    tmux.keys("Space")
    tmux.wait_for(r"> \d+:\d\d/0:06  \[1/2\] alpha")
    tmux.keys("Right")  # +5 s into a 6 s track
    tmux.wait_for(r"> 0:0[5-6]/0:06  \[1/2\] alpha|\[2/2\] beta")
    tmux.keys("n")
    tmux.keys("Left")  # back to 0:00 of beta (or a no-op right at its start)
    tmux.wait_for(STATUS.format(n=2, name="beta"))
    screen = tmux.screen()
    assert screen.count("xruns") == 1  # one status line, redrawn in place
    tmux.keys("q")
    tmux.wait_for(r"EXIT=0\s+icanon echo")  # the terminal was restored (stty prints after EXIT)
    assert re.search(r"played \d+ frames", tmux.screen())


def test_terminal_play_ends_by_itself_and_ctrl_c_restores_the_terminal(tmux, plugins, tracks, tmp_path):
    short = tmp_path / "short.wav"
    soundfile.write(str(short), _tone(0.5, 220, 9), RATE, subtype="FLOAT")
    tmux.start(_play(plugins, [short]))
    tmux.wait_for(r"EXIT=0\s+icanon echo")
    tmux.close()
    tmux.socket += "-b"  # a fresh server for the second run
    tmux.start(_play(plugins, tracks))
    tmux.wait_for(STATUS.format(n=1, name="alpha"))
    tmux.keys("C-c")
    tmux.wait_for(r"EXIT=130\s+icanon echo")


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "{track}", "{out}.wav", "--rate", "4295015296"],
        ["render", "{track}", "{out}.wav", "--frames", "0"],
        ["play", "{track}", "--out", "{out}.mp3", "--offline"],
        ["play", "{track}", "--device", "null", "--offline", "--rate", "4295015296"],
        ["play", "{track}", "--device", "null", "--offline", "--seconds", "-1"],
    ],
    ids=["render-rate", "render-frames", "play-mp3", "play-rate", "play-seconds"],
)
def test_bad_audio_arguments_are_one_error_line(tracks, tmp_path, capsys, argv):
    args = [a.format(track=tracks[0], out=tmp_path / "o") for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and err.count("\n") == 1, err
