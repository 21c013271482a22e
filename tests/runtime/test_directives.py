"""The original's plugin directives: a typed value, a thread-safe subscriber registry, and the
runtime emitting ``Rebuild`` / ``Destroy`` where the original did (reference §2.3 step 5, §2.4)."""

from __future__ import annotations

import logging
import shutil
import threading

import pytest

from stellatune.runtime import (
    DesiredState,
    DirectiveHub,
    DirectiveKind,
    DisableReason,
    PluginDirective,
    WasmPluginRuntime,
)

A, B = "dev.test.a", "dev.test.b"
REBUILD = PluginDirective.rebuild()


def destroy(reason: str) -> PluginDirective:
    return PluginDirective.destroy(DisableReason(reason))


# --- the value --------------------------------------------------------------------------------


def test_directive_kinds_and_their_json_are_the_originals():
    assert [k.value for k in DirectiveKind] == ["destroy", "rebuild", "update_config"]
    assert destroy("host-disable").to_json() == {"kind": "destroy", "reason": "host_disable"}
    assert REBUILD.to_json() == {"kind": "rebuild"}
    update = PluginDirective.update_config({"gain_db": -3})
    assert update.to_json() == {"kind": "update_config", "config_json": '{"gain_db":-3}'}
    for directive in (destroy("shutdown"), REBUILD, update, PluginDirective.update_config("[1]")):
        assert PluginDirective.from_json(directive.to_json()) == directive
    assert PluginDirective.destroy("host_disable").reason is DisableReason.HOST_DISABLE


@pytest.mark.parametrize(
    "make",
    [
        lambda: PluginDirective(DirectiveKind.DESTROY),
        lambda: PluginDirective(DirectiveKind.REBUILD, reason=DisableReason.UNLOAD),
        lambda: PluginDirective(DirectiveKind.UPDATE_CONFIG),
        lambda: PluginDirective.update_config("{not json"),
        lambda: PluginDirective(DirectiveKind.REBUILD, config_json="{}"),
        lambda: PluginDirective.destroy("sleepy"),
        lambda: PluginDirective("explode"),
    ],
)
def test_malformed_directives_are_refused(make):
    with pytest.raises(ValueError):
        make()


# --- the registry -----------------------------------------------------------------------------


def test_subscribers_get_their_plugins_directives_until_they_unsubscribe():
    hub, seen = DirectiveHub(), []
    off_a = hub.subscribe(A, lambda pid, d: seen.append(("first", pid, d)))
    hub.subscribe(A, lambda pid, d: seen.append(("second", pid, d)))
    hub.subscribe(B, lambda pid, d: seen.append(("b", pid, d)))
    assert hub.notify(A, REBUILD) == 2
    assert seen == [("first", A, REBUILD), ("second", A, REBUILD)]
    off_a()
    off_a()  # idempotent
    seen.clear()
    assert hub.notify(A, REBUILD) == 1 and seen == [("second", A, REBUILD)]
    assert hub.notify("dev.test.nobody", REBUILD) == 0
    with pytest.raises(TypeError):
        hub.notify(A, {"kind": "rebuild"})  # type: ignore[arg-type]


def test_a_failing_callback_is_logged_and_does_not_stop_the_others(caplog):
    hub, seen = DirectiveHub(), []

    def broken(pid, directive):
        raise RuntimeError("listener bug")

    hub.subscribe(A, broken)
    hub.subscribe(A, lambda pid, d: seen.append(d))
    with caplog.at_level(logging.ERROR, logger="stellatune.runtime.directives"):
        assert hub.notify(A, REBUILD) == 1
    assert seen == [REBUILD]
    assert "listener bug" in caplog.text


