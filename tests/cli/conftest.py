"""Fixtures for CLI tests: ``main`` called in-process on a tmp plugins dir, and plugin sources as
real directories and zips.

Valid plugins are copies of the real example gain plugin (built from examples/plugins/gain by the
SDK builder, cached) with their id and version rewritten, so the tests hold whichever lifecycle
host ``open_runtime`` uses. Invalid ones are hand-written manifests beside placeholder bytes.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from stellatune.cli import main
from stellatune.sdk.build import build_plugin

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture(scope="session")
def gain_package(tmp_path_factory) -> Path:
    """The built example gain plugin, unpacked (plugin.json at its root)."""
    dest = tmp_path_factory.mktemp("gain-package")
    with zipfile.ZipFile(build_plugin(REPO / "examples" / "plugins" / "gain")) as zf:
        zf.extractall(dest)
    (manifest,) = dest.rglob("plugin.json")
    return manifest.parent


def zip_dir(src: Path, dest: Path, prefix: str = "") -> Path:
    """Zip the files under ``src`` (entries under ``prefix``)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(src).as_posix())
    return dest


@pytest.fixture
def make_plugin(tmp_path: Path, gain_package: Path) -> Callable[..., Path]:
    """``make_plugin(plugin_id, version="1.0.0", manifest=None)`` → a plugin source directory under
    ``tmp_path/src``: the gain plugin renamed, or ``manifest`` written beside a placeholder
    ``wasm/main.wasm`` when given."""

    def make(plugin_id: str, *, version: str = "1.0.0", manifest: Optional[dict] = None) -> Path:
        src = tmp_path / "src" / plugin_id
        if manifest is None:
            shutil.copytree(gain_package, src)
            manifest = json.loads((src / "plugin.json").read_text())
            manifest.update(id=plugin_id, name=f"Plugin {plugin_id}", version=version)
        else:
            (src / "wasm").mkdir(parents=True)
            (src / "wasm" / "main.wasm").write_bytes(b"\0asm placeholder")
        (src / "plugin.json").write_text(json.dumps(manifest, indent=2))
        return src

    return make


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., Path]:
    """``make_zip(src, name, prefix="")`` → ``tmp_path/name`` holding the files of ``src``."""
    return lambda src, name, prefix="": zip_dir(src, tmp_path / name, prefix)


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
def plugin_src(make_plugin) -> Path:
    return make_plugin("dev.test.gain")
