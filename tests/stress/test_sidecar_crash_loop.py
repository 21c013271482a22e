"""Sidecar crash loops: kill sidecars again and again; the supervisor restarts them with the
documented back-off, opens the breaker at the documented count, and leaves no process behind.

The documented policy (docs/host.md, "Supervision"; ``RestartPolicy()``'s defaults): a crash is
restarted after 0.1 s x 2^(n-1) (at most 5 s), n = crashes in the last 60 s; at 5 crashes the
breaker opens: no more restarts, a ``crash-loop`` event, every use answers ``io`` "... is in a
crash loop"; deactivating the plugin resets it. So killing a sidecar five times in a row gives
restarts after 100, 200, 400 and 800 ms, then the breaker.

Two levels, both with real processes and the default policy:

* the sidecar manager itself, over the example echo sidecar started through a wrapper that
  leaves a grandchild (``sleep``) in the sidecar's process group: teardown must take it too;
* the real wav-sink example plugin through the runtime and the component executor, killing its
  ``wav-writer`` while a recording session is open.

Times are bounds the supervisor cannot beat (a restart never comes *before* its back-off), never
upper bounds: a loaded machine only makes them later. Waits are bounded.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stellatune import diagnostics, package
from stellatune.errors import PluginError, PluginErrorCode
from stellatune.executor import AudioSpec
from stellatune.host import Grants, PluginHostContext
from stellatune.host.sidecar import LaunchSpec, RestartPolicy, SidecarManager, SlotState
from stellatune.runtime import DesiredState

from ..conftest import wait_for

pytestmark = [pytest.mark.stress]

REPO = Path(__file__).resolve().parents[2]
ECHO = REPO / "examples" / "sidecars" / "echo_sidecar.py"
WAV_SINK = "dev.stellatune.example.wav-sink"
POLICY = RestartPolicy()
#: The documented numbers, spelt out: the test is about the docs, not about RestartPolicy().
DOCUMENTED = {"backoff_initial_s": 0.1, "backoff_max_s": 5.0, "max_crashes": 5, "window_s": 60.0}


def documented_delay_s(n: int) -> float:
    return min(0.1 * 2 ** (n - 1), 5.0)


def alive(pid: int) -> bool:
    """Running (or stopped): not gone and not a zombie waiting for whoever reaps orphans."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def group_members(pgid: int) -> set[int]:
    """Live processes whose process group is ``pgid`` (a sidecar and whatever it started)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                found.add(int(entry))
    return found


@pytest.fixture
def plugin_root(tmp_path: Path) -> Path:
    """A plugin root with the echo sidecar and a wrapper that leaves a grandchild behind it."""
    root = tmp_path / "plugin"
    (root / "bin").mkdir(parents=True)
    echo = root / "bin" / "echo_sidecar.py"
    echo.write_bytes(ECHO.read_bytes())
    echo.chmod(0o755)
    wrapper = root / "bin" / "forking.sh"
    # The environment is empty (docs/host.md): absolute paths only. The grandchild outlives
    # nothing on its own: it sleeps far longer than the test.
    wrapper.write_text('#!/bin/sh\n/bin/sleep 600 &\necho "grandchild $!" >&2\nexec ./bin/echo_sidecar.py\n')
    wrapper.chmod(0o755)
    return root


@pytest.fixture
def manager(children) -> Iterator[SidecarManager]:
    before = children()
    mgr = SidecarManager()  # the default policy: what the docs promise
    yield mgr
    runtime_dir = mgr.runtime_dir
    mgr.shutdown()
    assert children() - before == set()
    assert runtime_dir is None or not runtime_dir.exists()


def _grandchild(proc, pid: int) -> int:
    wait_for(lambda: any(line.startswith("grandchild ") for line in proc.log_tail()), f"pid {pid} logs its child")
    return int(next(line for line in proc.log_tail() if line.startswith("grandchild ")).split()[1])


def _crash_loop_round(manager: SidecarManager, root: Path, plugin_id: str) -> dict:
    """Launch, kill five times, check every restart and the breaker; return the figures."""
    ctx = PluginHostContext(plugin_id, root, Grants(root, sidecars=("bin/forking.sh", "bin/echo_sidecar.py")))
    before = manager.stats(plugin_id)
    seen = len(manager.events(plugin_id))
    proc = manager.launch(ctx, LaunchSpec("bin/forking.sh"))
    channel = proc.open_control()
    channel.write(b"ping")
    assert channel.read(4, timeout_ms=5000) == b"ping"
    killed: list[tuple[int, int]] = []  # (sidecar pid, its grandchild)
    restart_gaps = []
    for n in range(1, POLICY.max_crashes + 1):
        wait_for(lambda: proc.state is SlotState.RUNNING and proc.pid is not None, "sidecar running")
        pid = proc.pid
        assert pid is not None and pid not in [k for k, _ in killed]
        grandchild = _grandchild(proc, pid)
        assert alive(grandchild) and group_members(pid) >= {pid, grandchild}
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, grandchild))

        def crashes() -> list:
            return [e for e in manager.events(plugin_id)[seen:] if e.kind in ("crashed", "crash-loop")]

        wait_for(lambda n=n: len(crashes()) == n, f"the crash of kill {n} seen")
        crashed = crashes()[n - 1]
        assert crashed.kind == ("crash-loop" if n == POLICY.max_crashes else "crashed"), crashed
        assert crashed.pid == pid and crashed.returncode == -signal.SIGKILL and "signal 9" in crashed.message
        # Whatever the sidecar started went with it (the supervisor kills the process group).
        wait_for(lambda g=grandchild, p=pid: not alive(g) and not group_members(p), f"group of {pid} gone")
        if n < POLICY.max_crashes:
            delay = documented_delay_s(n)
            assert f"restarting in {delay * 1000:.0f} ms" in crashed.message, crashed.message
            wait_for(lambda n=n: sum(e.kind == "restarted" for e in manager.events(plugin_id)[seen:]) == n, "restart")
            restarted = [e for e in manager.events(plugin_id)[seen:] if e.kind == "restarted"][n - 1]
            gap = restarted.at - crashed.at
            restart_gaps.append(round(gap, 4))
            assert gap >= delay - 0.02, f"restart {n} came {gap:.3f} s after the crash, before its {delay} s back-off"
        else:
            assert f"{POLICY.max_crashes} crashes within {POLICY.window_s:g} s" in crashed.message
    # The breaker is open: no restart, no process, every use is an io error naming it.
    assert proc.state is SlotState.CRASH_LOOP and proc.pid is None
    time.sleep(documented_delay_s(POLICY.max_crashes))  # a restart would have come by now
    assert proc.state is SlotState.CRASH_LOOP
    with pytest.raises(PluginError) as refused:
        proc.open_control()
    assert refused.value.code is PluginErrorCode.IO and "crash loop" in refused.value.message
    after = manager.stats(plugin_id)
    delta = {k: getattr(after, k) - getattr(before, k) for k in ("starts", "crashes", "restarts", "crash_loops")}
    assert delta == {"starts": 5, "crashes": 5, "restarts": 4, "crash_loops": 1}, delta
    kinds = [e.kind for e in manager.events(plugin_id)[seen:]]
    assert kinds == ["started"] + ["crashed", "restarted"] * 4 + ["crash-loop"], kinds
    # Deactivating the plugin resets the breaker: a new launch runs again.
    manager.plugin_deactivated(plugin_id)
    again = manager.launch(ctx, LaunchSpec("bin/forking.sh"))
    fresh = again.open_control()
    fresh.write(b"back")
    assert fresh.read(4, timeout_ms=5000) == b"back"
    last = again.pid
    assert last is not None
    manager.plugin_deactivated(plugin_id)
    for pid, grandchild in [*killed, (last, last)]:
        assert not alive(pid) and not alive(grandchild) and not group_members(pid), f"{pid}'s group outlived the round"
    return {"restart_gaps_s": restart_gaps, "killed": len(killed), **delta}


def test_killing_a_sidecar_five_times_backs_off_then_opens_the_breaker(manager, plugin_root, children, evidence):
    assert {k: getattr(POLICY, k) for k in DOCUMENTED} == DOCUMENTED, "RestartPolicy() no longer matches docs/host.md"
    before = children()
    rounds = evidence.scale(2, 20)
    figures = []
    for r in range(rounds):
        figures.append(_crash_loop_round(manager, plugin_root, f"dev.test.crashloop{r % 2}"))
        assert children() - before == set(), f"round {r}: child processes left"
    gaps = [g for f in figures for g in f["restart_gaps_s"]]
    evidence.record(
        "stress_sidecar_crash_loop",
        rounds=rounds,
        kills=sum(f["killed"] for f in figures),
        restarts=sum(f["restarts"] for f in figures),
        breaker_opened=sum(f["crash_loops"] for f in figures),
        documented_backoff_s=[documented_delay_s(n) for n in range(1, 5)],
        measured_restart_gaps_s=[[f["restart_gaps_s"][i] for f in figures] for i in range(4)],
        max_restart_lateness_s=max(g - documented_delay_s(i % 4 + 1) for i, g in enumerate(gaps)),
        orphans=0,
    )


# --- the real plugin -----------------------------------------------------------------------------


@pytest.mark.slow  # wav-sink is a Python component (built once, cached)
def test_killing_the_wav_sinks_writer_repeatedly(env, services, built, children, tmp_path, evidence):
    """The example wav-sink's writer, killed five times while a recording session is open."""
    runtime, executor = env
    before = children()
    package.install_from_artifact(runtime.plugins_dir, built("wav-sink"))
    assert not runtime.sync_plugins().errors
    manager = services.sidecars()
    seen = len(manager.events(WAV_SINK))
    session = executor.output_sink(WAV_SINK, "wav-file").open(
        {"id": "file", "path": str(tmp_path / "a.wav")}, AudioSpec(48000, 2)
    )
    killed = []
    try:
        for n in range(1, POLICY.max_crashes + 1):
            wait_for(lambda: len(children() - before - set(killed)) == 1, f"a running wav-writer before kill {n}")
            (pid,) = children() - before - set(killed)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            if n < POLICY.max_crashes:
                wait_for(
                    lambda n=n: sum(e.kind == "restarted" for e in manager.events(WAV_SINK)[seen:]) >= n, "restart"
                )
            else:
                wait_for(lambda: any(e.kind == "crash-loop" for e in manager.events(WAV_SINK)[seen:]), "crash loop")
        stats = manager.stats(WAV_SINK)
        assert (stats.crashes, stats.restarts, stats.crash_loops) == (5, 4, 1)
        assert children() - before == set()  # the breaker is open: nothing runs, nothing is left
        with pytest.raises(PluginError):  # the plugin's channels are dead: its flush fails, cleanly
            session.flush()
    finally:
        try:
            session.close()
        except PluginError:
            pass  # the plugin cannot finish a file its writer never got to write: its error to report
    runtime.set_desired_state(WAV_SINK, DesiredState.DISABLED)
    assert children() - before == set() and diagnostics.live_counts()["sidecar_processes"] == 0
    # Deactivation reset the breaker: enabled again, the plugin records as before.
    runtime.set_desired_state(WAV_SINK, DesiredState.ENABLED)
    assert not runtime.sync_plugins().errors
    out = tmp_path / "b.wav"
    session = executor.output_sink(WAV_SINK, "wav-file").open({"id": "file", "path": str(out)}, AudioSpec(48000, 2))
    block = np.full((480, 2), 0.25, np.float32)
    assert session.write(block) == 480
    session.flush()
    session.close()
    assert out.stat().st_size > 480 * 8
    runtime.set_desired_state(WAV_SINK, DesiredState.DISABLED)
    assert children() - before == set()
    evidence.record("stress_sidecar_crash_loop_plugin", plugin=WAV_SINK, kills=len(killed), **stats.__dict__)
