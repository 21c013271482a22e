"""The five plugin worlds, and checking a compiled component against its declared world by type.

wasmtime-py 50 has no ``instantiate_pre`` and host functions are untyped, so a linker alone
would accept an import whose signature is wrong and would not look at exports at all. Instead we
render every function and resource of a component's type into a canonical signature text and
compare it with the signatures of the world itself (``world_types.json``, generated from the WIT
by :func:`reference_signatures`; a test keeps it in sync).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import wasmtime
from wasmtime.component import (
    BorrowType,
    Component,
    ComponentInstanceType,
    EnumType,
    FlagsType,
    FuncType,
    ListType,
    OptionType,
    OwnType,
    RecordType,
    ResourceType,
    ResultType,
    TupleType,
    ValType,
    VariantType,
)

from ..errors import ActivationError

__all__ = [
    "WorldSpec",
    "WORLDS",
    "world_of",
    "check_component",
    "component_signatures",
    "reference_signatures",
    "PACKAGE",
    "iface",
]

PACKAGE = "stellatune:plugin"
VERSION = "0.1.0"
SIGNATURES_FILE = Path(__file__).with_name("world_types.json")
#: ``{"imports"|"exports": {instance: {item: signature text}}}`` of a component or a world.
Signatures = dict[str, dict[str, dict[str, str]]]


def iface(name: str) -> str:
    """Fully qualified instance name of one of our interfaces, e.g. ``stellatune:plugin/dsp@0.1.0``."""
    return f"{PACKAGE}/{name}@{VERSION}"


@dataclass(frozen=True)
class WorldSpec:
    """One plugin world: the ability kind it serves and the host interfaces it imports."""

    name: str
    kind: str
    imports: tuple[str, ...]


WORLDS: dict[str, WorldSpec] = {
    w.name: w
    for w in (
        WorldSpec("decoder-plugin", "decoder", ("host-stream", "sidecar")),
        WorldSpec("source-plugin", "source", ("host-stream", "sidecar")),
        WorldSpec("lyrics-plugin", "lyrics", ("sidecar", "http-client")),
        WorldSpec("output-sink-plugin", "output_sink", ("sidecar",)),
        WorldSpec("dsp-plugin", "dsp", ("sidecar",)),
    )
}


def world_of(declared: str) -> WorldSpec:
    """Resolve a manifest ``world`` (``stellatune:plugin/dsp-plugin@0.1.0`` or ``dsp-plugin``)."""
    text = declared.strip()
    name = text.rsplit("/", 1)[-1].split("@", 1)[0]
    package = text.rsplit("/", 1)[0] if "/" in text else PACKAGE
    if package != PACKAGE or name not in WORLDS:
        raise ActivationError(f"unsupported world {declared!r} (expected {PACKAGE}/<{'|'.join(WORLDS)}>)")
    return WORLDS[name]


# --- canonical signatures ------------------------------------------------------------------


def _render(ty: ValType) -> str:
    """A canonical text for a component value type; equal texts mean equal types."""
    if isinstance(ty, ListType):
        return f"list<{_render(ty.element)}>"
    if isinstance(ty, OptionType):
        return f"option<{_render(ty.payload)}>"
    if isinstance(ty, ResultType):
        ok = _render(ty.ok) if ty.ok is not None else "_"
        err = _render(ty.err) if ty.err is not None else "_"
        return f"result<{ok},{err}>"
    if isinstance(ty, TupleType):
        return "tuple<" + ",".join(_render(t) for t in ty.elements) + ">"
    if isinstance(ty, RecordType):
        return "record{" + ",".join(f"{n}:{_render(t)}" for n, t in ty.fields) + "}"
    if isinstance(ty, VariantType):
        cases = (n if t is None else f"{n}({_render(t)})" for n, t in ty.cases)
        return "variant{" + ",".join(cases) + "}"
    if isinstance(ty, EnumType):
        return "enum{" + ",".join(ty.names) + "}"
    if isinstance(ty, FlagsType):
        return "flags{" + ",".join(ty.names) + "}"
    # Resource identity is per component; the resource's *name* is checked where it is exported.
    if isinstance(ty, OwnType):
        return "own"
    if isinstance(ty, BorrowType):
        return "borrow"
    return type(ty).__name__.lower()


def _render_func(ty: FuncType) -> str:
    params = ",".join(f"{n}:{_render(t)}" for n, t in ty.params)
    result = ty.result
    return f"func({params})" + (f"->{_render(result)}" if result is not None else "")


def _render_instance(engine: wasmtime.Engine, ty: ComponentInstanceType) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, ext in ty.exports(engine).items():
        item = ext.ty
        if isinstance(item, FuncType):
            out[name] = _render_func(item)
        elif isinstance(item, ResourceType):
            out[name] = "resource"
        # Type exports (records, enums) are covered through the functions that use them.
    return out


def component_signatures(engine: wasmtime.Engine, component: Component) -> Signatures:
    """``{"imports"|"exports": {instance: {item: signature}}}`` for our package's interfaces."""
    ty = component.type
    out: Signatures = {"imports": {}, "exports": {}}
    for side, items in (("imports", ty.imports(engine)), ("exports", ty.exports(engine))):
        for name, ext in items.items():
            item = ext.ty
            if name.startswith(PACKAGE + "/") and isinstance(item, ComponentInstanceType):
                out[side][name] = _render_instance(engine, item)
            elif not name.startswith("wasi:") and side == "imports":
                out[side][name] = {"": "unknown"}
    return out


