"""Host grants: stored beside the desired states, checked by the manifest's permission rules,
handed to the lifecycle host with each activation, and part of the plugin signature."""

from __future__ import annotations

import json

import pytest

from stellatune.errors import HostGrantError, RuntimeStateError
from stellatune.manifest import Permissions
from stellatune.runtime import (
    STATE_FILE_NAME,
    DesiredState,
    DisableReason,
    TransitionDetail,
    TransitionTrigger,
    WasmPluginRuntime,
)

PID = "dev.test.src"


def test_grants_are_validated_stored_atomically_and_survive_a_new_runtime(plugins_dir, install, host):
    root = install(PID, kind="source")
    (root / "bin").mkdir()
    (root / "bin" / "helper").write_bytes(b"#!/bin/sh\n")
    with WasmPluginRuntime(plugins_dir, host) as rt:
        change = rt.grant(
            PID,
            {
                "http": ["127.0.0.1:46321", " 127.0.0.1:46321 "],
                "sidecars": ["bin/helper"],
                "tcp": ["media.local:9000"],
                "files": ["data"],
                "env": ["HOME"],
            },
        )
        assert change.changed == Permissions(
            files=("data",),
            http=("127.0.0.1:46321",),
            tcp=("media.local:9000",),
            sidecars=("bin/helper",),
            env=("HOME",),
        )
        assert change.unchanged.is_empty() and change.grants == change.changed
        again = rt.grant(PID, {"http": ["127.0.0.1:46321", "*.example.org"]})
        assert again.changed == Permissions(http=("*.example.org",))
        assert again.unchanged == Permissions(http=("127.0.0.1:46321",))

    doc = json.loads((plugins_dir / STATE_FILE_NAME).read_text())
    assert doc == {
        "schema_version": 1,
        "desired_states": {},
        "host_grants": {
            PID: {
                "files": ["data"],
                "http": ["127.0.0.1:46321", "*.example.org"],
                "tcp": ["media.local:9000"],
                "sidecars": ["bin/helper"],
                "env": ["HOME"],
            }
        },
    }
    assert sorted(p.name for p in plugins_dir.iterdir() if p.name.startswith(".")) == [STATE_FILE_NAME]

    with WasmPluginRuntime(plugins_dir, host) as rt:
        assert rt.host_grants(PID).http == ("127.0.0.1:46321", "*.example.org")
        rt.set_desired_state(PID, DesiredState.DISABLED)  # a desired-state save keeps the grants
        rt.set_desired_state(PID, DesiredState.ENABLED)
        assert set(rt.all_host_grants()) == {PID}
    assert WasmPluginRuntime(plugins_dir).host_grants(PID).sidecars == ("bin/helper",)


@pytest.mark.parametrize(
    "grants, field, rule",
    [
        ({"http": ["http://127.0.0.1:46321"]}, "http", "endpoint"),
        ({"http": ["127.0.0.1:99999"]}, "http", "endpoint"),
        ({"tcp": ["127.0.0.1"]}, "tcp", "endpoint"),
        ({"files": ["../music"]}, "files", "safe-path"),
        ({"files": ["/etc"]}, "files", "safe-path"),
        ({"sidecars": ["bin/not-there"]}, "sidecars", "exists"),
        ({"sidecars": ["/usr/bin/node"]}, "sidecars", "safe-path"),
        ({"env": ["NOT-A-NAME"]}, "env", "env-name"),
        ({"http": [" "]}, "http", "not-blank"),
        ({"http": "127.0.0.1"}, "http", "type"),
        ({"udp": ["127.0.0.1:53"]}, "udp", "unknown-key"),
    ],
)
def test_an_invalid_grant_is_refused_naming_the_field_and_rule(plugins_dir, install, grants, field, rule):
    install(PID, kind="source")
    with WasmPluginRuntime(plugins_dir) as rt:
        with pytest.raises(HostGrantError) as caught:
            rt.grant(PID, {"env": ["HOME"], **grants})
        assert [(p.json_path, p.rule) for p in caught.value.problems] == [(field, rule)]
        assert f"{field}: " in str(caught.value) and f"[{rule}]" in str(caught.value)
        assert rt.host_grants(PID).is_empty()  # nothing of a refused grant is stored
    assert not (plugins_dir / STATE_FILE_NAME).exists()


