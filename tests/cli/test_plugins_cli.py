"""``stellatune plugins ...`` end to end on a tmp plugins dir: outputs, exit codes, JSON shapes."""

from __future__ import annotations

import json
import shutil
import sys
import types
import zipfile

from stellatune import cli as cli_module
from stellatune.cli import EXIT_FAILURE, EXIT_INVALID, EXIT_NOT_INSTALLED, EXIT_OK, EXIT_PACKAGE
from stellatune.cli import plugins as plugins_module
from stellatune.runtime import STATE_FILE_NAME

BAD_MANIFEST = {
    "schema_version": 1,
    "id": "dev.test.bad",
    "name": "  ",
    "version": "1",
    "api_version": 1,
    "components": [
        {
            "id": "m",
            "path": "wasm/missing.wasm",
            "world": "stellatune:plugin/dsp-plugin@0.1.0",
            "abilities": [{"kind": "equaliser", "type_id": "gain"}],
        }
    ],
}
BAD_PROBLEMS = [
    ("name", "[not-blank]"),
    ("components[0].path", "[exists]"),
    ("components[0].abilities[0].kind", "[kind]"),
]


def installed_dirs(plugins_dir):
    """Plugin directories present (dot-entries such as the state file and staging excluded)."""
    if not plugins_dir.exists():
        return []
    return sorted(p.name for p in plugins_dir.iterdir() if not p.name.startswith("."))


# --- validate ---------------------------------------------------------------------------------


def test_validate_accepts_file_dir_and_zip(cli, plugin_src, make_zip, plugins_dir):
    archive = make_zip(plugin_src, "gain.zip", prefix="pkg/")
    for target in (plugin_src / "plugin.json", plugin_src, archive):
        result = cli("plugins", "validate", str(target))
        assert (result.code, result.out) == (EXIT_OK, "valid: dev.test.gain 1.0.0 (1 component(s))\n")
    assert not plugins_dir.exists()  # validating writes nothing


def test_validate_lists_every_problem_with_path_and_rule(cli, make_plugin):
    bad = make_plugin("dev.test.bad", manifest=BAD_MANIFEST)
    result = cli("plugins", "validate", str(bad))
    assert result.code == EXIT_INVALID and result.out == ""
    lines = result.err.splitlines()
    assert lines[0].startswith("error: ") and "3 problem(s)" in lines[0]
    assert len(lines) == 4
    for line, (json_path, rule) in zip(lines[1:], BAD_PROBLEMS, strict=True):
        assert line.startswith(f"  {json_path}: ") and line.endswith(rule)
    assert "Traceback" not in result.err


def test_validate_invalid_zip_lists_problems(cli, make_plugin, make_zip):
    bad = make_plugin("dev.test.bad", manifest=BAD_MANIFEST)
    result = cli("plugins", "validate", str(make_zip(bad, "bad.zip")))
    assert result.code == EXIT_INVALID
    for json_path, rule in BAD_PROBLEMS:
        assert any(f"plugin.json: {json_path}: " in line and line.endswith(rule) for line in result.err.splitlines())


def test_validate_missing_file(cli, tmp_path):
    result = cli("plugins", "validate", str(tmp_path / "nope.json"))
    assert result.code == EXIT_INVALID and "cannot read" in result.err


# --- install ----------------------------------------------------------------------------------


def test_install_dir_prints_id_and_syncs(cli, plugin_src, plugins_dir):
    result = cli("plugins", "install", str(plugin_src))
    assert (result.code, result.out, result.err) == (EXIT_OK, "dev.test.gain\n", "")
    assert installed_dirs(plugins_dir) == ["dev.test.gain"]
    listed = cli("plugins", "list", "--json").json()["plugins"]
    assert [(p["id"], p["desired_state"], p["install_state"]) for p in listed] == [
        ("dev.test.gain", "enabled", "installed")
    ]


def test_install_zip(cli, plugin_src, make_zip, plugins_dir):
    archive = make_zip(plugin_src, "GAIN.ZIP", prefix="nested/dir/")
    result = cli("plugins", "install", str(archive))
    assert (result.code, result.out) == (EXIT_OK, "dev.test.gain\n")
    rel = "wasm/gain.component.wasm"
    assert (plugins_dir / "dev.test.gain" / rel).read_bytes() == (plugin_src / rel).read_bytes()


def test_install_invalid_writes_nothing(cli, make_plugin, plugins_dir):
    bad = make_plugin("dev.test.bad", manifest=BAD_MANIFEST)
    result = cli("plugins", "install", str(bad))
    assert result.code == EXIT_INVALID and result.out == ""
    assert "[not-blank]" in result.err
    assert installed_dirs(plugins_dir) == []


def test_install_unsafe_zip_is_refused(cli, plugin_src, make_zip, tmp_path, plugins_dir):
    archive = make_zip(plugin_src, "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../escaped.txt", b"gotcha")
    result = cli("plugins", "install", str(archive))
    assert result.code == EXIT_PACKAGE and result.out == ""
    assert result.err.startswith("error: ") and len(result.err.splitlines()) == 1
    assert installed_dirs(plugins_dir) == []
    assert not (tmp_path / "escaped.txt").exists() and not (plugins_dir.parent / "escaped.txt").exists()


