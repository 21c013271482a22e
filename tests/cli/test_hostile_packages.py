"""`stellatune plugins` against packages and state files that fight back: schemas jsonschema
trips on, repeated keys, ids past a filesystem's name limit, names that carry terminal escapes,
a state file of bad bytes, an id with spaces. Each is a named problem or one clean line."""

from __future__ import annotations

import json

import pytest

from stellatune.cli import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from stellatune.runtime import STATE_FILE_NAME


def _with_schema(make_plugin, schema: str):
    src = make_plugin("dev.test.schema")
    doc = json.loads((src / "plugin.json").read_text())
    doc["components"][0]["abilities"][0]["config_schema_json"] = schema
    (src / "plugin.json").write_text(json.dumps(doc))
    return src


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ('{"$schema": 5}', "not a usable JSON Schema"),
        ('{"$schema": ["x"]}', "not a usable JSON Schema"),
        ('{"type": "object", "properties": {"a": {"type": "string", "pattern": "a{99999999999}"}}}', "JSON Schema"),
        ("false", "accepts no config"),
    ],
    ids=["schema-int", "schema-list", "huge-repeat", "false"],
)
def test_a_schema_jsonschema_trips_on_is_a_named_problem(cli, make_plugin, schema, says):
    result = cli("plugins", "validate", str(_with_schema(make_plugin, schema)))
    assert result.code == EXIT_INVALID, result.err
    assert "config_schema_json" in result.err and says in result.err and "Traceback" not in result.err


def test_repeated_keys_and_overlong_ids_are_refused(cli, make_plugin):
    src = make_plugin("dev.test.dup")
    text = (src / "plugin.json").read_text()
    (src / "plugin.json").write_text(
        text.replace('"id": "dev.test.dup"', '"id": "dev.test.dup", "id": "dev.test.other"', 1)
    )
    result = cli("plugins", "validate", str(src))
    assert result.code == EXIT_INVALID and "duplicate key 'id'" in result.err
    src = make_plugin("dev.test.long")
    doc = json.loads((src / "plugin.json").read_text())
    doc["id"] = "dev." + "x" * 300  # validates as a name, but no filesystem takes it as one
    (src / "plugin.json").write_text(json.dumps(doc))
    result = cli("plugins", "validate", str(src))
    assert result.code == EXIT_INVALID and "at most 200" in result.err


def test_manifest_text_never_reaches_the_terminal_raw(cli, make_plugin):
    src = make_plugin("dev.test.loud")
    doc = json.loads((src / "plugin.json").read_text())
    doc["name"] = "Nice\ndev.fake  9.9  enabled  installed  Fake\x1b[2J"
    (src / "plugin.json").write_text(json.dumps(doc))
    assert cli("plugins", "install", str(src)).code == EXIT_OK
    listing = cli("plugins", "list").out
    assert "\x1b" not in listing and len(listing.splitlines()) == 2  # the header and one row
    assert "\\n" in listing and "\\x1b" in listing  # shown escaped
    doc["id"] = "evil\nerror: fake line\x1b[31m"
    (src / "plugin.json").write_text(json.dumps(doc))
    result = cli("plugins", "validate", str(src))
    assert result.code == EXIT_INVALID and "\x1b" not in result.err
    assert not any(line.startswith("error: fake") for line in result.err.splitlines())


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 200_000 + b"]" * 200_000], ids=["not-utf8", "deep"])
def test_a_state_file_of_bad_bytes_is_the_corrupt_message(cli, plugin_src, plugins_dir, content):
    cli("plugins", "install", str(plugin_src))
    (plugins_dir / STATE_FILE_NAME).write_bytes(content)
    for argv in (("plugins", "list"), ("plugins", "sync"), ("plugins", "disable", "dev.test.gain")):
        result = cli(*argv)
        assert result.code == EXIT_FAILURE, argv
        assert "is corrupt" in result.err and "Traceback" not in result.err and result.err.count("\n") == 1


def test_an_id_with_spaces_names_the_same_plugin_everywhere(cli, plugin_src, plugins_dir):
    cli("plugins", "install", str(plugin_src))
    assert cli("plugins", "disable", " dev.test.gain ").code == EXIT_OK
    assert cli("plugins", "uninstall", " dev.test.gain").code == EXIT_OK
    state = json.loads((plugins_dir / STATE_FILE_NAME).read_text())
    assert "dev.test.gain" not in state["desired_states"]  # the disable went with the plugin
    cli("plugins", "install", str(plugin_src))
    assert cli("plugins", "list", "--json").json()["plugins"][0]["desired_state"] == "enabled"


def test_an_install_whose_files_went_bad_can_still_be_uninstalled(cli, plugin_src, plugins_dir):
    cli("plugins", "install", str(plugin_src))
    for component in (plugins_dir / "dev.test.gain" / "wasm").glob("*.wasm"):
        component.unlink()  # no longer discoverable: not listed, not loadable
    (plugins_dir / "dev.test.gain" / "plugin.json").write_text("{not json")
    assert cli("plugins", "uninstall", "dev.test.gain").code == EXIT_OK
    assert not (plugins_dir / "dev.test.gain").exists()
    assert cli("plugins", "uninstall", "dev.test.gain").code != EXIT_OK  # and then it is gone


@pytest.mark.parametrize("host", ["1.2.3.4.5", "999.1.1.1", "10.0.0.256:80"])
def test_a_numeric_host_that_is_no_ipv4_address_is_not_granted(cli, plugin_src, host):
    cli("plugins", "install", str(plugin_src))
    result = cli("plugins", "grant", "dev.test.gain", "--http", host)
    assert result.code == EXIT_INVALID and "not a valid IPv4 address" in result.err
