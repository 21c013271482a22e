"""The C step of the plugin builder: hot-path core module, component, and native baseline.

One C source (``src/*.c`` of a plugin directory, written against
``stellatune/sdk/include/stellatune_sdk.h``) is compiled three ways with clang-14 -O2:

1. ``wasm/<name>.hotpath.wasm``: a freestanding wasm32 core module exporting hot-path ABI v1
   (docs/hot-path-abi.md), linked so the SDK's fixed arena sits below all toolchain data;
2. ``wasm/<name>.component.wasm``: the same kernel plus the SDK's canonical-ABI glue for the
   plugin's world (``dsp-plugin`` or ``output-sink-plugin``), wrapped by ``wasm-tools``;
3. ``native/<name>.so``: the same source for the host CPU, a benchmark baseline.

``<name>`` comes from the component path in ``plugin.json`` (``wasm/<name>.component.wasm``).
Caching, staging and zipping are the builder core's (builder.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from stellatune.abi import SDK_ARENA_END

from .builder import BuildStep, PluginBuildError, Tool, build_package, read_manifest, run_tool, unpack_package, wit_dir

__all__ = ["PluginBuildError", "build_c_plugin", "c_step", "is_c_plugin"]

#: The SDK compiled into every C plugin (headers, glue). Read at build time, so a test can point
#: the builder at a copy.
SDK_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = SDK_DIR / "include"
GLUE_DIR = SDK_DIR / "glue"

CLANG = Tool(("clang-14", "clang"), "STELLATUNE_CLANG")
WASM_TOOLS = Tool(("wasm-tools",), "STELLATUNE_WASM_TOOLS", "install stellatune with the 'sdk' extra")

#: world -> (its glue file in GLUE_DIR, the interface its component exports)
_WORLDS = {
    "dsp-plugin": ("dsp_world.c", "stellatune:plugin/dsp@0.1.0"),
    "output-sink-plugin": ("output_sink_world.c", "stellatune:plugin/output-sink@0.1.0"),
}
_RUNTIME = ("st_instance.c", "st_runtime.c")
_HOTPATH = ("hotpath.c",)
_COMPONENT_COMMON = ("cabi.c",)

# IEEE arithmetic on both targets (no -ffast-math) so wasm and native results can be compared
# bit for bit; -fno-math-errno lets sqrt be the instruction instead of a libm call. -flto lets the
# linker inline the glue (st_hot_process -> instance lookup -> the kernel's process, an indirect
# call through a constant table) into one function: in wasm every call costs an epoch check and
# a stack check, and that chain was ~18 ns of an empty kernel's ~70 ns per block (perf, perfmap).
_COMMON_FLAGS = ("-O2", "-flto", "-std=c11", "-fno-math-errno", "-Wall", "-Wextra")
_WASM_FLAGS = (
    "--target=wasm32",
    "-msimd128",
    "-mbulk-memory",
    "-nostdlib",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=65536",
)
# The toolchain's data and stack start above the SDK arena (ST_ARENA_END in stellatune_sdk.h).
_HOTPATH_LINK = (f"-Wl,--global-base={SDK_ARENA_END}",)
# Native: the default x86-64 baseline (SSE2, no FMA), nothing exported but the st_hot_* symbols;
# lld links the LTO objects (the system linker has no LLVM plugin).
_NATIVE_FLAGS = ("-shared", "-fPIC", "-fvisibility=hidden", "-fuse-ld=lld")


@dataclass(frozen=True)
class _Plan:
    name: str
    world: str
    sources: list[Path]


def is_c_plugin(src_dir: Path) -> bool:
    return any((src_dir / "src").glob("*.c"))


def build_c_plugin(src_dir: Path, out_dir: Path, *, cache_dir: Optional[Path] = None) -> Path:
    """Build the C plugin in ``src_dir`` and stage the complete package in ``out_dir``.

    ``out_dir`` receives ``plugin.json``, the three artifacts and the package's other files
    (existing files of the same name are replaced); it is returned. The build goes through the
    builder's cache (``cache_dir``, default :func:`stellatune.paths.build_cache_dir`), the one
    ``stellatune plugins build`` uses. Raises :class:`PluginBuildError`.
    """
    src_dir = Path(src_dir).resolve()
    manifest = read_manifest(src_dir)
    zipped = build_package(src_dir, manifest, c_step(src_dir, manifest), cache_dir)
    return unpack_package(zipped, Path(out_dir))


def c_step(src_dir: Path, manifest: dict) -> BuildStep:
    """The builder step that compiles the C plugin in ``src_dir``."""
    plan = _plan(src_dir, manifest)
    clang, wasm_tools = CLANG.find(), WASM_TOOLS.find()
    sdk = SDK_DIR
    inputs = [
        (p.relative_to(sdk).as_posix(), p)
        for p in sorted((sdk / "include").glob("*.h")) + sorted((sdk / "glue").glob("*.[ch]"))
    ]
    # This file picks the glue and the flags: a change here is a change of the output.
    inputs.append(("cbuild.py", Path(__file__)))
    settings = repr((_COMMON_FLAGS, _WASM_FLAGS, _HOTPATH_LINK, _NATIVE_FLAGS, _WORLDS))
    return BuildStep(
        "c",
        (clang, wasm_tools),
        tuple(inputs),
        settings,
        lambda stage, work: _compile(plan, sdk, clang, wasm_tools, stage, work),
    )


def _plan(src_dir: Path, manifest: dict) -> _Plan:
    manifest_path = src_dir / "plugin.json"
    components = manifest["components"]
    if len(components) != 1:
        raise PluginBuildError(f"{manifest_path}: a C plugin has exactly one component")
    world = components[0]["world"].rsplit("/", 1)[-1].split("@", 1)[0]
    if world not in _WORLDS:
        raise PluginBuildError(
            f"{manifest_path}: world {components[0]['world']!r} is not one the C SDK builds "
            f"({', '.join(sorted(_WORLDS))})"
        )
    rel = components[0]["path"]
    prefix, suffix = "wasm/", ".component.wasm"
    name = rel[len(prefix) : -len(suffix)] if rel.startswith(prefix) and rel.endswith(suffix) else ""
    if not name or "/" in name or not all(c.isalnum() or c in "-_." for c in name):
        raise PluginBuildError(f"{manifest_path}: component path must be wasm/<name>.component.wasm, got {rel!r}")
    sources = sorted((src_dir / "src").glob("*.c"))
    if not sources:
        raise PluginBuildError(f"{src_dir / 'src'}: no .c sources")
    return _Plan(name=name, world=world, sources=sources)


def _compile(plan: _Plan, sdk: Path, clang: str, wasm_tools: str, stage: Path, work: Path) -> None:
    include, glue = sdk / "include", sdk / "glue"
    glue_world, interface = _WORLDS[plan.world]
    flags = [*_COMMON_FLAGS, "-I", str(include), "-I", str(glue), f'-DST_PLUGIN_NAME="{plan.name}"']
    kernel = [str(p) for p in plan.sources]
    hot_sources = kernel + [str(glue / f) for f in _HOTPATH + _RUNTIME]
    component_sources = kernel + [str(glue / f) for f in (glue_world, *_COMPONENT_COMMON, *_RUNTIME)]
    (stage / "wasm").mkdir()
    (stage / "native").mkdir()

    hotpath = stage / "wasm" / f"{plan.name}.hotpath.wasm"
    core = work / f"{plan.name}.core.wasm"
    compiles = [
        (
            [clang, *flags, *_WASM_FLAGS, *_HOTPATH_LINK, "-o", str(hotpath), *hot_sources],
            "compiling the hot-path core module",
        ),
        (
            [clang, *flags, *_NATIVE_FLAGS, "-o", str(stage / "native" / f"{plan.name}.so"), *hot_sources],
            "compiling the native library",
        ),
        (
            [clang, *flags, *_WASM_FLAGS, "-DST_BUILD_COMPONENT", "-o", str(core), *component_sources],
            "compiling the component's core module",
        ),
    ]
    # The three compiles are independent, and each is most of a build's time.
    with ThreadPoolExecutor(max_workers=len(compiles)) as pool:
        for _ in pool.map(lambda job: run_tool(*job), compiles):
            pass
    embedded = work / f"{plan.name}.embedded.wasm"
    run_tool(
        [wasm_tools, "component", "embed", str(wit_dir()), "-w", plan.world, str(core), "-o", str(embedded)],
        "embedding the WIT world",
    )
    component = stage / "wasm" / f"{plan.name}.component.wasm"
    run_tool([wasm_tools, "component", "new", str(embedded), "-o", str(component)], "making the component")

    for artifact in (hotpath, component):
        run_tool([wasm_tools, "validate", str(artifact)], f"validating {artifact.name}")
    wit = run_tool([wasm_tools, "component", "wit", str(component)], "printing the component's WIT")
    if f"export {interface};" not in wit:
        raise PluginBuildError(f"{component.name} does not export {interface}", wit)
