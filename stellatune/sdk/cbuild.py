"""Build a C plugin from source: hot-path core module, component, and native baseline.

One C source (``src/*.c`` of a plugin directory, written against
``stellatune/sdk/include/stellatune_sdk.h``) is compiled three ways with clang-14 -O2:

1. ``wasm/<name>.hotpath.wasm``: a freestanding wasm32 core module exporting hot-path ABI v1
   (docs/hot-path-abi.md), linked so the SDK's fixed arena sits below all toolchain data;
2. ``wasm/<name>.component.wasm``: the same kernel plus the SDK's canonical-ABI glue for the
   plugin's world (``dsp-plugin`` or ``output-sink-plugin``), wrapped by ``wasm-tools``;
3. ``native/<name>.so``: the same source for the host CPU, a benchmark baseline.

``<name>`` comes from the component path in ``plugin.json`` (``wasm/<name>.component.wasm``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from stellatune.errors import StellatuneError
from stellatune.abi import SDK_ARENA_END

__all__ = ["PluginBuildError", "build_c_plugin"]

SDK_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = SDK_DIR / "include"
GLUE_DIR = SDK_DIR / "glue"

_WORLDS = {
    "dsp-plugin": (GLUE_DIR / "dsp_world.c", "stellatune:plugin/dsp@0.1.0"),
    "output-sink-plugin": (GLUE_DIR / "output_sink_world.c", "stellatune:plugin/output-sink@0.1.0"),
}
_RUNTIME = [GLUE_DIR / "st_instance.c", GLUE_DIR / "st_runtime.c"]
_HOTPATH = [GLUE_DIR / "hotpath.c"]
_COMPONENT_COMMON = [GLUE_DIR / "cabi.c"]

# IEEE arithmetic on both targets (no -ffast-math) so wasm and native results can be compared
# bit for bit; -fno-math-errno lets sqrt be the instruction instead of a libm call.
_COMMON_FLAGS = ["-O2", "-std=c11", "-fno-math-errno", "-Wall", "-Wextra",
                 "-I", str(INCLUDE_DIR), "-I", str(GLUE_DIR)]
_WASM_FLAGS = ["--target=wasm32", "-msimd128", "-mbulk-memory", "-nostdlib",
               "-Wl,--no-entry", "-Wl,-z,stack-size=65536"]
# The toolchain's data and stack start above the SDK arena (ST_ARENA_END in stellatune_sdk.h).
_HOTPATH_LINK = [f"-Wl,--global-base={SDK_ARENA_END}"]
# Native: the default x86-64 baseline (SSE2, no FMA), nothing exported but the st_hot_* symbols.
_NATIVE_FLAGS = ["-shared", "-fPIC", "-fvisibility=hidden"]
_TOOL_TIMEOUT_S = 120


class PluginBuildError(StellatuneError):
    """A C plugin could not be built: bad plugin.json layout, a missing tool, or a compiler error.

    ``log`` holds the failing tool's output, when there was one.
    """

    def __init__(self, message: str, log: str = ""):
        self.log = log
        super().__init__(f"{message}\n{log}".rstrip() if log else message)


@dataclass(frozen=True)
class _Plan:
    name: str
    world: str
    sources: list[Path]


def build_c_plugin(src_dir: Path, out_dir: Path, *, cache_dir: Optional[Path] = None) -> Path:
    """Build the C plugin in ``src_dir`` and stage a complete package in ``out_dir``.

    ``out_dir`` receives ``plugin.json`` and the three artifacts (existing files of the same name
    are replaced); it is returned. With ``cache_dir``, a build whose inputs (sources, manifest,
    SDK, WIT, compiler) hash the same as an earlier one is copied from there instead.
    Raises :class:`PluginBuildError`.
    """
    src_dir = Path(src_dir)
    out_dir = Path(out_dir)
    plan = _plan(src_dir)
    key = _cache_key(src_dir, plan) if cache_dir is not None else None
    cached = Path(cache_dir) / key if key else None
    if cached is not None and (cached / ".complete").is_file():
        _stage(cached, out_dir)
        return out_dir
    with tempfile.TemporaryDirectory(prefix="stellatune-cbuild-") as tmp:
        work = Path(tmp)
        pkg = work / "pkg"
        _build_into(src_dir, plan, work, pkg)
        if cached is not None:
            _store_in_cache(pkg, cached)
        _stage(pkg, out_dir)
    return out_dir


def _plan(src_dir: Path) -> _Plan:
    manifest_path = src_dir / "plugin.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PluginBuildError(f"{manifest_path}: not found") from None
    except (OSError, ValueError) as e:
        raise PluginBuildError(f"{manifest_path}: unreadable: {e}") from None
    components = manifest.get("components") if isinstance(manifest, dict) else None
    if not isinstance(components, list) or len(components) != 1:
        raise PluginBuildError(f"{manifest_path}: a C plugin has exactly one component")
    component = components[0] if isinstance(components[0], dict) else {}
    world = str(component.get("world", "")).rsplit("/", 1)[-1].split("@", 1)[0]
    if world not in _WORLDS:
        raise PluginBuildError(
            f"{manifest_path}: world {component.get('world')!r} is not one the C SDK builds "
            f"({', '.join(sorted(_WORLDS))})")
    rel = str(component.get("path", ""))
    prefix, suffix = "wasm/", ".component.wasm"
    name = rel[len(prefix):-len(suffix)] if rel.startswith(prefix) and rel.endswith(suffix) else ""
    if not name or "/" in name or not all(c.isalnum() or c in "-_." for c in name):
        raise PluginBuildError(
            f"{manifest_path}: component path must be wasm/<name>.component.wasm, got {rel!r}")
    sources = sorted((src_dir / "src").glob("*.c"))
    if not sources:
        raise PluginBuildError(f"{src_dir / 'src'}: no .c sources")
    return _Plan(name=name, world=world, sources=sources)


def _build_into(src_dir: Path, plan: _Plan, work: Path, pkg: Path) -> None:
    clang = _tool("STELLATUNE_CLANG", ["clang-14", "clang"])
    wasm_tools = _tool("STELLATUNE_WASM_TOOLS", [str(Path(sys.executable).parent / "wasm-tools"),
                                                 "wasm-tools"])
    (pkg / "wasm").mkdir(parents=True)
    (pkg / "native").mkdir()
    shutil.copyfile(src_dir / "plugin.json", pkg / "plugin.json")
    name_define = f'-DST_PLUGIN_NAME="{plan.name}"'
    glue, interface = _WORLDS[plan.world]

    hotpath = pkg / "wasm" / f"{plan.name}.hotpath.wasm"
    _run([clang, *_COMMON_FLAGS, *_WASM_FLAGS, *_HOTPATH_LINK, name_define, "-o", str(hotpath),
          *map(str, plan.sources + _HOTPATH + _RUNTIME)], "compile the hot-path core module")

    native = pkg / "native" / f"{plan.name}.so"
    _run([clang, *_COMMON_FLAGS, *_NATIVE_FLAGS, name_define, "-o", str(native),
          *map(str, plan.sources + _HOTPATH + _RUNTIME)], "compile the native library")

    core = work / f"{plan.name}.core.wasm"
    _run([clang, *_COMMON_FLAGS, *_WASM_FLAGS, "-DST_BUILD_COMPONENT", name_define,
          "-o", str(core), *map(str, plan.sources + [glue] + _COMPONENT_COMMON + _RUNTIME)],
         "compile the component's core module")
    embedded = work / f"{plan.name}.embedded.wasm"
    _run([wasm_tools, "component", "embed", str(_wit_dir()), "-w", plan.world, str(core),
          "-o", str(embedded)], "embed the WIT world")
    component = pkg / "wasm" / f"{plan.name}.component.wasm"
    _run([wasm_tools, "component", "new", str(embedded), "-o", str(component)],
         "make the component")

    for artifact in (hotpath, component):
        _run([wasm_tools, "validate", str(artifact)], f"validate {artifact.name}")
    wit = _run([wasm_tools, "component", "wit", str(component)], "print the component's WIT")
    if f"export {interface};" not in wit:
        raise PluginBuildError(f"{component.name} does not export {interface}", wit)


def _wit_dir() -> Path:
    configured = os.environ.get("STELLATUNE_WIT_DIR")
    candidate = Path(configured) if configured else SDK_DIR.parents[1] / "wit" / "stellatune-plugin"
    if not candidate.is_dir():
        raise PluginBuildError(
            f"WIT package not found at {candidate}; set STELLATUNE_WIT_DIR to wit/stellatune-plugin")
    return candidate


def _tool(env_var: str, candidates: Sequence[str]) -> str:
    configured = os.environ.get(env_var)
    for candidate in ([configured] if configured else list(candidates)):
        found = shutil.which(candidate)
        if found:
            return found
    raise PluginBuildError(
        f"none of {', '.join(candidates)} found; install it or set {env_var}")


def _run(argv: list[str], what: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PluginBuildError(f"could not {what}: timed out after {_TOOL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise PluginBuildError(f"could not {what} (exit {proc.returncode})",
                               (proc.stderr or proc.stdout).strip())
    return proc.stdout


def _cache_key(src_dir: Path, plan: _Plan) -> str:
    """Hash of everything that decides the output bytes."""
    h = hashlib.sha256()
    clang = _tool("STELLATUNE_CLANG", ["clang-14", "clang"])
    h.update(_run([clang, "--version"], "ask clang its version").encode())
    inputs = [src_dir / "plugin.json", *plan.sources, Path(__file__)]
    inputs += sorted(INCLUDE_DIR.glob("*.h")) + sorted(GLUE_DIR.glob("*.[ch]"))
    inputs += sorted(_wit_dir().glob("*.wit"))
    for path in inputs:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _store_in_cache(pkg: Path, cached: Path) -> None:
    # Copy next to the final place and rename, so a concurrent reader never sees half a build.
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=cached.name + ".", dir=cached.parent))
    shutil.copytree(pkg, partial, dirs_exist_ok=True)
    (partial / ".complete").touch()
    try:
        partial.rename(cached)
    except OSError:  # another build of the same inputs won the race; its copy is as good
        shutil.rmtree(partial, ignore_errors=True)


def _stage(pkg: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in pkg.rglob("*"):
        if src.is_file() and src.name != ".complete":
            dst = out_dir / src.relative_to(pkg)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            if dst.suffix == ".so":
                dst.chmod(0o755)
