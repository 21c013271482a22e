"""Host grants through real components: a grant stored by the runtime (or `stellatune plugins
grant`) lets a plugin reach what its manifest does not grant, from its next activation on; a
revoke takes it away again at the next reload; grants persist for a new runtime."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from stellatune import package
from stellatune.cli import EXIT_OK, main
from stellatune.errors import PluginError, PluginErrorCode
from stellatune.executor import AudioSpec, ComponentExecutor, InstanceLimits
from stellatune.paths import default_cache_dir
from stellatune.runtime import TransitionTrigger, WasmPluginRuntime

HTTP_SOURCE = "dev.stellatune.example.http-source"
SINK = "dev.stellatune.example.wav-sink"

pytestmark = pytest.mark.slow  # Python components (cached after the first build)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    (root / "index.m3u").write_text("#EXTM3U\n#EXTINF:0.1,Ada - Dawn\ndawn.wav\n")
    return root


def listing(executor: ComponentExecutor, server) -> dict:
    """What the http-source lists from ``server``: a fresh source handle every time."""
    source = executor.source(HTTP_SOURCE, "http")
    source.apply_config({"base_url": server.url("/")})
    return source.list_items()


def assert_denied(executor: ComponentExecutor, server) -> None:
    with pytest.raises(PluginError) as caught:
        listing(executor, server)
    assert caught.value.code is PluginErrorCode.DENIED
    assert f"http host {server.endpoint} is not in permissions.http" in caught.value.message


def test_grant_reaches_after_the_reload_and_revoke_denies_again(install, runtime, executor, media_server, library):
    install("http-source")  # its manifest grants no HTTP host
    server = media_server(library)
    assert_denied(executor, server)

    runtime.grant(HTTP_SOURCE, {"http": [server.endpoint]})
    assert_denied(executor, server)  # the active plugin keeps the grants it was activated with
    report = runtime.sync_plugins()
    assert [(t.plugin_id, t.trigger) for t in report.transitions] == [(HTTP_SOURCE, TransitionTrigger.RELOAD_CHANGED)]
    assert listing(executor, server)["items"][0]["path"] == "dawn.wav"
    # Host grants are the plugin's from activation on, not run-time additions.
    assert executor.host_imports(HTTP_SOURCE).grants.added_at_run_time() == {}

    runtime.revoke(HTTP_SOURCE, {"http": [server.endpoint]})
    runtime.sync_plugins()
    requests_before = len(server.requests)
    assert_denied(executor, server)
    assert len(server.requests) == requests_before  # denied before any connection


def _fresh_runtime(plugins_dir: Path, tmp_path: Path, name: str) -> WasmPluginRuntime:
    executor = ComponentExecutor(
        cache_dir=default_cache_dir(),
        log_dir=tmp_path / name,
        limits=InstanceLimits(call_timeout_s=10.0, hook_timeout_s=10.0),
    )
    return WasmPluginRuntime(plugins_dir, executor)


def test_cli_grant_persists_for_a_new_runtime_shows_in_info_and_revoke_undoes_it(
    tmp_path, built, media_server, library, capsys
):
    plugins_dir = tmp_path / "home-plugins"
    home = ["--plugins-dir", str(plugins_dir)]
    assert main([*home, "plugins", "install", str(built("http-source"))]) == EXIT_OK
    server = media_server(library)
    capsys.readouterr()

    assert main([*home, "plugins", "grant", HTTP_SOURCE, "--http", server.endpoint]) == EXIT_OK
    assert capsys.readouterr().out == f"granted {HTTP_SOURCE}: http {server.endpoint}\n"

    with _fresh_runtime(plugins_dir, tmp_path, "logs-1") as rt:
        assert not rt.sync_plugins().errors
        assert listing(rt.host, server)["total"] == 1

    assert main([*home, "plugins", "info", HTTP_SOURCE, "--json"]) == EXIT_OK
    grants = json.loads(capsys.readouterr().out)["grants"]
    assert grants == {"manifest": {}, "host": {"http": [server.endpoint]}, "run_time": {}}
    assert main([*home, "plugins", "info", HTTP_SOURCE]) == EXIT_OK
    text = capsys.readouterr().out.splitlines()
    assert "permissions: none" in text and f"host grants: http {server.endpoint}" in text

    assert main([*home, "plugins", "revoke", HTTP_SOURCE, "--http", server.endpoint]) == EXIT_OK
    assert capsys.readouterr().out == f"revoked {HTTP_SOURCE}: http {server.endpoint}\n"
    with _fresh_runtime(plugins_dir, tmp_path, "logs-2") as rt:
        assert not rt.sync_plugins().errors
        assert_denied(rt.host, server)


def test_a_sidecar_grant_lets_a_package_without_permissions_launch_it(runtime, executor, built, tmp_path):
    # The real wav-sink package with its permissions block taken out, as the original's are.
    stripped = tmp_path / "wav-sink-no-permissions.zip"
    with zipfile.ZipFile(built("wav-sink")) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "plugin.json":
                manifest = json.loads(data)
                del manifest["permissions"]
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    package.install_from_artifact(runtime.plugins_dir, stripped)
    assert not runtime.sync_plugins().errors
    target = {"id": "file", "path": str(tmp_path / "out.wav")}
    with pytest.raises(PluginError) as caught:
        executor.output_sink(SINK, "wav-file").open(target, AudioSpec(48000, 2))
    assert caught.value.code is PluginErrorCode.DENIED

    runtime.grant(SINK, {"sidecars": ["bin/wav-writer"]})
    assert not runtime.sync_plugins().errors
    session = executor.output_sink(SINK, "wav-file").open(target, AudioSpec(48000, 2))
    session.close()
    assert (tmp_path / "out.wav").exists()
