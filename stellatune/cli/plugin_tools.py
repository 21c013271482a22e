"""``stellatune plugins build`` and ``stellatune plugins info``: tools for plugin authors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import package
from ..errors import PluginNotInstalledError
from ..manifest import Manifest, load_manifest
from ..runtime import WasmPluginRuntime
from ..sdk.build import build_plugin
from . import EXIT_OK
from .context import add_plugin_id_argument, open_runtime
from .output import print_json, print_table

__all__ = ["register_plugin_commands", "plugin_grants"]


def register_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``build`` and ``info`` to the ``plugins`` group."""
    p = sub.add_parser("build", help="build a plugin source directory into an installable .zip")
    p.add_argument("src_dir", type=Path, metavar="DIR")
    p.add_argument("--out", type=Path, metavar="ZIP", help="where to write the zip (default: the build cache)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("info", help="show a plugin's abilities, worlds, grants, state and last error")
    add_plugin_id_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def cmd_build(args: argparse.Namespace) -> int:
    print(build_plugin(args.src_dir, args.out))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    with open_runtime(args) as runtime:
        installed = {p.id: p for p in package.list_installed(runtime.plugins_dir)}
        row = installed.get(args.plugin_id)
        if row is None:
            raise PluginNotInstalledError(f"plugin not installed: {args.plugin_id}")
        runtime.sync_plugins()
        status = runtime.status(args.plugin_id)
        log = getattr(runtime.host, "log_path", None)
        manifest = load_manifest(Path(row.manifest_path))
        doc: dict[str, Any] = {
            "id": row.id,
            "name": row.name,
            "version": row.version,
            "root_dir": str(row.root_dir),
            "desired_state": status.desired_state.value,
            "state": status.lifecycle_state.value,
            "last_error": status.last_error,
            "log": str(log(row.id)) if log else None,
            "components": _components(manifest),
            "grants": plugin_grants(runtime, args.plugin_id, manifest),
        }
    if args.json:
        print_json(doc)
        return EXIT_OK
    print(f"{doc['id']} {doc['version']} — {doc['name']}")
    print(f"state: {doc['state']} (desired {doc['desired_state']})")
    if doc["last_error"]:
        print(f"last error: {doc['last_error']}")
    if doc["log"]:
        print(f"log: {doc['log']}")
    for label, key in (("permissions", "manifest"), ("host grants", "host"), ("run-time grants", "run_time")):
        print(f"{label}: " + ("; ".join(f"{kind} {', '.join(v)}" for kind, v in doc["grants"][key].items()) or "none"))
    print_table(
        ["COMPONENT", "WORLD", "KIND", "TYPE", "NAME"],
        [
            [c["id"], c["world"], a["kind"], a["type_id"], a["display_name"]]
            for c in doc["components"]
            for a in c["abilities"]
        ],
    )
    return EXIT_OK


def plugin_grants(runtime: WasmPluginRuntime, plugin_id: str, manifest: Manifest) -> dict[str, dict[str, list[str]]]:
    """What ``plugin_id`` may reach: ``{"manifest": its permissions block, "host": the host grants
    stored for it (``stellatune plugins grant``), "run_time": grants the host added to the active
    plugin}``, each by kind (``files``, ``http``, ``tcp``, ...), empty kinds left out. Run-time
    grants exist only while the plugin is active in a host that has them."""
    run_time: dict[str, list[str]] = {}
    host_imports = getattr(runtime.host, "host_imports", None)
    if host_imports is not None and runtime.is_active(plugin_id):
        grants = getattr(host_imports(plugin_id), "grants", None)
        if grants is not None:
            run_time = grants.added_at_run_time()
    return {
        "manifest": manifest.permissions.to_json(),
        "host": runtime.host_grants(plugin_id).to_json(),
        "run_time": run_time,
    }


def _components(manifest: Manifest) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "path": c.path,
            "world": c.world,
            "abilities": [
                {"kind": a.kind.value, "type_id": a.type_id, "display_name": a.display_name or a.type_id}
                for a in c.abilities
            ],
        }
        for c in manifest.components
    ]
