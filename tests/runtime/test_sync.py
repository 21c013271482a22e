"""sync_plugins: every transition of reference §2.3, the report shape, and the host calls made."""

from __future__ import annotations

import json
import shutil

import pytest

from stellatune import package
from stellatune.runtime import (
    DesiredState,
    DisableReason,
    LifecycleState,
    TransitionDetail,
    TransitionOutcome,
    TransitionTrigger,
    WasmPluginRuntime,
)

A = LifecycleState.ACTIVE
D = LifecycleState.DISABLED
F = LifecycleState.FAILED
M = LifecycleState.MISSING


def rows(report):
    """Transitions as comparable tuples."""
    return [
        (t.plugin_id, t.from_state, t.to_state, t.trigger.value, t.outcome.value, t.detail.value)
        for t in report.transitions
    ]


def test_new_plugin_is_activated_and_reported(plugins_dir, install, host):
    root = install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    report = rt.sync_plugins()

    assert report.revision == 1
    assert report.discovered_plugins == ("dev.test.a",)
    assert [p.id for p in report.active_plugins] == ["dev.test.a"]
    assert report.active_plugins[0].root_dir == root
    assert report.active_plugins[0].manifest_path == root / "plugin.json"
    assert rows(report) == [("dev.test.a", M, A, "load_new", "applied", "new")]
    status = report.status_of("dev.test.a")
    assert (status.desired_state, status.lifecycle_state, status.last_error) == (DesiredState.ENABLED, A, None)
    assert report.errors == () and report.ok
    assert host.take() == [("activate", "dev.test.a", "1.0.0")]
    t = report.timings_ms
    assert t.discover > 0 and t.apply > 0 and t.total >= t.discover + t.apply


def test_unchanged_plugin_is_kept_without_host_calls(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    report = rt.sync_plugins()
    assert report.revision == 2
    assert report.transitions == ()
    assert [p.id for p in report.active_plugins] == ["dev.test.a"]
    assert host.take() == []


def test_manifest_change_reloads_with_reload_reason(plugins_dir, install, host):
    install("dev.test.a", version="1.0.0")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    install("dev.test.a", version="2.0.0")
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, A, "reload_changed", "applied", "manifest_changed")]
    assert host.take() == [
        ("deactivate", "dev.test.a", DisableReason.RELOAD),
        ("activate", "dev.test.a", "2.0.0"),
    ]
    assert report.active_plugins[0].version == "2.0.0"


def test_replaced_wasm_bytes_under_same_manifest_trigger_reload(plugins_dir, install, host):
    root = install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    (root / "wasm" / "main.wasm").write_bytes(b"\0asm other bytes")
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, A, "reload_changed", "applied", "manifest_changed")]
    assert host.take() == [
        ("deactivate", "dev.test.a", DisableReason.RELOAD),
        ("activate", "dev.test.a", "1.0.0"),
    ]


