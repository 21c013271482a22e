"""The plugin builder's core, shared by C and Python plugins.

A build is one :class:`BuildStep` (``cbuild.c_step`` for C, ``build.python_step`` for Python
components) run by :func:`build_package`, which owns everything else: reading ``plugin.json``,
the content-keyed cache, staging the package's own files, validating the manifest against the
staged package and writing the zip. Tools run through :func:`run_tool`, and every failure is a
:class:`~stellatune.errors.PluginBuildError`.

The cache lives in :func:`stellatune.paths.build_cache_dir` and holds one zip per key. The key
(:func:`cache_key`) hashes every input that decides the package's bytes: the plugin's sources
(``src/``) and shipped files (``plugin.json``, sidecars, assets), the WIT package, the files and
flags of the step's SDK, every tool the step runs (its path, where that resolves to, and its
``--version``), and :data:`BUILDER_VERSION`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ManifestError, PluginBuildError
from ..manifest import load_manifest
from ..paths import build_cache_dir

__all__ = [
    "BUILDER_VERSION",
    "BuildStep",
    "PluginBuildError",
    "Tool",
    "build_package",
    "cache_key",
    "read_manifest",
    "run_tool",
    "tool_identity",
    "unpack_package",
    "wit_dir",
]

#: Bump when the zip's layout or a build command changes in a way the hashed inputs do not show.
BUILDER_VERSION = "2"
#: Top-level entries of a plugin directory that are never shipped (src/ is compiled, not copied).
_NOT_SHIPPED = {"src", "build", "dist"}
_TOOL_TIMEOUT_S = 600
_DEFAULT_WIT_DIR = Path(__file__).resolve().parents[2] / "wit" / "stellatune-plugin"


@dataclass(frozen=True)
class Tool:
    """A command-line tool the builder runs, found by :meth:`find`."""

    names: tuple[str, ...]
    env_var: Optional[str] = None
    hint: str = "install it"

    def find(self) -> str:
        """``$env_var`` if set, else the first of ``names`` in the running interpreter's
        environment (the venv, where the 'sdk' extra installs its tools), then on PATH."""
        configured = os.environ.get(self.env_var, "") if self.env_var else ""
        if configured:
            found = shutil.which(configured)
            if not found:
                raise PluginBuildError(f"${self.env_var}={configured!r} is not an executable")
            return found
        venv_bin = str(Path(sys.executable).parent)
        for name in self.names:
            found = shutil.which(name, path=venv_bin) or shutil.which(name)
            if found:
                return found
        override = f" or set ${self.env_var}" if self.env_var else ""
        raise PluginBuildError(f"{' or '.join(self.names)} not found; {self.hint}{override}")


@dataclass(frozen=True)
class BuildStep:
    """One language's part of a build: what it compiles with (for the cache key) and how."""

    kind: str
    """``"c"`` or ``"python"``."""
    tools: tuple[str, ...]
    """Paths of every tool :attr:`run` starts."""
    inputs: tuple[tuple[str, Path], ...]
    """``(label, path)`` of every file it reads beyond the plugin directory and the WIT package."""
    settings: str
    """Flags and constants it passes that live in no input file."""
    run: Callable[[Path, Path], None]
    """``run(stage, work)``: write every artifact the manifest names into ``stage``; ``work`` is
    a scratch directory."""


def run_tool(argv: Sequence[str], what: str) -> str:
    """Run one tool and return its stdout; a failure raises PluginBuildError with its output."""
    tool = Path(argv[0]).name
    # No Rust backtraces (wasm-tools, componentize-py): the tool's own message is what a plugin
    # author needs to read.
    env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=_TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PluginBuildError(f"{what}: {tool} timed out after {_TOOL_TIMEOUT_S} s") from None
    except OSError as e:
        raise PluginBuildError(f"{what}: cannot run {argv[0]}: {e}") from None
    if proc.returncode != 0:
        log = (proc.stderr or proc.stdout).split("Stack backtrace:", 1)[0].strip()
        raise PluginBuildError(f"{what} failed: {tool} exited with {proc.returncode}", log[-4000:])
    return proc.stdout


@functools.cache
def tool_identity(path: str) -> str:
    """What identifies a tool's output: its path, what that resolves to, and its ``--version``.

    Asked once per process and path: a version query costs a process start, and a tool does not
    change under a running build.
    """
    version = run_tool([path, "--version"], f"asking {Path(path).name} its version")
    return f"{path} -> {os.path.realpath(path)}\n{version.strip()}"


def wit_dir() -> Path:
    """The WIT package plugins are built against: ``$STELLATUNE_WIT_DIR``, else the source tree's."""
    configured = os.environ.get("STELLATUNE_WIT_DIR")
    path = Path(configured) if configured else _DEFAULT_WIT_DIR
    if not path.is_dir():
        raise PluginBuildError(f"WIT package not found at {path}; set STELLATUNE_WIT_DIR to wit/stellatune-plugin")
    return path


