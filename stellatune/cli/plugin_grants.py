"""``stellatune plugins grant`` / ``revoke``: host grants, stored beside the desired states.

They record only: nothing is activated here (the runtime has no lifecycle host), and the grants
reach a plugin at its next activation (docs/host.md, "Host grants").
"""

from __future__ import annotations

import argparse
import sys

from .. import package
from ..errors import PluginNotInstalledError
from ..manifest import Permissions
from ..runtime import HostGrantChange, WasmPluginRuntime
from . import EXIT_INVALID, EXIT_OK
from .context import add_plugin_id_argument, plugins_dir

__all__ = ["register_plugin_commands", "describe_grants"]

#: option → (grant kind, metavar, help)
_OPTIONS = (
    ("--http", "http", "HOST[:PORT]", "allow HTTP(S) to this host (no port: the scheme's default; '*.domain' allowed)"),
    ("--tcp", "tcp", "HOST:PORT", "allow TCP streams to this endpoint"),
    ("--files", "files", "REL", "allow reading this path (relative to the plugin root)"),
    ("--sidecar", "sidecars", "REL", "allow launching this executable inside the plugin root"),
    ("--env", "env", "NAME", "pass this host environment variable through to sidecars"),
)


def register_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``grant`` and ``revoke`` to the ``plugins`` group."""
    for name, verb, func in (
        ("grant", "add host grants for", cmd_grant),
        ("revoke", "remove host grants of", cmd_revoke),
    ):
        p = sub.add_parser(name, help=f"{verb} a plugin (taking effect at its next activation)")
        add_plugin_id_argument(p)
        for option, kind, metavar, text in _OPTIONS:
            p.add_argument(
                option, dest=f"grant_{kind}", action="append", default=[], metavar=metavar, help=f"{text}; repeatable"
            )
        p.set_defaults(func=func)


def cmd_grant(args: argparse.Namespace) -> int:
    wanted = _requested(args)
    if wanted is None:
        return _nothing_requested("grant")
    with WasmPluginRuntime(plugins_dir(args)) as runtime:
        if args.plugin_id not in _installed_ids(runtime):
            raise PluginNotInstalledError(f"plugin not installed: {args.plugin_id}")
        change = runtime.grant(args.plugin_id, wanted)
    _print_change(change, "granted", "already granted")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    gone = _requested(args)
    if gone is None:
        return _nothing_requested("revoke")
    with WasmPluginRuntime(plugins_dir(args)) as runtime:
        # Grants left behind by an entry that is no longer installed can still be revoked.
        if args.plugin_id not in _installed_ids(runtime) and runtime.host_grants(args.plugin_id).is_empty():
            raise PluginNotInstalledError(f"plugin not installed: {args.plugin_id}")
        change = runtime.revoke(args.plugin_id, gone)
    _print_change(change, "revoked", "not granted (nothing to revoke)")
    return EXIT_OK


def describe_grants(grants: dict[str, list[str]]) -> str:
    """``http a, b; sidecars bin/x`` (``none`` when empty): how info and grant print grants."""
    return "; ".join(f"{kind} {', '.join(entries)}" for kind, entries in grants.items()) or "none"


def _requested(args: argparse.Namespace) -> dict[str, list[str]] | None:
    requested = {kind: list(getattr(args, f"grant_{kind}")) for _opt, kind, _m, _h in _OPTIONS}
    return requested if any(requested.values()) else None


def _nothing_requested(command: str) -> int:
    options = ", ".join(option for option, *_rest in _OPTIONS)
    print(f"error: plugins {command}: give at least one of {options}", file=sys.stderr)
    return EXIT_INVALID


def _installed_ids(runtime: WasmPluginRuntime) -> set[str]:
    return {p.id for p in package.list_installed(runtime.plugins_dir)}


def _print_change(change: HostGrantChange, done: str, noop: str) -> None:
    changed = _as_dict(change.changed)
    print(f"{done} {change.plugin_id}: {describe_grants(changed) if changed else 'nothing'}")
    unchanged = _as_dict(change.unchanged)
    if unchanged:
        print(f"{noop}: {describe_grants(unchanged)}")


def _as_dict(grants: Permissions) -> dict[str, list[str]]:
    return grants.to_json()