def test_install_unsupported_artifact(cli, tmp_path, plugins_dir):
    other = tmp_path / "plugin.tar"
    other.write_bytes(b"not an archive")
    result = cli("plugins", "install", str(other))
    assert result.code == EXIT_PACKAGE and "error: " in result.err
    assert installed_dirs(plugins_dir) == []


# --- list, enable, disable, uninstall ---------------------------------------------------------


def test_list_human_and_json(cli, plugin_src, make_plugin):
    assert cli("plugins", "list").out.startswith("no plugins installed")
    assert cli("plugins", "list", "--json").json() == {"plugins": []}
    cli("plugins", "install", str(plugin_src))
    cli("plugins", "install", str(make_plugin("dev.test.other", version="2b")))
    human = cli("plugins", "list").out.splitlines()
    assert human[0].split() == ["ID", "VERSION", "DESIRED", "INSTALL", "NAME"]
    assert [line.split()[:4] for line in human[1:]] == [
        ["dev.test.gain", "1.0.0", "enabled", "installed"],
        ["dev.test.other", "2b", "enabled", "installed"],
    ]
    row = cli("plugins", "list", "--json").json()["plugins"][0]
    assert list(row) == [
        "id",
        "name",
        "version",
        "root_dir",
        "manifest_path",
        "component_count",
        "install_state",
        "uninstall_retry_count",
        "uninstall_last_error",
        "desired_state",
    ]


def test_disable_enable_round_trip(cli, plugin_src, plugins_dir):
    cli("plugins", "install", str(plugin_src))
    result = cli("plugins", "disable", "dev.test.gain")
    assert (result.code, result.out) == (EXIT_OK, "disabled dev.test.gain\n")
    state = json.loads((plugins_dir / STATE_FILE_NAME).read_text())
    assert state["desired_states"] == {"dev.test.gain": "disabled"}
    report = cli("plugins", "sync", "--json").json()
    assert report["active_plugins"] == []
    assert [(t["trigger"], t["outcome"], t["detail"]) for t in report["transitions"]] == [
        ("disable_requested", "skipped", "already_inactive")
    ]
    assert cli("plugins", "list", "--json").json()["plugins"][0]["desired_state"] == "disabled"

    result = cli("plugins", "enable", "dev.test.gain")
    assert (result.code, result.out) == (EXIT_OK, "enabled dev.test.gain\n")
    report = cli("plugins", "sync", "--json").json()
    assert [p["id"] for p in report["active_plugins"]] == ["dev.test.gain"]


def test_unknown_plugin_id_exits_not_installed(cli, plugins_dir):
    for command in ("enable", "disable", "uninstall"):
        result = cli("plugins", command, "dev.test.nope")
        assert result.code == EXIT_NOT_INSTALLED, command
        assert "dev.test.nope" in result.err and "not installed" in result.err
    assert not (plugins_dir / STATE_FILE_NAME).exists()  # a refused enable/disable records nothing


def test_uninstall_removes_files_and_forgets_state(cli, plugin_src, plugins_dir):
    cli("plugins", "install", str(plugin_src))
    cli("plugins", "disable", "dev.test.gain")
    result = cli("plugins", "uninstall", "dev.test.gain")
    assert (result.code, result.out) == (EXIT_OK, "uninstalled dev.test.gain\n")
    assert installed_dirs(plugins_dir) == []
    assert json.loads((plugins_dir / STATE_FILE_NAME).read_text())["desired_states"] == {}
    assert cli("plugins", "uninstall", "dev.test.gain").code == EXIT_NOT_INSTALLED


# --- sync -------------------------------------------------------------------------------------


def test_sync_json_shape(cli, plugin_src):
    cli("plugins", "install", str(plugin_src))
    result = cli("plugins", "sync", "--json")
    assert result.code == EXIT_OK
    doc = result.json()
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
    assert doc["discovered_plugins"] == ["dev.test.gain"]
    assert doc["plugin_statuses"] == [
        {"plugin_id": "dev.test.gain", "desired_state": "enabled", "lifecycle_state": "active", "last_error": None}
    ]
    assert doc["transitions"] == [
        {
            "plugin_id": "dev.test.gain",
            "from": "missing",
            "to": "active",
            "trigger": "load_new",
            "outcome": "applied",
            "detail": "new",
        }
    ]
    assert (doc["errors"], doc["warnings"]) == ([], [])
    assert set(doc["timings_ms"]) == {"discover", "apply", "total"}