@lru_cache(maxsize=1)
def _world_signatures() -> Mapping[str, Signatures]:
    return json.loads(SIGNATURES_FILE.read_text())


def check_component(engine: wasmtime.Engine, component: Component, world: WorldSpec) -> list[str]:
    """Every way ``component`` fails to implement ``world`` (empty when it does)."""
    want = _world_signatures()[world.name]
    have = component_signatures(engine, component)
    problems: list[str] = []
    for inst, items in want["exports"].items():
        got = have["exports"].get(inst)
        if got is None:
            problems.append(f"does not export {inst}")
            continue
        for item, sig in items.items():
            if item not in got:
                problems.append(f"{inst}: missing export {item!r}")
            elif got[item] != sig:
                problems.append(f"{inst}: {item!r} has type {got[item]}, the world says {sig}")
    for inst, items in have["imports"].items():
        ref = want["imports"].get(inst)
        if ref is None:
            problems.append(f"imports {inst}, which world {world.name} does not provide")
            continue
        for item, sig in items.items():
            if ref.get(item) != sig:
                problems.append(f"import {inst}: {item!r} has type {sig}, the host provides {ref.get(item)}")
    return problems


# --- generating the reference (dev time; needs wasm-tools) --------------------------------------


def reference_signatures(wit_dir: Path, wasm_tools: str = "wasm-tools") -> dict[str, Signatures]:
    """Signatures of each world, from a dummy component ``wasm-tools`` builds from the WIT."""
    cfg = wasmtime.Config()
    cfg.wasm_component_model = True
    engine = wasmtime.Engine(cfg)
    out: dict[str, Signatures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in WORLDS:
            core = Path(tmp, f"{name}.core.wasm")
            comp = Path(tmp, f"{name}.wasm")
            subprocess.run(
                [wasm_tools, "component", "embed", "--dummy", str(wit_dir), "-w", name, "-o", str(core)],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [wasm_tools, "component", "new", str(core), "-o", str(comp)], check=True, capture_output=True
            )
            out[name] = component_signatures(engine, Component.from_file(engine, comp))
    return out


if __name__ == "__main__":  # regenerate: python -m stellatune.executor.worlds WIT_DIR WASM_TOOLS
    import sys

    sigs = reference_signatures(Path(sys.argv[1]), *sys.argv[2:3])
    SIGNATURES_FILE.write_text(json.dumps(sigs, indent=1, sort_keys=True) + "\n")
