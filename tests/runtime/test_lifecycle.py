"""Hook reasons and their order, unload, shutdown, re-entrancy and concurrent use."""

from __future__ import annotations

import threading

import pytest

from stellatune import package
from stellatune.errors import RuntimeStateError
from stellatune.runtime import (
    DesiredState,
    DisableReason,
    LifecycleFailures,
    LifecycleHost,
    NoopLifecycleHost,
    WasmPluginRuntime,
)


def test_hosts_satisfy_the_protocol(host):
    assert isinstance(NoopLifecycleHost(), LifecycleHost)
    assert isinstance(host, LifecycleHost)


def test_hook_reasons_in_order_over_a_plugin_lifetime(plugins_dir, install, host):
    install("dev.test.a", version="1")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()  # activate
    install("dev.test.a", version="2")
    rt.sync_plugins()  # reload
    rt.set_desired_state("dev.test.a", DesiredState.DISABLED)  # host-disable
    rt.set_desired_state("dev.test.a", DesiredState.ENABLED)
    rt.sync_plugins()  # activate
    assert rt.unload("dev.test.a") is True  # unload
    rt.sync_plugins()  # activate again: unload kept it enabled
    package.uninstall_by_id(plugins_dir, "dev.test.a")
    rt.sync_plugins()  # unload (removed from disk)
    assert rt.shutdown() == []
    assert host.events == [
        ("activate", "dev.test.a", "1"),
        ("deactivate", "dev.test.a", DisableReason.RELOAD),
        ("activate", "dev.test.a", "2"),
        ("deactivate", "dev.test.a", DisableReason.HOST_DISABLE),
        ("activate", "dev.test.a", "2"),
        ("deactivate", "dev.test.a", DisableReason.UNLOAD),
        ("activate", "dev.test.a", "2"),
        ("deactivate", "dev.test.a", DisableReason.UNLOAD),
        ("shutdown",),
    ]


def test_unload_of_inactive_plugin_returns_false(plugins_dir, host):
    rt = WasmPluginRuntime(plugins_dir, host)
    assert rt.unload("dev.test.nope") is False
    assert host.events == []


def test_failed_unload_keeps_plugin_active(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.fail_deactivate = lambda pid, reason: True
    with pytest.raises(Exception, match="cannot stop"):
        rt.unload("dev.test.a")
    assert rt.is_active("dev.test.a")
    assert "cannot stop (unload)" in rt.status("dev.test.a").last_error


def test_shutdown_deactivates_all_then_the_host_and_is_idempotent(plugins_dir, install, host):
    install("dev.test.b")
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    assert rt.shutdown() == ["dev.test.a", "dev.test.b"]
    assert host.take() == [
        ("deactivate", "dev.test.a", DisableReason.SHUTDOWN),
        ("deactivate", "dev.test.b", DisableReason.SHUTDOWN),
        ("shutdown",),
    ]
    assert rt.shutdown() == []
    assert host.take() == []
    assert rt.is_shut_down and rt.active_plugins() == [] and rt.decoder_candidates("mp3") == []
    for call in (
        rt.sync_plugins,
        lambda: rt.unload("dev.test.a"),
        lambda: rt.set_desired_state("dev.test.a", DesiredState.DISABLED),
        lambda: rt.replace_desired_states({}),
    ):
        with pytest.raises(RuntimeStateError, match="shut down"):
            call()


def test_shutdown_reports_failures_but_still_shuts_down(plugins_dir, install, host):
    install("dev.test.a")
    install("dev.test.b")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    host.fail_deactivate = lambda pid, reason: pid == "dev.test.a"
    with pytest.raises(LifecycleFailures) as caught:
        rt.shutdown()
    assert list(caught.value.failures) == ["dev.test.a"]
    assert host.take()[-1] == ("shutdown",)
    assert rt.is_shut_down and rt.active_plugins() == []


def test_context_manager_shuts_down(plugins_dir, install, host):
    install("dev.test.a")
    with WasmPluginRuntime(plugins_dir, host) as rt:
        rt.sync_plugins()
    assert host.events[-2:] == [("deactivate", "dev.test.a", DisableReason.SHUTDOWN), ("shutdown",)]


class ReentrantHost(NoopLifecycleHost):
    """Reads the runtime from inside activate (allowed) and tries an operation (refused)."""

    def __init__(self) -> None:
        self.runtime: WasmPluginRuntime | None = None
        self.seen_capability = None
        self.reentry_error: Exception | None = None

    def activate(self, plugin, capabilities):
        assert self.runtime is not None
        self.seen_capability = self.runtime.capability_of(plugin.id, "dsp", "main")
        try:
            self.runtime.unload(plugin.id)
        except RuntimeStateError as exc:
            self.reentry_error = exc


def test_hooks_may_read_but_not_reenter(plugins_dir, install):
    install("dev.test.a")
    reentrant = ReentrantHost()
    rt = WasmPluginRuntime(plugins_dir, reentrant)
    reentrant.runtime = rt
    report = rt.sync_plugins()
    assert report.ok and rt.is_active("dev.test.a")
    # Capabilities become visible once activate has succeeded, not during it.
    assert reentrant.seen_capability is None
    assert "lifecycle hook" in str(reentrant.reentry_error)


class SlowHost(NoopLifecycleHost):
    """Blocks in activate until released, to show readers are not held up by host calls."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def activate(self, plugin, capabilities):
        self.entered.set()
        assert self.release.wait(10)


def test_readers_do_not_wait_for_host_calls(plugins_dir, install):
    install("dev.test.a")
    slow = SlowHost()
    rt = WasmPluginRuntime(plugins_dir, slow)
    syncing = threading.Thread(target=rt.sync_plugins)
    syncing.start()
    assert slow.entered.wait(10)
    # The sync thread is inside the host: reads answer from another thread meanwhile.
    assert rt.active_plugins() == [] and rt.status("dev.test.a").plugin_id == "dev.test.a"
    slow.release.set()
    syncing.join(10)
    assert rt.is_active("dev.test.a")


def test_concurrent_operations_keep_the_registry_consistent(plugins_dir, install, host):
    for i in range(4):
        install(f"dev.test.p{i}")
    rt = WasmPluginRuntime(plugins_dir, host)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for k in range(15):
                pid = f"dev.test.p{(n + k) % 4}"
                rt.set_desired_state(pid, DesiredState.DISABLED if k % 2 else DesiredState.ENABLED)
                rt.sync_plugins()
                for cap in rt.capabilities_of(pid):
                    assert cap.plugin_id == pid
        except BaseException as exc:  # noqa: BLE001 (surfaced below; a thread's exception is otherwise lost)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    final = rt.sync_plugins()
    desired = rt.desired_states()
    expected = sorted(f"dev.test.p{i}" for i in range(4) if f"dev.test.p{i}" not in desired)
    assert [p.id for p in final.active_plugins] == expected
    assert sorted(host.active) == expected  # the host agrees with the runtime
