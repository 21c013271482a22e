"""Supervision, scopes, leases, locks and teardown with real sidecar processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from stellatune.errors import PluginError, PluginErrorCode
from stellatune.host.sidecar import LaunchScope, LaunchSpec, SidecarManager, SlotState, TransportKind, TransportOption

UNIX = [TransportOption(TransportKind.UNIX_SOCKET, 1)]


def wait_for(predicate, what: str, limit_s: float = 15.0) -> None:
    """Wait for a state the supervisor reaches on its own thread (a bound, not a timing test)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"never reached: {what}")
        time.sleep(0.01)


def echo(channel, data: bytes) -> bytes:
    channel.write(data)
    out = b""
    while len(out) < len(data):
        out += channel.read(len(data) - len(out), timeout_ms=5000)
    return out


@pytest.mark.parametrize("kind", list(TransportKind), ids=[k.value for k in TransportKind])
def test_sidecar_killed_mid_stream_is_restarted(kind, manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    proc = manager.launch(ctx, LaunchSpec(exe, preferred_control=[TransportOption(kind, 1)]))
    channel = proc.open_control()
    assert echo(channel, b"before") == b"before"
    old_pid = proc.pid
    os.kill(old_pid, signal.SIGKILL)
    try:
        assert channel.read(100, timeout_ms=5000) == b""  # the stream ends (a ring sees the pidfd)...
    except PluginError as exc:
        assert exc.code is PluginErrorCode.IO  # ...or is already marked stale
    fresh = proc.open_control()  # waits out the back-off, then connects to the new process
    assert echo(fresh, b"after") == b"after"
    assert proc.pid not in (None, old_pid)
    with pytest.raises(PluginError) as info:
        channel.read(10, timeout_ms=100)
    assert info.value.code is PluginErrorCode.IO and "open the channel again" in info.value.message
    stats = manager.stats(ctx.plugin_id)
    assert (stats.starts, stats.crashes, stats.restarts, stats.crash_loops) == (2, 1, 1, 0)
    kinds = [e.kind for e in manager.events(ctx.plugin_id)]
    assert kinds == ["started", "crashed", "restarted"]
    assert "signal 9" in manager.events(ctx.plugin_id)[1].message


def test_crash_loop_trips_the_breaker(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("crash_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    heard: list[str] = []
    manager._on_event = lambda event: heard.append(event.kind)
    proc = manager.launch(ctx, LaunchSpec(exe, scope=LaunchScope.PACKAGE_SHARED))
    wait_for(lambda: proc.state is SlotState.CRASH_LOOP, "crash loop")
    stats = manager.stats(ctx.plugin_id)
    assert (stats.crashes, stats.restarts, stats.crash_loops) == (3, 2, 1)  # max_crashes=3 in the fixture
    with pytest.raises(PluginError) as info:
        proc.open_control()
    assert info.value.code is PluginErrorCode.IO and "crash loop" in info.value.message
    with pytest.raises(PluginError):  # a shared relaunch gets the same answer, no new process
        manager.launch(ctx, LaunchSpec(exe, scope=LaunchScope.PACKAGE_SHARED))
    assert manager.stats(ctx.plugin_id).starts == 3
    last = manager.events(ctx.plugin_id)[-1]
    assert last.kind == "crash-loop" and "status 3" in last.message
    assert heard == ["started", "crashed", "restarted", "crashed", "restarted", "crash-loop"]
    assert "giving up" in " ".join(proc.log_tail())


def test_package_shared_leases_and_liveness_before_reuse(manager, make_ctx, install_sidecar, plugin_root) -> None:
    exe = install_sidecar("echo_sidecar.py")
    quitter = plugin_root / "bin" / "quit.sh"
    quitter.write_text("#!/bin/sh\nexit 0\n")
    quitter.chmod(0o755)
    ctx = make_ctx(sidecars=(exe, "bin/quit.sh"))
    shared = LaunchSpec(exe, scope=LaunchScope.PACKAGE_SHARED, preferred_control=UNIX)
    a, b = manager.launch(ctx, shared), manager.launch(ctx, shared)
    assert a.pid == b.pid and manager.leases(ctx.plugin_id) == 2
    other = manager.launch(ctx, LaunchSpec(exe, scope=LaunchScope.PACKAGE_SHARED, args=["silent"]))
    assert other.pid != a.pid
    i1, i2 = manager.launch(ctx, LaunchSpec(exe)), manager.launch(ctx, LaunchSpec(exe))
    assert len({i1.pid, i2.pid, a.pid}) == 3
    a.terminate(0)
    b.terminate(0)  # last lease gone, but the plugin is active: the process stays
    assert manager.leases(ctx.plugin_id) == 1  # the "silent" one
    c = manager.launch(ctx, shared)
    assert echo(c.open_control(), b"same process") == b"same process" and c.pid is not None
    # A shared sidecar that exited on its own is started again when next acquired.
    q = manager.launch(ctx, LaunchSpec("quit.sh", scope=LaunchScope.PACKAGE_SHARED))
    first_pid = q.pid
    assert q.wait_exit(5000) == 0 and q.state is SlotState.EXITED
    manager.launch(ctx, LaunchSpec("quit.sh", scope=LaunchScope.PACKAGE_SHARED))
    restarted = [e for e in manager.events(ctx.plugin_id) if e.kind == "restarted"]
    assert len(restarted) == 1 and restarted[0].pid != first_pid
    assert manager.stats(ctx.plugin_id).crashes == 0  # a clean exit is no crash


def test_terminate_kills_after_the_grace_and_deactivation_cleans_up(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    stubborn = manager.launch(ctx, LaunchSpec(exe, args=["ignore-eof"]))
    stubborn.terminate(100)
    assert stubborn.wait_exit(0) == -signal.SIGKILL
    everything = [TransportOption(k, 1) for k in TransportKind]
    procs = [
        manager.launch(
            ctx,
            LaunchSpec(exe, scope=scope, args=["ignore-eof"], preferred_control=everything, preferred_data=everything),
        )
        for scope in (LaunchScope.INSTANCE, LaunchScope.PACKAGE_SHARED)
    ]
    channels = [p.open_control() for p in procs]
    assert echo(channels[0], b"x") == b"x"
    slot_dirs = list(manager.runtime_dir.iterdir())
    assert any(f.suffix == ".shm" for d in slot_dirs for g in d.iterdir() for f in g.iterdir())
    manager.plugin_deactivated(ctx.plugin_id, grace_ms=100)
    assert list(manager.runtime_dir.iterdir()) == []  # sockets, FIFOs and rings are gone
    for p in procs:
        assert p.pid is None
        with pytest.raises(PluginError):
            p.open_control()
    with pytest.raises(PluginError) as info:
        channels[0].read(1, timeout_ms=10)
    assert info.value.code is PluginErrorCode.IO


@pytest.mark.parametrize(
    "executable, code, words",
    [
        ("/bin/sh", PluginErrorCode.DENIED, "absolute"),
        ("../outside.py", PluginErrorCode.DENIED, "'..'"),
        ("bin/../bin/echo_sidecar.py", PluginErrorCode.DENIED, "'..'"),
        ("unlisted.sh", PluginErrorCode.DENIED, "not in permissions.sidecars"),
        ("escape.sh", PluginErrorCode.DENIED, "outside the plugin root"),
        ("plain.txt", PluginErrorCode.INVALID_ARG, "not an executable"),
        ("missing", PluginErrorCode.NOT_FOUND, "not found"),
        ("  ", PluginErrorCode.INVALID_ARG, "blank"),
    ],
)
def test_launch_refusals(executable, code, words, manager, make_ctx, install_sidecar, plugin_root, tmp_path) -> None:
    exe = install_sidecar("echo_sidecar.py")
    outside = tmp_path / "outside.sh"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (plugin_root / "bin" / "unlisted.sh").write_text("#!/bin/sh\n")
    (plugin_root / "bin" / "unlisted.sh").chmod(0o755)
    os.symlink(outside, plugin_root / "bin" / "escape.sh")
    (plugin_root / "plain.txt").write_text("hi")
    ctx = make_ctx(sidecars=(exe, "bin/escape.sh", "plain.txt", "missing"))
    with pytest.raises(PluginError) as info:
        manager.launch(ctx, LaunchSpec(executable))
    assert info.value.code is code and words in info.value.message
    assert manager.stats(ctx.plugin_id).starts == 0


def test_a_sidecar_that_cannot_start_is_an_io_error(manager, make_ctx, plugin_root) -> None:
    broken = plugin_root / "bin" / "broken.sh"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    ctx = make_ctx(sidecars=("bin/broken.sh",))
    with pytest.raises(PluginError) as info:
        manager.launch(ctx, LaunchSpec("broken.sh"))
    assert info.value.code is PluginErrorCode.IO and "cannot start sidecar" in info.value.message
    assert list(manager.runtime_dir.iterdir()) == []


def test_reserved_env_names_are_refused(manager, make_ctx, install_sidecar) -> None:
    exe = install_sidecar("echo_sidecar.py")
    ctx = make_ctx(sidecars=(exe,))
    for env in ([("STELLATUNE_SIDECAR_CONTROL_UNIX", "/tmp/evil.sock")], [("A=B", "1")]):
        with pytest.raises(PluginError) as info:
            manager.launch(ctx, LaunchSpec(exe, env=env))
        assert info.value.code is PluginErrorCode.INVALID_ARG


def test_named_locks_serialise_per_plugin(manager, make_ctx) -> None:
    a, b = make_ctx("dev.test.a"), make_ctx("dev.test.b")
    guard = manager.lock(a, "device")
    with pytest.raises(PluginError) as info:
        manager.lock(a, "device", timeout_ms=20)
    assert info.value.code is PluginErrorCode.TIMEOUT
    manager.lock(b, "device", timeout_ms=20).unlock()  # another plugin has its own lock
    manager.lock(a, "other", timeout_ms=20).unlock()
    got = threading.Event()

    def waiter() -> None:
        with manager.lock(a, "device", timeout_ms=5000):
            got.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not got.wait(0.05)
    guard.unlock()
    guard.unlock()  # idempotent
    t.join()
    assert got.is_set()
    with pytest.raises(PluginError) as info:
        manager.lock(a, " ")
    assert info.value.code is PluginErrorCode.INVALID_ARG


def test_shutdown_leaves_no_process_and_no_file(make_ctx, install_sidecar, children) -> None:
    exe = install_sidecar("echo_sidecar.py")
    before = children()
    mgr = SidecarManager(shutdown_grace_ms=100)
    everything = [TransportOption(k, 1) for k in TransportKind]
    for plugin_id in ("dev.test.one", "dev.test.two"):
        ctx = make_ctx(plugin_id, sidecars=(exe,))
        for scope in LaunchScope:
            mgr.launch(ctx, LaunchSpec(exe, scope=scope, args=["ignore-eof"], preferred_control=everything))
    assert len(children() - before) == 4
    runtime_dir = mgr.runtime_dir
    assert any(runtime_dir.rglob("*.shm")) and any(runtime_dir.rglob("*.sock"))
    mgr.shutdown()
    assert children() - before == set()
    assert not runtime_dir.exists()
    mgr.shutdown()  # idempotent
    with pytest.raises(PluginError):
        mgr.launch(make_ctx(sidecars=(exe,)), LaunchSpec(exe))