def test_disabled_inactive_plugin_is_skipped_on_every_sync(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.set_desired_state("dev.test.a", DesiredState.DISABLED)
    first = rt.sync_plugins()
    second = rt.sync_plugins()
    assert rows(first) == [("dev.test.a", M, D, "disable_requested", "skipped", "already_inactive")]
    assert rows(second) == [("dev.test.a", D, D, "disable_requested", "skipped", "already_inactive")]
    assert second.status_of("dev.test.a").lifecycle_state is D
    assert second.active_plugins == ()
    assert host.take() == []


def test_disabling_an_active_plugin_deactivates_it_at_once(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    rt.set_desired_state("dev.test.a", DesiredState.DISABLED)
    assert host.take() == [("deactivate", "dev.test.a", DisableReason.HOST_DISABLE)]
    assert not rt.is_active("dev.test.a")
    assert rt.capabilities_of("dev.test.a") == ()
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", D, D, "disable_requested", "skipped", "already_inactive")]


def test_sync_disables_a_plugin_whose_earlier_deactivation_failed(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.fail_deactivate = lambda pid, reason: True
    with pytest.raises(Exception, match="cannot stop"):
        rt.set_desired_state("dev.test.a", DesiredState.DISABLED)
    # The wish is recorded, the plugin still runs, and its status says why.
    assert rt.desired_state("dev.test.a") is DesiredState.DISABLED
    assert rt.is_active("dev.test.a")
    assert "cannot stop" in rt.status("dev.test.a").last_error

    failed = rt.sync_plugins()
    assert rows(failed) == [("dev.test.a", A, F, "disable_requested", "failed", "uninstall_failed")]
    assert failed.status_of("dev.test.a").lifecycle_state is A
    assert any("cannot stop" in e for e in failed.errors)

    host.fail_deactivate = lambda pid, reason: False
    host.take()
    applied = rt.sync_plugins()
    assert rows(applied) == [("dev.test.a", A, D, "disable_requested", "applied", "disabled")]
    assert host.take() == [("deactivate", "dev.test.a", DisableReason.HOST_DISABLE)]
    assert applied.status_of("dev.test.a").last_error is None


def test_reenabled_plugin_is_loaded_again(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.set_desired_state("dev.test.a", DesiredState.DISABLED)
    rt.sync_plugins()
    rt.set_desired_state("dev.test.a", DesiredState.ENABLED)
    assert host.take() == []  # enabling only records the wish
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", D, A, "load_new", "applied", "new")]
    assert host.take() == [("activate", "dev.test.a", "1.0.0")]


def test_plugin_removed_from_disk_is_unloaded(plugins_dir, install, host):
    install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    package.uninstall_by_id(plugins_dir, "dev.test.a")
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, M, "removed_from_disk", "applied", "removed")]
    assert host.take() == [("deactivate", "dev.test.a", DisableReason.UNLOAD)]
    assert report.discovered_plugins == () and report.active_plugins == ()
    assert report.status_of("dev.test.a").lifecycle_state is M


def test_failed_unload_of_removed_plugin_keeps_it_active(plugins_dir, install, host):
    root = install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    shutil.rmtree(root)
    host.fail_deactivate = lambda pid, reason: reason is DisableReason.UNLOAD
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, F, "removed_from_disk", "failed", "uninstall_failed")]
    assert [p.id for p in report.active_plugins] == ["dev.test.a"]
    status = report.status_of("dev.test.a")
    assert status.lifecycle_state is A and "cannot stop (unload)" in status.last_error


def test_activation_failure_on_new_plugin_is_reported_and_retried(plugins_dir, install, host):
    install("dev.test.a")
    install("dev.test.b")
    rt = WasmPluginRuntime(plugins_dir, host)
    host.fail_activate = lambda info: info.id == "dev.test.a"
    report = rt.sync_plugins()
    assert rows(report) == [
        ("dev.test.a", M, F, "load_new", "failed", "install_failed"),
        ("dev.test.b", M, A, "load_new", "applied", "new"),
    ]
    assert [p.id for p in report.active_plugins] == ["dev.test.b"]
    status = report.status_of("dev.test.a")
    assert status.lifecycle_state is F and "refused by the test host" in status.last_error
    assert len(report.errors) == 1 and report.errors[0].startswith("dev.test.a: activate failed: ")
    assert rt.capabilities_of("dev.test.a") == ()

    host.fail_activate = lambda info: False
    retried = rt.sync_plugins()
    assert rows(retried) == [("dev.test.a", F, A, "load_new", "applied", "new")]
    assert retried.status_of("dev.test.a").last_error is None


def test_failed_reload_keeps_previous_version_active_with_error(plugins_dir, install, host):
    install("dev.test.a", version="1.0.0")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    install("dev.test.a", version="2.0.0")
    host.fail_activate = lambda info: info.version == "2.0.0"
    report = rt.sync_plugins()

    assert rows(report) == [("dev.test.a", A, F, "reload_changed", "failed", "install_failed")]
    assert host.take() == [
        ("deactivate", "dev.test.a", DisableReason.RELOAD),
        ("activate", "dev.test.a", "2.0.0"),
        ("activate", "dev.test.a", "1.0.0"),  # the previous version put back
    ]
    assert [p.version for p in report.active_plugins] == ["1.0.0"]
    status = report.status_of("dev.test.a")
    assert status.lifecycle_state is A and "refused by the test host" in status.last_error

    # The signature stays the old one, so every sync retries the update until it works.
    host.fail_activate = lambda info: False
    retried = rt.sync_plugins()
    assert rows(retried) == [("dev.test.a", A, A, "reload_changed", "applied", "manifest_changed")]
    assert [p.version for p in retried.active_plugins] == ["2.0.0"]


def test_failed_deactivation_before_reload_keeps_old_version(plugins_dir, install, host):
    install("dev.test.a", version="1.0.0")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    install("dev.test.a", version="2.0.0")
    host.fail_deactivate = lambda pid, reason: True
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, F, "reload_changed", "failed", "uninstall_failed")]
    assert host.take() == [("deactivate", "dev.test.a", DisableReason.RELOAD)]
    assert [p.version for p in report.active_plugins] == ["1.0.0"]


