"""Desired states persist in <plugins_dir>/.stellatune-state.json and survive a new runtime."""

from __future__ import annotations

import json

import pytest

from stellatune.errors import RuntimeStateError
from stellatune.runtime import STATE_FILE_NAME, DesiredState, LifecycleFailures, WasmPluginRuntime


def test_desired_states_survive_a_new_runtime_instance(plugins_dir, install, host):
    install("dev.test.a")
    install("dev.test.b")
    with WasmPluginRuntime(plugins_dir, host) as rt:
        rt.set_desired_state("dev.test.a", DesiredState.DISABLED)

    with WasmPluginRuntime(plugins_dir, host) as again:
        assert again.desired_state("dev.test.a") is DesiredState.DISABLED
        assert again.desired_state("dev.test.b") is DesiredState.ENABLED
        report = again.sync_plugins()
        assert [p.id for p in report.active_plugins] == ["dev.test.b"]
        again.set_desired_state("dev.test.a", DesiredState.ENABLED)

    assert WasmPluginRuntime(plugins_dir).desired_states() == {}


def test_state_file_format_and_no_temp_files_left(plugins_dir):
    rt = WasmPluginRuntime(plugins_dir)
    rt.set_desired_state("dev.test.z", DesiredState.DISABLED)
    rt.set_desired_state("dev.test.a", DesiredState.DISABLED)
    doc = json.loads((plugins_dir / STATE_FILE_NAME).read_text())
    assert doc == {"schema_version": 1, "desired_states": {"dev.test.a": "disabled", "dev.test.z": "disabled"}}
    assert sorted(p.name for p in plugins_dir.iterdir()) == [STATE_FILE_NAME]


def test_corrupt_state_file_is_a_clear_error_and_is_left_alone(plugins_dir):
    path = plugins_dir / STATE_FILE_NAME
    path.write_text('{"schema_version": 1, "desired_states": {"x": "sleepy"}}')
    with pytest.raises(RuntimeStateError, match=r"corrupt.*fix or delete"):
        WasmPluginRuntime(plugins_dir)
    assert "sleepy" in path.read_text()
    path.write_text("not json")
    with pytest.raises(RuntimeStateError, match=STATE_FILE_NAME):
        WasmPluginRuntime(plugins_dir)


def test_unwritable_state_changes_nothing(tmp_path):
    plugins = tmp_path / "plugins"
    rt = WasmPluginRuntime(plugins)
    plugins.write_text("a file where the plugins dir should be")
    with pytest.raises(RuntimeStateError, match="cannot write"):
        rt.set_desired_state("dev.test.a", DesiredState.DISABLED)
    assert rt.desired_state("dev.test.a") is DesiredState.ENABLED


def test_replace_desired_states(plugins_dir, install, host):
    for pid in ("dev.test.a", "dev.test.b", "dev.test.c"):
        install(pid)
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.set_desired_state("dev.test.c", DesiredState.DISABLED)
    rt.sync_plugins()
    host.take()
    rt.replace_desired_states({"dev.test.a": DesiredState.DISABLED, "dev.test.b": DesiredState.ENABLED})
    # c is no longer listed, so it counts as enabled again; only explicit disables are stored.
    assert rt.desired_states() == {"dev.test.a": DesiredState.DISABLED}
    assert [e[:2] for e in host.take()] == [("deactivate", "dev.test.a")]
    assert WasmPluginRuntime(plugins_dir).desired_states() == {"dev.test.a": DesiredState.DISABLED}


def test_replace_desired_states_reports_every_failure(plugins_dir, install, host):
    for pid in ("dev.test.a", "dev.test.b", "dev.test.c"):
        install(pid)
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.fail_deactivate = lambda pid, reason: pid != "dev.test.b"
    with pytest.raises(LifecycleFailures) as caught:
        rt.replace_desired_states({pid: DesiredState.DISABLED for pid in ("dev.test.a", "dev.test.b", "dev.test.c")})
    assert sorted(caught.value.failures) == ["dev.test.a", "dev.test.c"]
    assert "dev.test.a" in str(caught.value) and "dev.test.c" in str(caught.value)
    assert [p.id for p in rt.active_plugins()] == ["dev.test.a", "dev.test.c"]
    assert len(rt.desired_states()) == 3


def test_blank_plugin_id_is_refused(plugins_dir):
    rt = WasmPluginRuntime(plugins_dir)
    with pytest.raises(RuntimeStateError, match="non-blank"):
        rt.set_desired_state("  ", DesiredState.DISABLED)
    with pytest.raises(ValueError):
        rt.set_desired_state("dev.test.a", "sleepy")
