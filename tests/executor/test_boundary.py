"""Every value a plugin returns is checked at the component boundary: a bad one is a
PluginContractError naming the plugin and the field, never an OverflowError, a ValueError from a
path join or a traceback from the CLI.

Two real plugins lie here: the example WAV decoder fed crafted headers (it reports what the file
says), and tests/fixtures/plugins/liar-dsp, whose answers are whatever its config says.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellatune import package
from stellatune.compose import build_dsp_stage
from stellatune.engine import ComponentStage
from stellatune.errors import PluginContractError
from stellatune.executor import AudioSpec, FileHostStream
from stellatune.executor.boundary import MAX_CHANNELS, MAX_JSON_CHARS, MAX_SAMPLE_RATE, Boundary
from stellatune.sdk.build import build_plugin

LIAR = "dev.stellatune.test.liar-dsp"
DECODER = "dev.stellatune.example.wav-decoder"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
SPEC = AudioSpec(48000, 2)

pytestmark = pytest.mark.slow  # builds Python components (cached after the first run)


@pytest.fixture
def liar(runtime, plugins_dir, executor):
    package.install_from_artifact(plugins_dir, build_plugin(FIXTURES / "liar-dsp"))
    assert not runtime.sync_plugins().errors
    return executor.dsp(LIAR, "liar")


def wav_header(rate: int, channels: int, frames: int = 16) -> bytes:
    """A 16-bit PCM WAV whose fmt chunk says ``rate`` and ``channels`` (silence as data)."""
    block = channels * 2
    data = bytes(frames * block)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- hot-path specs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lie, field",
    [
        ({"wasm_rel_path": "wasm/gain\u0000.hotpath.wasm"}, "core-module-spec.wasm-rel-path"),
        ({"wasm_rel_path": "../../../../etc/passwd"}, "core-module-spec.wasm-rel-path"),
        ({"wasm_rel_path": "/etc/passwd"}, "core-module-spec.wasm-rel-path"),
        ({"wasm_rel_path": "w" * 5000}, "core-module-spec.wasm-rel-path"),
        ({"channels": 1000}, "core-module-spec.buffer.channels"),
        ({"max_frames": 4_000_000_000}, "core-module-spec.buffer.max-frames"),
        ({"process_export": "p" * 1000}, "core-module-spec.process-export"),
    ],
    ids=["nul", "dotdot", "absolute", "long-path", "channels", "max-frames", "long-export"],
)
def test_a_lying_hot_path_spec_is_a_contract_error_and_the_stage_falls_back(liar, runtime, executor, lie, field):
    with liar.create(SPEC, json.dumps({"spec": lie})) as processor, pytest.raises(PluginContractError) as caught:
        processor.describe_hot_path()
    assert caught.value.plugin_id == LIAR and caught.value.field == field
    assert "\0" not in str(caught.value)

    # Building a stage does not fail: the lie costs the hot path, and the reason says why.
    stage = build_dsp_stage(runtime, executor, LIAR, "liar", {"spec": lie}, 48000, 2)
    try:
        assert isinstance(stage, ComponentStage)
        assert field in stage.fallback_reason
        block = np.full((64, 2), 0.25, np.float32)
        stage.run(block)  # the liar's process is honest without "samples": the block passes intact
        assert stage.fault is None and np.all(block == 0.25)
    finally:
        stage.close()


@pytest.mark.parametrize(
    "config, call, field",
    [
        ({"output_channels": 1000}, lambda p: p.output_channels(), "output-channels"),
        ({"samples": 3}, lambda p: p.process(np.zeros((8, 2), np.float32)), "process-interleaved-f32"),
        ({"state_chars": MAX_JSON_CHARS + 1}, lambda p: p.export_state(), "export-state-json"),
        ({}, lambda p: p.plan_config({"plan_reason": "r" * 70_000}), "config-update-plan.reason"),
    ],
    ids=["output-channels", "sample-count", "huge-state", "huge-reason"],
)
def test_lying_processor_answers_are_contract_errors(liar, config, call, field):
    with liar.create(SPEC, json.dumps(config)) as processor:
        with pytest.raises(PluginContractError) as caught:
            call(processor)
        assert caught.value.plugin_id == LIAR and caught.value.field == field
        assert caught.value.code.value == "internal"
        # The refusal is the host's: the instance is intact and answers honest questions.
        assert processor.supported_layouts() == 0xFFFFFFFF


# --- decoder info -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, channels, field",
    [
        (4294967295, 2, "decoder-info.sample-rate"),
        (MAX_SAMPLE_RATE + 1, 2, "decoder-info.sample-rate"),
        (48000, MAX_CHANNELS + 1, "decoder-info.channels"),
    ],
    ids=["u32-max-rate", "rate-over-768k", "33-channels"],
)
def test_a_decoder_reporting_an_impossible_format_is_refused(install, executor, tmp_path, rate, channels, field):
    install("wav-decoder")
    track = tmp_path / "hostile.wav"
    track.write_bytes(wav_header(rate, channels))
    with (
        executor.decoder(DECODER, "wav").open(FileHostStream(track), "wav") as session,
        pytest.raises(PluginContractError) as caught,
    ):
        session.info()
    assert caught.value.plugin_id == DECODER and caught.value.field == field


def _cli(*argv: str) -> subprocess.CompletedProcess:
    """The installed ``stellatune`` command, in its own process: what a user sees, tracebacks included."""
    command = Path(sys.executable).with_name("stellatune")
    return subprocess.run([str(command), *argv], capture_output=True, text=True, timeout=120)


def test_the_cli_prints_one_line_for_a_plugin_fault_never_a_traceback(install, plugins_dir, tmp_path):
    install("wav-decoder")
    track = tmp_path / "hostile.wav"
    track.write_bytes(wav_header(4294967295, 2))
    out = tmp_path / "out.wav"
    done = _cli("--plugins-dir", str(plugins_dir), "decode", str(track), "--out", str(out))
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: ") and DECODER in lines[0] and "4294967295" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_render_through_a_nul_path_spec_falls_back_and_succeeds(liar, plugins_dir, tmp_path):
    track = tmp_path / "in.wav"
    assert _cli("demo-track", str(track), "--seconds", "0.2").returncode == 0
    out = tmp_path / "out.wav"
    spec = json.dumps({"spec": {"wasm_rel_path": "wasm/x\u0000y.wasm"}})
    done = _cli("--plugins-dir", str(plugins_dir), "render", str(track), str(out), "--dsp", f"{LIAR}:liar:{spec}")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "component (" in done.stderr
    assert "core-module-spec.wasm-rel-path" in done.stderr and "\0" not in done.stderr
    assert out.is_file()


# --- the checks themselves ----------------------------------------------------------------------


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_sample_rates_outside_1_hz_to_768_khz_are_refused(value):
    check = Boundary("p", "decoder")
    if 1 <= value <= MAX_SAMPLE_RATE:
        assert check.sample_rate("rate", value) == value
    else:
        with pytest.raises(PluginContractError, match=r"rate .*outside 1\.\.768000"):
            check.sample_rate("rate", value)


@given(st.text(max_size=40))
def test_an_accepted_relative_path_stays_inside_the_package(path):
    check = Boundary("p")
    try:
        accepted = check.rel_path("path", path)
    except PluginContractError as e:
        assert e.plugin_id == "p" and e.field == "path"
        return
    parts = accepted.split("/")
    assert "\0" not in accepted and not accepted.startswith("/") and ".." not in parts and "\\" not in accepted
    assert all(parts) and accepted.strip()


def test_non_integers_are_refused_not_coerced():
    check = Boundary("p")
    for bad in (True, 48000.0, "48000", None):
        with pytest.raises(PluginContractError, match="must be an integer"):
            check.sample_rate("rate", bad)