def test_callbacks_run_on_the_notifying_thread_and_the_registry_is_thread_safe():
    hub = DirectiveHub()
    threads_seen: list[int] = []
    hub.subscribe(A, lambda pid, d: threads_seen.append(threading.get_ident()))
    errors: list[BaseException] = []

    def churn():
        try:
            for _ in range(300):
                off = hub.subscribe(A, lambda pid, d: None)
                hub.notify(B, REBUILD)
                off()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    workers = [threading.Thread(target=churn) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and hub.subscriber_count(A) == 1
    done = []
    notifier = threading.Thread(target=lambda: done.append((threading.get_ident(), hub.notify(A, REBUILD))))
    notifier.start()
    notifier.join()
    assert threads_seen == [done[0][0]] and done[0][1] == 1


# --- the runtime emits them ---------------------------------------------------------------------


@pytest.fixture
def recorded(plugins_dir, install, host):
    install(A)
    install(B)
    rt = WasmPluginRuntime(plugins_dir, host)
    seen: list[tuple[str, PluginDirective]] = []
    for pid in (A, B):
        rt.subscribe_plugin(pid, lambda p, d: seen.append((p, d)))
    yield rt, seen
    rt.shutdown()


def test_sync_sends_rebuild_when_a_plugin_becomes_active_and_destroy_when_it_goes(recorded, plugins_dir, install):
    rt, seen = recorded
    rt.sync_plugins()
    assert seen == [(A, REBUILD), (B, REBUILD)]
    seen.clear()
    assert rt.sync_plugins() and seen == []  # nothing changed: nothing sent

    install(A, version="2.0.0")
    rt.sync_plugins()
    assert seen == [(A, REBUILD)]  # reloaded
    seen.clear()

    rt.replace_desired_states({B: DesiredState.DISABLED})
    assert seen == [(B, destroy("host-disable"))]
    seen.clear()
    rt.sync_plugins()
    assert seen == []  # already inactive: skipped, nothing sent

    shutil.rmtree(plugins_dir / A)
    rt.sync_plugins()
    assert seen == [(A, destroy("unload"))]


def test_disable_unload_and_shutdown_send_destroy_with_their_reason(recorded):
    rt, seen = recorded
    rt.sync_plugins()
    seen.clear()
    rt.set_desired_state(A, DesiredState.DISABLED)
    assert seen == [(A, destroy("host-disable"))]
    rt.set_desired_state(A, DesiredState.DISABLED)  # not active any more: nothing to destroy
    assert rt.unload(B) is True and rt.unload(B) is False
    assert seen == [(A, destroy("host-disable")), (B, destroy("unload"))]
    rt.set_desired_state(A, DesiredState.ENABLED)
    rt.sync_plugins()
    seen.clear()
    rt.shutdown()
    assert seen == [(A, destroy("shutdown")), (B, destroy("shutdown"))]


def test_a_failed_activation_sends_nothing(recorded, host):
    rt, seen = recorded
    host.fail_activate = lambda info: info.id == A
    rt.sync_plugins()
    assert seen == [(B, REBUILD)]


def test_listeners_run_after_the_operation_so_they_may_call_the_runtime(recorded):
    rt, _seen = recorded
    answers = []

    def resync(pid, directive):
        if directive.kind is DirectiveKind.DESTROY:
            answers.append((rt.is_active(pid), rt.sync_plugins().revision))

    rt.subscribe_plugin(A, resync)
    rt.sync_plugins()
    rt.set_desired_state(A, DesiredState.DISABLED)
    assert answers == [(False, 2)]


def test_notify_plugin_reaches_subscribers_and_update_config_carries_its_payload(recorded):
    rt, seen = recorded
    assert rt.notify_plugin(A, REBUILD) == 1
    assert rt.notify_plugin_update_config(B, '{"level": "high"}') == 1
    assert seen == [(A, REBUILD), (B, PluginDirective.update_config('{"level": "high"}'))]
    assert seen[1][1].config_json == '{"level": "high"}'
    off = rt.subscribe_plugin(A, lambda p, d: seen.append(("extra", d)))
    off()
    assert rt.notify_plugin(A, REBUILD) == 1