def test_transitions_sort_by_plugin_then_detail(plugins_dir, install, host):
    for pid in ("dev.test.c", "dev.test.a", "dev.test.b"):
        install(pid)
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.set_desired_state("dev.test.b", DesiredState.DISABLED)
    report = rt.sync_plugins()
    assert [(t.plugin_id, t.detail.value) for t in report.transitions] == [
        ("dev.test.a", "new"),
        ("dev.test.b", "already_inactive"),
        ("dev.test.c", "new"),
    ]
    assert [s.plugin_id for s in report.plugin_statuses] == ["dev.test.a", "dev.test.b", "dev.test.c"]


def test_broken_installed_manifest_is_a_warning_and_unloads_the_plugin(plugins_dir, install, host):
    root = install("dev.test.a")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    (root / "plugin.json").write_text("{not json")
    report = rt.sync_plugins()
    assert report.warnings and any("plugin.json" in w or "dev.test.a" in w for w in report.warnings)
    assert rows(report) == [("dev.test.a", A, M, "removed_from_disk", "applied", "removed")]


def test_empty_or_missing_plugins_dir_syncs_to_nothing(tmp_path, host):
    rt = WasmPluginRuntime(tmp_path / "does-not-exist", host)
    report = rt.sync_plugins()
    assert (report.discovered_plugins, report.active_plugins, report.transitions) == ((), (), ())


def test_report_json_is_stable_and_serialisable(plugins_dir, install, host):
    install("dev.test.a")
    report = WasmPluginRuntime(plugins_dir, host).sync_plugins()
    doc = json.loads(json.dumps(report.to_json()))
    assert list(doc) == [
        "revision",
        "discovered_plugins",
        "active_plugins",
        "plugin_statuses",
        "transitions",
        "errors",
        "warnings",
        "timings_ms",
    ]
    assert list(doc["active_plugins"][0]) == ["id", "name", "version", "root_dir", "manifest_path", "component_count"]
    assert doc["plugin_statuses"] == [
        {"plugin_id": "dev.test.a", "desired_state": "enabled", "lifecycle_state": "active", "last_error": None}
    ]
    assert doc["transitions"] == [
        {
            "plugin_id": "dev.test.a",
            "from": "missing",
            "to": "active",
            "trigger": "load_new",
            "outcome": "applied",
            "detail": "new",
        }
    ]
    assert set(doc["timings_ms"]) == {"discover", "apply", "total"}
    assert all(isinstance(v, float) and v > 0 for v in doc["timings_ms"].values())
    assert [e.value for e in TransitionTrigger] == [
        "load_new",
        "reload_changed",
        "disable_requested",
        "removed_from_disk",
    ]
    assert [e.value for e in TransitionOutcome] == ["applied", "skipped", "failed"]
    assert [e.value for e in TransitionDetail] == [
        "new",
        "manifest_changed",
        "disabled",
        "already_inactive",
        "removed",
        "install_failed",
        "uninstall_failed",
    ]


def test_host_prepare_runs_before_a_reload_only(plugins_dir, install, preparing_host):
    host = preparing_host
    install("dev.test.a", version="1.0.0")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    assert host.take() == [("activate", "dev.test.a", "1.0.0")]  # nothing to protect yet
    install("dev.test.a", version="2.0.0")
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, A, "reload_changed", "applied", "manifest_changed")]
    assert host.take() == [
        ("prepare", "dev.test.a", "2.0.0"),
        ("deactivate", "dev.test.a", DisableReason.RELOAD),
        ("activate", "dev.test.a", "2.0.0"),
    ]


def test_failed_prepare_leaves_the_running_version_untouched(plugins_dir, install, preparing_host):
    host = preparing_host
    install("dev.test.a", version="1.0.0")
    rt = WasmPluginRuntime(plugins_dir, host)
    rt.sync_plugins()
    host.take()
    install("dev.test.a", version="2.0.0")
    host.fail_prepare = lambda info: info.version == "2.0.0"
    report = rt.sync_plugins()
    assert rows(report) == [("dev.test.a", A, F, "reload_changed", "failed", "install_failed")]
    assert host.take() == [("prepare", "dev.test.a", "2.0.0")]  # no deactivate, no churn
    assert [p.version for p in report.active_plugins] == ["1.0.0"]
    status = report.status_of("dev.test.a")
    assert status.lifecycle_state is A and status.last_error.startswith("prepare failed: ")