def read_manifest(src_dir: Path) -> dict:
    """``plugin.json`` of ``src_dir``, checked as far as the builder relies on it (the full
    validation runs on the staged package)."""
    path = src_dir / "plugin.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PluginBuildError(f"{src_dir} has no plugin.json") from None
    except (OSError, ValueError) as e:
        raise PluginBuildError(f"{path}: cannot read: {e}") from None
    comps = data.get("components") if isinstance(data, dict) else None
    if (
        not isinstance(comps, list)
        or not comps
        or not all(
            isinstance(c, dict) and isinstance(c.get("path"), str) and isinstance(c.get("world"), str) for c in comps
        )
    ):
        raise PluginBuildError(f"{path}: every component needs a string 'path' and 'world'")
    for c in comps:
        rel = Path(c["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise PluginBuildError(f"{path}: component path {c['path']!r} must stay inside the plugin")
    return data


def cache_key(src_dir: Path, step: BuildStep) -> str:
    """Hash of everything that decides the package's bytes (see the module docstring)."""
    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        # Length-prefixed, so two different lists of inputs never hash the same.
        h.update(f"{label}\0{len(data)}\0".encode())
        h.update(data)

    add("builder", BUILDER_VERSION.encode())
    add("kind", step.kind.encode())
    add("settings", step.settings.encode())
    for tool in step.tools:
        add("tool", tool_identity(tool).encode())
    wit = wit_dir()
    inputs = [(f"plugin/{p.relative_to(src_dir).as_posix()}", p) for p in _plugin_inputs(src_dir)]
    inputs += [(f"wit/{p.relative_to(wit).as_posix()}", p) for p in sorted(wit.rglob("*.wit"))]
    inputs += [(f"sdk/{label}", p) for label, p in step.inputs]
    for label, path in inputs:
        add(label, path.read_bytes())
    return h.hexdigest()[:32]


def build_package(src_dir: Path, manifest: dict, step: BuildStep, cache_root: Optional[Path] = None) -> Path:
    """The package zip of the plugin in ``src_dir``: from the cache (``cache_root``, default
    :func:`~stellatune.paths.build_cache_dir`), else built by ``step`` and stored there."""
    root = Path(cache_root) if cache_root is not None else build_cache_dir()
    plugin_id = re.sub(r"[^A-Za-z0-9._-]", "_", str(manifest.get("id") or src_dir.name))
    cached = root / f"{plugin_id}-{cache_key(src_dir, step)}.zip"
    if cached.is_file():
        return cached
    root.mkdir(parents=True, exist_ok=True)
    # Built inside the cache dir and renamed into place: a reader never sees half a package, and
    # a failed build leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix=".build-", dir=root) as tmp:
        stage = Path(tmp) / "package"
        stage.mkdir()
        step.run(stage, Path(tmp))
        _stage_package_files(src_dir, stage)
        _check_manifest(src_dir, stage)
        zipped = Path(tmp) / "package.zip"
        _write_zip(stage, zipped)
        os.replace(zipped, cached)  # a concurrent build of the same key wrote the same bytes
    return cached


def unpack_package(zip_path: Path, out_dir: Path) -> Path:
    """Extract a zip :func:`build_package` made into ``out_dir`` (files of the same name are
    replaced), keeping the mode bits, and return ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = out_dir / info.filename  # our own zip: relative names, checked when staged
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
    return out_dir


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            yield path


def _shipped(rel: Path) -> bool:
    """A file of the plugin directory that goes into the package as it is."""
    return rel.parts[0] not in _NOT_SHIPPED and rel.suffix not in (".wasm", ".zip")


def _plugin_inputs(src_dir: Path) -> Iterator[Path]:
    """Files of the plugin directory the build reads: the sources and the shipped files."""
    for path in _files(src_dir):
        rel = path.relative_to(src_dir)
        if rel.parts[0] == "src" or _shipped(rel):
            yield path


def _stage_package_files(src_dir: Path, stage: Path) -> None:
    """Copy the package's own files (plugin.json, bin/ sidecars, assets) next to the artifacts."""
    for path in _files(src_dir):
        rel = path.relative_to(src_dir)
        target = stage / rel
        if _shipped(rel) and not target.exists():  # an artifact the build produced wins
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)  # copy2 keeps the exec bit sidecars need


def _check_manifest(src_dir: Path, stage: Path) -> None:
    """Validate plugin.json against the staged package, so a broken package never leaves here."""
    try:
        load_manifest(stage / "plugin.json")
    except ManifestError as e:
        problems = "; ".join(str(p) for p in e.problems)
        raise PluginBuildError(f"{src_dir / 'plugin.json'}: {problems}") from None


def _write_zip(stage: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _files(stage):
            # from_file keeps the mode bits, so a sidecar or native library stays executable.
            info = zipfile.ZipInfo.from_file(path, path.relative_to(stage).as_posix())
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
