"""`stellatune plugins info` shows what a plugin may reach: its manifest's permissions, the host
grants stored for it (`stellatune plugins grant`) and the grants the host added at run time."""

from __future__ import annotations

import json

import pytest

from stellatune import package
from stellatune.cli import EXIT_OK, main
from stellatune.cli.plugin_tools import plugin_grants
from stellatune.manifest import load_manifest

SINK = "dev.stellatune.example.wav-sink"
HTTP_SOURCE = "dev.stellatune.example.http-source"

pytestmark = pytest.mark.slow  # Python components (cached after the first build)


def test_info_prints_the_manifest_permissions(tmp_path, built, capsys):
    home = ["--plugins-dir", str(tmp_path / "plugins")]
    for name in ("wav-sink", "http-source"):
        assert main([*home, "plugins", "install", str(built(name))]) == EXIT_OK
    capsys.readouterr()

    assert main([*home, "plugins", "info", SINK, "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["grants"] == {"manifest": {"sidecars": ["bin/wav-writer"]}, "host": {}, "run_time": {}}

    assert main([*home, "plugins", "info", SINK]) == EXIT_OK
    text = capsys.readouterr().out.splitlines()
    assert "permissions: sidecars bin/wav-writer" in text and "run-time grants: none" in text
    assert "host grants: none" in text

    assert main([*home, "plugins", "info", HTTP_SOURCE]) == EXIT_OK
    assert "permissions: none" in capsys.readouterr().out.splitlines()


def test_grants_include_what_the_host_added_at_run_time(install, executor, runtime, tmp_path):
    plugin_id = install("http-source")
    manifest = load_manifest(
        next(p for p in package.list_installed(runtime.plugins_dir) if p.id == plugin_id).manifest_path
    )
    assert plugin_grants(runtime, plugin_id, manifest) == {"manifest": {}, "host": {}, "run_time": {}}

    grants = executor.host_imports(plugin_id).grants
    grants.add_http_host("media.local:8096")
    grants.add_file_root(tmp_path / "music")
    assert plugin_grants(runtime, plugin_id, manifest) == {
        "manifest": {},
        "host": {},
        "run_time": {"files": [str(tmp_path / "music")], "http": ["media.local:8096"]},
    }

    runtime.unload(plugin_id)  # run-time grants live with the active plugin, not on disk
    assert plugin_grants(runtime, plugin_id, manifest)["run_time"] == {}