def test_revoke_removes_what_was_granted_and_reports_the_rest_as_no_ops(plugins_dir, install):
    install(PID, kind="source")
    with WasmPluginRuntime(plugins_dir) as rt:
        rt.grant(PID, {"http": ["a.example:80", "b.example"], "env": ["HOME"]})
        change = rt.revoke(PID, {"http": ["a.example:80", "never.example"], "tcp": ["x.example:1"]})
        assert change.changed == Permissions(http=("a.example:80",))
        assert change.unchanged == Permissions(http=("never.example",), tcp=("x.example:1",))
        assert change.grants == Permissions(http=("b.example",), env=("HOME",))
        rt.revoke(PID, Permissions(http=("b.example",), env=("HOME",)))
        assert rt.all_host_grants() == {}
        with pytest.raises(HostGrantError):
            rt.revoke(PID, {"tcp": ["no-port"]})
    assert "host_grants" not in json.loads((plugins_dir / STATE_FILE_NAME).read_text())


def test_grants_reach_the_host_at_activation_and_a_change_reloads_on_the_next_sync(plugins_dir, install, host):
    install(PID, kind="source")
    with WasmPluginRuntime(plugins_dir, host) as rt:
        rt.sync_plugins()
        assert host.active[PID].host_grants.is_empty()
        rt.grant(PID, {"http": ["127.0.0.1:8080"]})
        assert host.active[PID].host_grants.is_empty()  # nothing changes before the next activation
        host.take()

        report = rt.sync_plugins()
        (t,) = report.transitions
        assert (t.trigger, t.detail) == (TransitionTrigger.RELOAD_CHANGED, TransitionDetail.MANIFEST_CHANGED)
        assert host.take() == [("deactivate", PID, DisableReason.RELOAD), ("activate", PID, "1.0.0")]
        assert host.active[PID].host_grants == Permissions(http=("127.0.0.1:8080",))
        assert rt.sync_plugins().transitions == ()  # unchanged grants: kept

        rt.revoke(PID, {"http": ["127.0.0.1:8080"]})
        rt.sync_plugins()
        assert host.active[PID].host_grants.is_empty()

        # A disabled plugin gets its grants when it is enabled again.
        rt.set_desired_state(PID, DesiredState.DISABLED)
        rt.grant(PID, {"tcp": ["127.0.0.1:9"]})
        rt.set_desired_state(PID, DesiredState.ENABLED)
        rt.sync_plugins()
        assert host.active[PID].host_grants == Permissions(tcp=("127.0.0.1:9",))


def test_a_plugin_without_grants_keeps_its_signature(plugins_dir, install, host):
    install(PID, kind="source")
    with WasmPluginRuntime(plugins_dir, host) as rt:
        rt.sync_plugins()
        rt.grant(PID, {"env": ["HOME"]})
        rt.revoke(PID, {"env": ["HOME"]})
        assert rt.sync_plugins().transitions == ()


def test_clear_host_grants_forgets_them(plugins_dir, install):
    install(PID, kind="source")
    with WasmPluginRuntime(plugins_dir) as rt:
        rt.grant(PID, {"env": ["HOME"]})
        assert rt.clear_host_grants(PID) == Permissions(env=("HOME",))
        assert rt.clear_host_grants(PID).is_empty()
    assert WasmPluginRuntime(plugins_dir).all_host_grants() == {}


def test_a_broken_grant_in_the_state_file_makes_it_corrupt(plugins_dir):
    path = plugins_dir / STATE_FILE_NAME
    path.write_text(
        json.dumps({"schema_version": 1, "desired_states": {}, "host_grants": {PID: {"files": ["../../etc"]}}})
    )
    with pytest.raises(RuntimeStateError, match=r"corrupt.*files.*\.\.") as caught:
        WasmPluginRuntime(plugins_dir)
    assert PID in str(caught.value)
    path.write_text(json.dumps({"schema_version": 1, "desired_states": {}, "host_grants": []}))
    with pytest.raises(RuntimeStateError, match="corrupt"):
        WasmPluginRuntime(plugins_dir)
