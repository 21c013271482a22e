"""Fixtures for the package plane: valid manifests, package directories, zips."""

from __future__ import annotations

import json
import types
import zipfile
from pathlib import Path

import pytest

DECODER_WASM = "wasm/decoder.wasm"
DSP_WASM = "wasm/dsp.wasm"


def valid_manifest_dict(plugin_id: str = "dev.test.sample", version: str = "1.0.0") -> dict:
    """A manifest that passes every rule: a decoder component and a DSP component."""
    return {
        "schema_version": 1,
        "id": plugin_id,
        "name": "Sample",
        "version": version,
        "api_version": 1,
        "components": [
            {
                "id": "decoder",
                "path": DECODER_WASM,
                "world": "stellatune:plugin/decoder-plugin@0.1.0",
                "abilities": [
                    {
                        "kind": "decoder",
                        "type_id": "sample",
                        "display_name": "Sample Decoder",
                        "config_schema_json": "{}",
                        "default_config_json": "{}",
                        "decoder": {"ext_scores": [{"ext": "smp", "score": 50}], "wildcard_score": 0},
                    }
                ],
            },
            {
                "id": "dsp",
                "path": DSP_WASM,
                "world": "stellatune:plugin/dsp-plugin@0.1.0",
                "abilities": [
                    {
                        "kind": "dsp",
                        "type_id": "gain",
                        "config_schema_json": json.dumps(
                            {"type": "object", "properties": {"gain_db": {"type": "number"}}}
                        ),
                        "default_config_json": json.dumps({"gain_db": 0.0}),
                    }
                ],
            },
        ],
    }


@pytest.fixture
def manifest_dict() -> dict:
    return valid_manifest_dict()


def write_package(root: Path, manifest: dict, extra: dict[str, bytes] | None = None) -> Path:
    """Write ``plugin.json`` plus a placeholder file for every component path; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "plugin.json").write_text(json.dumps(manifest, indent=2))
    for component in manifest.get("components", []):
        target = root / component["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\0asm" + component["id"].encode() + manifest["version"].encode())
    for rel, data in (extra or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def zip_from_entries(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    """Write a zip whose entries are exactly ``entries`` (names are not sanitised)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


@pytest.fixture
def pk():
    """The helpers above, for test modules (importlib mode cannot import conftest by name)."""
    return types.SimpleNamespace(
        valid_manifest_dict=valid_manifest_dict,
        write_package=write_package,
        zip_from_entries=zip_from_entries,
        DECODER_WASM=DECODER_WASM,
        DSP_WASM=DSP_WASM,
    )
