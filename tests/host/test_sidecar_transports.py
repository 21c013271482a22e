"""Every transport round-trips bytes with a real echo sidecar; reads honour their timeouts."""

from __future__ import annotations

import os
import time

import pytest

from stellatune.errors import PluginError, PluginErrorCode
from stellatune.host.sidecar import Channel, LaunchScope, LaunchSpec, TransportKind, TransportOption

KINDS = list(TransportKind)
PAYLOAD = bytes(range(256)) * 1024  # 256 KiB: more than a pipe buffer and a small ring


def echo_spec(exe: str, *, control=(), data=(), args=(), env=(), scope=LaunchScope.INSTANCE) -> LaunchSpec:
    return LaunchSpec(exe, scope, tuple(args), tuple(control), tuple(data), tuple(env))


def round_trip(channel: Channel, payload: bytes) -> bytes:
    """Write in pieces (a ring write may be partial) while reading the echo back."""
    received = bytearray()
    sent = 0
    while len(received) < len(payload):
        if sent < len(payload):
            sent += channel.write(payload[sent : sent + 65536])
        received += channel.read(65536, timeout_ms=5000)
    return bytes(received)


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_control_channel_round_trips_over(kind: TransportKind, manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    proc = manager.launch(ctx, echo_spec(exe, control=[TransportOption(kind, 10, 64 * 1024)]))
    channel = proc.open_control()
    assert channel.transport() is kind
    assert round_trip(channel, PAYLOAD) == PAYLOAD
    channel.close()
    proc.terminate(1000)
    assert proc.wait_exit(0) == 0  # EOF on stdin was enough: a clean exit


@pytest.mark.parametrize("kind", [k for k in KINDS if k is not TransportKind.STDIO], ids=lambda k: k.value)
def test_role_data_channel_round_trips_over(kind: TransportKind, manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    role_var = f"STELLATUNE_SIDECAR_DATA_PCM_OUT_{kind.env_suffixes[0]}"
    proc = manager.launch(ctx, echo_spec(exe, control=[TransportOption(TransportKind.STDIO)], env=[(role_var, "")]))
    data = proc.open_data("pcm out", [TransportOption(kind, 5)])
    control = proc.open_control()
    assert data.transport() is kind and control.transport() is TransportKind.STDIO
    assert round_trip(data, PAYLOAD[:70_000]) == PAYLOAD[:70_000]
    assert round_trip(control, b"ctl") == b"ctl"


def test_priority_order_and_fallback_collects_every_error(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    control = [
        TransportOption(TransportKind.LOOPBACK_TCP, 1),
        TransportOption(TransportKind.UNIX_SOCKET, 9),
        TransportOption(TransportKind.STDIO, 0),
    ]
    proc = manager.launch(ctx, echo_spec(exe, control=control))
    assert proc.open_control().transport() is TransportKind.UNIX_SOCKET  # highest priority first
    # A data role with no endpoint for ring or pipe falls back to stdio, the implicit last resort.
    data = proc.open_data(
        "meta", [TransportOption(TransportKind.SHARED_MEMORY_RING, 3), TransportOption(TransportKind.NAMED_PIPE, 2)]
    )
    assert data.transport() is TransportKind.STDIO


def test_no_working_transport_reports_each_attempt(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    proc = manager.launch(ctx, echo_spec(exe, control=[TransportOption(TransportKind.UNIX_SOCKET, 1)]))
    with pytest.raises(PluginError) as info:
        proc.open_data("pcm", [TransportOption(TransportKind.NAMED_PIPE, 1)])
    assert info.value.code is PluginErrorCode.IO
    assert "named-pipe: no endpoint" in info.value.message and "stdio: stdout is not a channel" in info.value.message


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_read_times_out_on_a_silent_sidecar(kind: TransportKind, manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    proc = manager.launch(ctx, echo_spec(exe, args=["silent"], control=[TransportOption(kind, 1)]))
    channel = proc.open_control()
    channel.write(b"anyone?")
    with pytest.raises(PluginError) as info:
        channel.read(10, timeout_ms=200)
    assert info.value.code is PluginErrorCode.TIMEOUT


def test_chatty_sidecar_never_blocks_on_its_log(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    proc = manager.launch(ctx, echo_spec(exe, args=["chatty"], control=[TransportOption(TransportKind.UNIX_SOCKET, 1)]))
    channel = proc.open_control()  # the sidecar only connects after writing 2 MiB of log
    assert round_trip(channel, b"still here") == b"still here"
    deadline = time.monotonic() + 10  # the drain thread may still be catching up with the backlog
    while not any("serving STELLATUNE_SIDECAR_CONTROL_UNIX_SOCKET" in line for line in proc.log_tail()):
        assert time.monotonic() < deadline, proc.log_tail()[-3:]
        time.sleep(0.01)


def test_environment_is_cleared_except_grants(manager, make_ctx, install_sidecar, plugin_root, monkeypatch) -> None:
    monkeypatch.setenv("STELLATUNE_TEST_SECRET", "hunter2")
    monkeypatch.setenv("STELLATUNE_TEST_GRANTED", "ok")
    script = plugin_root / "bin" / "env_sidecar.sh"
    script.write_text("#!/bin/sh\nenv\necho CWD=$(pwd -P)\n")
    script.chmod(0o755)
    ctx = make_ctx(sidecars=("bin/env_sidecar.sh",), env=("STELLATUNE_TEST_GRANTED",))
    proc = manager.launch(
        ctx, echo_spec("env_sidecar.sh", control=[TransportOption(TransportKind.STDIO)], env=[("MINE", "1")])
    )
    out = b""
    channel = proc.open_control()
    while chunk := channel.read(65536, timeout_ms=5000):
        out += chunk
    names = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in out.decode().splitlines() if "=" in line}
    assert names.get("STELLATUNE_TEST_GRANTED") == "ok" and names.get("MINE") == "1"
    assert "STELLATUNE_TEST_SECRET" not in names and "HOME" not in names
    assert names["STELLATUNE_SIDECAR_CONTROL_STDIO"] == "stdio"
    assert names["CWD"] == os.path.realpath(plugin_root)


def test_a_ring_the_sidecar_spoiled_is_an_io_error(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    role_var = "STELLATUNE_SIDECAR_DATA_PCM_SHARED_MEMORY_RING"
    # Control over a socket, so stdio is no channel and cannot stand in for the ring.
    proc = manager.launch(
        ctx, echo_spec(exe, control=[TransportOption(TransportKind.UNIX_SOCKET)], env=[(role_var, "")])
    )
    ring = [TransportOption(TransportKind.SHARED_MEMORY_RING, 1)]
    first = proc.open_data("pcm", ring)
    assert round_trip(first, b"ring is up") == b"ring is up"  # the sidecar has both rings mapped
    first.close()
    [tx_file] = list(manager.runtime_dir.rglob("r0-tx.shm"))
    with open(tx_file, "r+b") as f:  # the sidecar shares the file, so it can write its header
        f.write(b"\0\0\0\0")
    with pytest.raises(PluginError) as info:
        proc.open_data("pcm", ring)
    assert info.value.code is PluginErrorCode.IO and "not an STMR" in info.value.message
    assert proc.pid is not None  # nothing else went wrong: the sidecar runs on
