"""Deny by default, through real components: an import reaching for something the manifest (and
the host) did not grant fails with ``denied`` in the plugin call, and nothing is contacted."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from stellatune import package
from stellatune.errors import PluginError, PluginErrorCode
from stellatune.executor import AudioSpec

HTTP_SOURCE = "dev.stellatune.example.http-source"
SINK = "dev.stellatune.example.wav-sink"

pytestmark = pytest.mark.slow  # Python components (cached after the first build)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    (root / "index.m3u").write_text("#EXTM3U\none.wav\n")
    (root / "one.wav").write_bytes(b"RIFF")
    return root


def test_an_http_host_the_manifest_does_not_grant_is_denied_before_any_request(
    install, executor, media_server, library
):
    install("http-source")  # its manifest grants no HTTP host at all
    server = media_server(library)
    source = executor.source(HTTP_SOURCE, "http")
    source.apply_config({"base_url": server.url("/")})
    with pytest.raises(PluginError) as caught:
        source.list_items()
    assert caught.value.code is PluginErrorCode.DENIED
    assert f"http host {server.endpoint} is not in permissions.http" in caught.value.message
    assert server.requests == []


def test_a_grant_covers_one_endpoint_not_the_whole_machine(install, executor, media_server, library):
    install("http-source")
    granted, other = media_server(library), media_server(library)
    executor.host_imports(HTTP_SOURCE).grants.add_http_host(granted.endpoint)
    source = executor.source(HTTP_SOURCE, "http")
    opened = source.open_uri(granted.url("/one.wav"))
    assert opened.stream.read(4) == b"RIFF"
    opened.stream.close()
    with pytest.raises(PluginError) as caught:
        source.open_uri(other.url("/one.wav"))  # same address, another port
    assert caught.value.code is PluginErrorCode.DENIED
    assert other.requests == []


def test_a_sidecar_the_manifest_does_not_list_is_denied(runtime, executor, built, tmp_path, children):
    # The real wav-sink package with its permissions block taken out of plugin.json.
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
    before = children()
    sink = executor.output_sink(SINK, "wav-file")
    target = {"id": "file", "path": str(tmp_path / "never.wav")}
    for _attempt in range(2):  # the failed open left no lock behind: the second try is denied too
        with pytest.raises(PluginError) as caught:
            sink.open(target, AudioSpec(48000, 2))
        assert caught.value.code is PluginErrorCode.DENIED
        assert "'bin/wav-writer' is not in permissions.sidecars" in caught.value.message
    assert children() == before and not (tmp_path / "never.wav").exists()