def test_sync_human_table_and_warnings(cli, plugin_src, make_plugin, plugins_dir):
    cli("plugins", "install", str(plugin_src))
    (plugins_dir / "dev.test.gain" / "plugin.json").write_text("{broken")
    cli("plugins", "install", str(make_plugin("dev.test.ok")))
    result = cli("plugins", "sync")
    assert result.code == EXIT_OK
    lines = result.out.splitlines()
    assert lines[0].startswith("revision 1: 1 discovered, 1 active, 0 error(s) (discover ")
    assert lines[1].split() == ["PLUGIN", "DESIRED", "STATE", "LAST", "ERROR"]
    assert lines[2].split() == ["dev.test.ok", "enabled", "active", "-"]
    assert ["dev.test.ok", "missing", "active", "load_new", "applied", "new"] in [line.split() for line in lines]
    assert result.err.startswith("warning: ") and "dev.test.gain" in result.err


def test_corrupt_state_file_is_a_clean_error(cli, plugin_src, plugins_dir):
    cli("plugins", "install", str(plugin_src))
    (plugins_dir / STATE_FILE_NAME).write_text("[]")
    result = cli("plugins", "sync")
    assert result.code == EXIT_FAILURE
    assert result.err.startswith("error: ") and "corrupt" in result.err and "Traceback" not in result.err


# --- parser -----------------------------------------------------------------------------------


def test_usage_errors_exit_2(cli, capsys):
    assert cli().code == EXIT_INVALID
    assert cli("plugins").code == EXIT_INVALID
    assert cli("plugins", "frobnicate").code == EXIT_INVALID
    assert cli("plugins", "sync", "--yaml").code == EXIT_INVALID
    assert cli_module.main(["--help"]) == EXIT_OK
    assert "plugins" in capsys.readouterr().out


def test_plugins_dir_option_after_subcommand_and_env_default(tmp_path, plugin_src, monkeypatch, capsys):
    late = tmp_path / "late"
    assert cli_module.main(["plugins", "install", str(plugin_src), "--plugins-dir", str(late)]) == EXIT_OK
    assert installed_dirs(late) == ["dev.test.gain"]
    monkeypatch.setenv("STELLATUNE_HOME", str(tmp_path / "envhome"))
    assert cli_module.main(["plugins", "install", str(plugin_src)]) == EXIT_OK
    assert installed_dirs(tmp_path / "envhome" / "plugins") == ["dev.test.gain"]
    capsys.readouterr()


def test_other_modules_can_add_plugin_subcommands(cli, monkeypatch):
    extra = types.ModuleType("stellatune_test_extra_commands")

    def register_plugin_commands(sub):
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("name")
        p.set_defaults(func=lambda args: print(f"hello {args.name} in {args.plugins_dir.name}") or 0)

    extra.register_plugin_commands = register_plugin_commands
    monkeypatch.setitem(sys.modules, extra.__name__, extra)
    monkeypatch.setattr(plugins_module, "PLUGIN_COMMAND_MODULES", [extra.__name__])
    result = cli("plugins", "hello", "world")
    assert (result.code, result.out) == (EXIT_OK, "hello world in plugins\n")


def test_an_upgrade_that_does_not_activate_is_rolled_back(cli, make_plugin, plugins_dir, tmp_path):
    working = make_plugin("dev.test.gain", version="1.0.0")
    assert cli("plugins", "install", str(working)).code == EXIT_OK
    broken = shutil.copytree(working, tmp_path / "v2")
    manifest = json.loads((broken / "plugin.json").read_text())
    (broken / "plugin.json").write_text(json.dumps(dict(manifest, version="2.0.0")))
    component = next((broken / "wasm").glob("*.component.wasm"))
    component.write_bytes(b"\0asm\x01\0\0\0 not a component")  # a valid manifest; no plugin behind it
    result = cli("plugins", "install", str(broken))
    assert result.code == EXIT_FAILURE
    assert "error: dev.test.gain:" in result.err and "rolled back" in result.err
    # The version it replaced is in place again, whole, and active; no staging is left.
    listed = cli("plugins", "list", "--json").json()["plugins"]
    assert [(p["id"], p["version"], p["install_state"]) for p in listed] == [("dev.test.gain", "1.0.0", "installed")]
    assert (plugins_dir / "dev.test.gain" / component.relative_to(broken)).read_bytes() != component.read_bytes()
    assert sorted(p.name for p in plugins_dir.iterdir() if p.name.startswith(".staging")) == []
    synced = cli("plugins", "sync", "--json").json()
    [status] = [s for s in synced["plugin_statuses"] if s["plugin_id"] == "dev.test.gain"]
    assert (status["lifecycle_state"], status["last_error"]) == ("active", None)


def test_a_first_install_that_does_not_activate_stays_for_the_user_to_fix(cli, make_plugin, plugins_dir):
    broken = make_plugin("dev.test.gain")
    next((broken / "wasm").glob("*.component.wasm")).write_bytes(b"\0asm\x01\0\0\0 not a component")
    result = cli("plugins", "install", str(broken))
    assert result.code == EXIT_FAILURE and "rolled back" not in result.err
    assert installed_dirs(plugins_dir) == ["dev.test.gain"]
