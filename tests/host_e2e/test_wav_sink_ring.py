"""wav-sink: audio reaches its sidecar over the shared-memory ring (control over stdio), and
disabling, unloading or shutting down the plugin through the runtime ends the sidecar."""

from __future__ import annotations

import os
import signal as signal_mod
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stellatune.executor import AudioSpec
from stellatune.runtime import DesiredState

SINK = "dev.stellatune.example.wav-sink"
RING_HEAD = struct.Struct("<IIIIQQ")  # magic, version, capacity, flags, write_pos, read_pos

pytestmark = pytest.mark.slow  # Python components (cached after the first build)


def endpoint_files(services) -> list[Path]:
    base = services.sidecars().runtime_dir
    return sorted(p for p in base.rglob("*") if not p.is_dir()) if base is not None and base.exists() else []


def ring_header(path: Path) -> dict[str, int]:
    magic, version, capacity, flags, write_pos, read_pos = RING_HEAD.unpack(path.read_bytes()[: RING_HEAD.size])
    return {
        "magic": magic,
        "version": version,
        "capacity": capacity,
        "flags": flags,
        "write_pos": write_pos,
        "read_pos": read_pos,
    }


def _catching(fn, failures: list):
    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            failures.append(e)

    return run


def record(executor, path: Path, signal: np.ndarray, chunk: int = 700):
    session = executor.output_sink(SINK, "wav-file").open(
        {"id": "file", "path": str(path)}, AudioSpec(48000, signal.shape[1])
    )
    offset = 0
    while offset < len(signal):
        offset += session.write(signal[offset : offset + chunk])
    session.flush()
    return session


def test_audio_goes_through_the_ring_and_the_wav_equals_the_input(install, executor, services, tmp_path, tone):
    install("wav-sink")
    out = tmp_path / "ring.wav"
    signal = tone(30000, 2)  # 240 000 bytes in 43 partial-size writes
    session = record(executor, out, signal)

    files = endpoint_files(services)
    rings = [p for p in files if p.name.endswith(".shm")]
    # One ring pair (the audio data channel) and no control ring: control is on stdio.
    assert [p.name for p in rings] == ["d-rx.shm", "d-tx.shm"]
    head = ring_header(next(p for p in rings if p.name == "d-tx.shm"))
    assert (head["magic"], head["version"], head["capacity"]) == (0x53544D52, 1, 1 << 20)
    assert head["flags"] & 1  # the host rang the doorbell, so the writer slept instead of spinning
    # Every audio byte went through the ring, and after flush the sidecar had read them all.
    assert head["write_pos"] == head["read_pos"] == signal.nbytes

    session.close()
    written, rate = sf.read(out, dtype="float32")
    assert rate == 48000 and np.array_equal(written, signal)
    log = executor.log_path(SINK).read_text()
    assert "wav-sink: audio over shared-memory-ring" in log
    assert f"wav-writer read {signal.nbytes} bytes over shared-memory-ring" in log


def test_a_write_larger_than_the_ring_is_partial_and_a_split_frame_is_not_lost(
    install, executor, tmp_path, tone, children
):
    before = children()
    install("wav-sink")
    out = tmp_path / "long.wav"
    signal = tone(100_000, 3)  # 1.2 MB; 12-byte frames do not divide the 1 MiB ring
    session = executor.output_sink(SINK, "wav-file").open(
        {"id": "file", "path": str(out)}, AudioSpec(48000, 3), '{"max_chunk_frames": 100000}'
    )
    (writer,) = children() - before
    os.kill(writer, signal_mod.SIGSTOP)  # the ring stays full until we let the writer go on
    try:
        first = session.write(signal)
        # The empty ring took exactly 1 MiB: 87381 whole frames and 4 bytes of the next one,
        # which counts as accepted (its other 8 bytes wait in the plugin).
        assert first == -(-(1 << 20) // 12) == 87382
        assert session.write(signal[first:]) == 0  # full: nothing more, and no error
        failures: list[BaseException] = []
        flushing = threading.Thread(target=_catching(session.flush, failures))
        flushing.start()
        flushing.join(0.2)
        assert flushing.is_alive()  # waiting for room for the 8 bytes: the writer is stopped
    finally:
        os.kill(writer, signal_mod.SIGCONT)
    flushing.join()
    assert failures == []
    offset = first
    while offset < len(signal):
        offset += session.write(signal[offset:])
    session.close()
    written, _ = sf.read(out, dtype="float32")
    assert np.array_equal(written, signal)


@pytest.mark.parametrize("how", ["disable", "unload", "shutdown"])
def test_taking_the_plugin_down_ends_its_sidecar_and_removes_its_endpoints(
    install, executor, runtime, services, tmp_path, tone, children, how
):
    before = children()
    install("wav-sink")
    out = tmp_path / "cut.wav"
    signal = tone(4800, 2)
    record(executor, out, signal)  # left open: the runtime must clean up after it
    sidecars = children() - before
    assert len(sidecars) == 1 and endpoint_files(services)

    if how == "disable":
        runtime.set_desired_state(SINK, DesiredState.DISABLED)
    elif how == "unload":
        assert runtime.unload(SINK)
    else:
        runtime.shutdown()

    assert not executor.is_active(SINK)
    assert children() - before == set()  # exited and reaped: not even a zombie is left
    assert endpoint_files(services) == []  # rings, bells and their directories are gone
    # The session was closed on the way down, so the file is a complete WAV of what was written.
    written, _ = sf.read(out, dtype="float32")
    assert np.array_equal(written, signal)
    reason = {"disable": "host-disable", "unload": "unload", "shutdown": "shutdown"}[how]
    assert f"wav-sink: on-disable {reason}" in executor.log_path(SINK).read_text()


def test_a_hung_sidecar_is_killed_when_the_plugin_is_disabled(
    install, executor, runtime, services, tmp_path, tone, children
):
    before = children()
    install("wav-sink")
    record(executor, tmp_path / "hung.wav", tone(4800, 2))
    (pid,) = children() - before
    os.kill(pid, signal_mod.SIGSTOP)  # neither answers the plugin nor reacts to EOF on stdin

    runtime.set_desired_state(SINK, DesiredState.DISABLED)

    assert children() - before == set() and endpoint_files(services) == []
    log = executor.log_path(SINK).read_text()
    assert "wav-sink: closing the writer failed" in log  # no answer from the stopped writer
    assert "wav-sink: on-disable host-disable" in log  # ...and teardown went on
    assert services.sidecars().events(SINK)[-1].kind == "stopped"
