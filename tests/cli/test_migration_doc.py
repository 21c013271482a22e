"""docs/migration.md against the original project's three manifests: each validates as it is, and
every `stellatune plugins grant` command the page gives parses and is accepted for an installed
copy (component files and the named sidecars as stubs), storing exactly the grants it names."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from stellatune import package
from stellatune.cli import EXIT_OK, build_parser
from stellatune.manifest import load_manifest
from stellatune.runtime import WasmPluginRuntime

REPO = Path(__file__).resolve().parents[2]
MIGRATION = REPO / "docs" / "migration.md"
ORIGINALS = sorted((REPO / "tests" / "fixtures" / "original-manifests").glob("*.json"))
FLAG_KIND = {"--http": "http", "--tcp": "tcp", "--files": "files", "--sidecar": "sidecars", "--env": "env"}


def grant_commands() -> list[list[str]]:
    """Every `stellatune plugins grant ...` line of a ```sh block, split like a shell would."""
    blocks = re.findall(r"```sh\n(.*?)```", MIGRATION.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [
        shlex.split(line)
        for block in blocks
        for line in block.splitlines()
        if line.startswith("stellatune plugins grant ")
    ]


def stub_package(src: Path, manifest_file: Path, sidecars: list[str]) -> Path:
    """The original package as far as its manifest names files: stub components and sidecars."""
    src.mkdir(parents=True)
    shutil.copy(manifest_file, src / "plugin.json")
    for component in json.loads(manifest_file.read_text())["components"]:
        (src / component["path"]).parent.mkdir(parents=True, exist_ok=True)
        (src / component["path"]).write_bytes(b"\0asm")
    for rel in sidecars:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"#!/bin/sh\n")
        (src / rel).chmod(0o755)
    return src


def test_the_page_covers_every_original_manifest_and_has_their_grants():
    assert len(ORIGINALS) == 3
    text = MIGRATION.read_text(encoding="utf-8")
    ids = [json.loads(p.read_text())["id"] for p in ORIGINALS]
    for manifest_file, plugin_id in zip(ORIGINALS, ids, strict=True):
        assert f"## `{plugin_id}`" in text and manifest_file.name in text
    granted = {cmd[3] for cmd in grant_commands()}
    assert granted == {"dev.stellatune.output.asio", "dev.stellatune.source.netease"}
    netease = next(cmd for cmd in grant_commands() if cmd[3] == "dev.stellatune.source.netease")
    assert "127.0.0.1:46321" in netease and "bin/stellatune-ncm-sidecar.exe" in netease


@pytest.mark.parametrize("manifest_file", ORIGINALS, ids=[p.name for p in ORIGINALS])
def test_each_manifest_validates_and_its_grant_commands_are_accepted(manifest_file, tmp_path, cli, plugins_dir):
    plugin_id = json.loads(manifest_file.read_text())["id"]
    commands = [cmd for cmd in grant_commands() if cmd[3] == plugin_id]
    expected: dict[str, list[str]] = {}
    for cmd in commands:
        assert cmd[:3] == ["stellatune", "plugins", "grant"]
        build_parser().parse_args(cmd[1:])  # parses (argparse exits on a bad command line)
        for flag, value in zip(cmd[4::2], cmd[5::2], strict=True):
            expected.setdefault(FLAG_KIND[flag], []).append(value)

    src = stub_package(tmp_path / "src" / plugin_id, manifest_file, expected.get("sidecars", []))
    manifest = load_manifest(src / "plugin.json")  # validates as it is
    assert manifest.id == plugin_id and manifest.permissions.is_empty()
    package.install_from_artifact(plugins_dir, src)

    for cmd in commands:
        result = cli(*cmd[1:])
        assert result.code == EXIT_OK, result.err
        assert result.out.startswith(f"granted {plugin_id}: ")
    assert WasmPluginRuntime(plugins_dir).host_grants(plugin_id).to_json() == expected
