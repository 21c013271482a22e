"""Fixtures for CLI tests: ``main`` called in-process on a tmp plugins dir, and plugin sources
(real manifest dirs and zips; the ``.wasm`` bytes are placeholders the no-op host never runs)."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from stellatune.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def write_plugin(src: Path, plugin_id: str, *, version: str = "1.0.0", manifest: Optional[dict] = None) -> Path:
    """A plugin source directory with one dsp component."""
    (src / "wasm").mkdir(parents=True, exist_ok=True)
    (src / "wasm" / "main.wasm").write_bytes(b"\0asm placeholder")
    if manifest is None:
        manifest = {
            "schema_version": 1,
            "id": plugin_id,
            "name": f"Plugin {plugin_id}",
            "version": version,
            "api_version": 1,
            "components": [{
                "id": "main",
                "path": "wasm/main.wasm",
                "world": "stellatune:plugin/dsp-plugin@0.1.0",
                "abilities": [{"kind": "dsp", "type_id": "gain"}],
            }],
        }
    (src / "plugin.json").write_text(json.dumps(manifest, indent=2))
    return src


def zip_dir(src: Path, dest: Path, prefix: str = "") -> Path:
    """Zip the files under ``src`` (entries under ``prefix``)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(src).as_posix())
    return dest


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "plugins"


@pytest.fixture
def cli(plugins_dir: Path, capsys):
    """``cli("plugins", "list", ...)`` runs ``main`` with ``--plugins-dir`` set and captures output."""

    def run(*argv: str) -> Result:
        code = main(["--plugins-dir", str(plugins_dir), *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def plugin_src(tmp_path: Path) -> Path:
    return write_plugin(tmp_path / "src" / "gain", "dev.test.gain")


@pytest.fixture
def make_plugin(tmp_path: Path):
    """``make_plugin(plugin_id, **kw)`` → a new plugin source dir under ``tmp_path/src``."""
    return lambda plugin_id, **kw: write_plugin(tmp_path / "src" / plugin_id, plugin_id, **kw)


@pytest.fixture
def make_zip(tmp_path: Path):
    """``make_zip(src, name, prefix="")`` → ``tmp_path/name`` holding the files of ``src``."""
    return lambda src, name, prefix="": zip_dir(src, tmp_path / name, prefix)
