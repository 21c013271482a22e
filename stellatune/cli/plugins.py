"""``stellatune plugins ...``: validate, install, list, uninstall, enable, disable, sync.

Other modules add subcommands to this group: name them in ``PLUGIN_COMMAND_MODULES`` and give
them a ``register_plugin_commands(plugins_subparsers)`` function.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

from .. import package
from ..errors import PluginNotInstalledError
from ..manifest import MANIFEST_FILE_NAME, Manifest, load_manifest
from ..runtime import DesiredState, SyncReport, WasmPluginRuntime
from ..runtime.state import DesiredStateStore
from . import EXIT_FAILURE, EXIT_OK
from .context import add_plugin_id_argument, add_plugins_dir_option, open_runtime, plugins_dir
from .output import one_line, print_json, print_table

__all__ = ["PLUGIN_COMMAND_MODULES", "register"]

#: Modules (full names) adding subcommands to ``plugins`` via ``register_plugin_commands``.
PLUGIN_COMMAND_MODULES: list[str] = ["stellatune.cli.plugin_tools", "stellatune.cli.plugin_grants"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plugins`` command group."""
    group = subparsers.add_parser("plugins", help="install and manage plugins")
    sub = group.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("validate", help="check a plugin.json, plugin directory or .zip")
    p.add_argument("path", type=Path, metavar="PATH")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("install", help="install a plugin directory or .zip, then sync")
    p.add_argument("path", type=Path, metavar="PATH")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("list", help="list installed plugins")
    p.add_argument("--json", action="store_true", help="print the stable JSON form")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("uninstall", help="remove an installed plugin, then sync")
    add_plugin_id_argument(p)
    p.set_defaults(func=cmd_uninstall)

    p = sub.add_parser("enable", help="mark a plugin enabled, then sync")
    add_plugin_id_argument(p)
    p.set_defaults(func=cmd_enable)

    p = sub.add_parser("disable", help="mark a plugin disabled, then sync")
    add_plugin_id_argument(p)
    p.set_defaults(func=cmd_disable)

    p = sub.add_parser("sync", help="reconcile active plugins with the plugins directory")
    p.add_argument("--json", action="store_true", help="print the stable JSON sync report")
    p.set_defaults(func=cmd_sync)

    for name in PLUGIN_COMMAND_MODULES:
        importlib.import_module(name).register_plugin_commands(sub)
    for command in sub.choices.values():
        add_plugins_dir_option(command)


# --- commands ---------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    manifest = _validate(args.path)
    print(f"valid: {one_line(manifest.id)} {one_line(manifest.version)} ({len(manifest.components)} component(s))")
    return EXIT_OK


def cmd_install(args: argparse.Namespace) -> int:
    with package.install_keeping_previous(plugins_dir(args), args.path) as install:
        pid = install.plugin.id
        print(one_line(pid))
        with open_runtime(args) as runtime:
            report = runtime.sync_plugins()
            status = report.status_of(pid)
            if install.replaced and status is not None and status.last_error:
                # The new version does not activate: the one it replaced goes back, working.
                install.roll_back()
                runtime.sync_plugins()
                print(f"error: {one_line(pid)}: {one_line(status.last_error)}", file=sys.stderr)
                print(f"rolled back: {one_line(pid)} is the version it replaced again", file=sys.stderr)
                return EXIT_FAILURE
    return _report_problems(report, only=pid)


def cmd_list(args: argparse.Namespace) -> int:
    # Listing activates nothing, so it reads the state file instead of starting a runtime (and
    # with it a lifecycle host that may compile plugins).
    desired = DesiredStateStore(plugins_dir(args)).load()
    rows = []
    for plugin in package.list_installed(plugins_dir(args)):
        row = plugin.to_json()
        row["desired_state"] = desired.get(plugin.id, DesiredState.ENABLED).value
        rows.append(row)
    if args.json:
        print_json({"plugins": rows})
    elif not rows:
        print(f"no plugins installed in {plugins_dir(args)}")
    else:
        print_table(
            ["ID", "VERSION", "DESIRED", "INSTALL", "NAME"],
            [[r["id"], r["version"], r["desired_state"], r["install_state"], r["name"]] for r in rows],
        )
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    with open_runtime(args) as runtime:
        # This runtime has activated nothing yet, so no instance holds the files being deleted.
        package.uninstall_by_id(plugins_dir(args), args.plugin_id)
        states = runtime.desired_states()
        if states.pop(args.plugin_id, None) is not None:
            # A reinstall starts from the default (enabled), not from a forgotten disable.
            runtime.replace_desired_states(states)
        # Host grants go too: a package installed later under the same id starts from its manifest.
        runtime.clear_host_grants(args.plugin_id)
        report = runtime.sync_plugins()
    print(f"uninstalled {args.plugin_id}")
    return _report_problems(report, only=args.plugin_id)


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_state(args, DesiredState.ENABLED)


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_state(args, DesiredState.DISABLED)


def cmd_sync(args: argparse.Namespace) -> int:
    with open_runtime(args) as runtime:
        report = runtime.sync_plugins()
    if args.json:
        print_json(report.to_json())
    else:
        _print_report(report)
    return EXIT_OK if report.ok else EXIT_FAILURE


# --- helpers ----------------------------------------------------------------------------------


def _validate(path: Path) -> Manifest:
    """Validate what ``plugins validate`` accepts: a plugin.json, a plugin directory or a zip."""
    if path.is_dir():
        return load_manifest(path / MANIFEST_FILE_NAME)
    if path.suffix.lower() == ".zip":
        # A trial install into a throwaway directory checks a zip exactly as `install` would
        # (safe entries, size limits, exactly one valid manifest) and leaves nothing behind.
        with tempfile.TemporaryDirectory(prefix="stellatune-validate-") as scratch:
            installed = package.install_from_artifact(Path(scratch), path)
            return load_manifest(installed.manifest_path)
    return load_manifest(path)


def _set_state(args: argparse.Namespace, state: DesiredState) -> int:
    with open_runtime(args) as runtime:
        _require_installed(args, runtime)
        runtime.set_desired_state(args.plugin_id, state)
        report = runtime.sync_plugins()
    print(f"{state.value} {args.plugin_id}")
    return _report_problems(report, only=args.plugin_id)


def _require_installed(args: argparse.Namespace, runtime: WasmPluginRuntime) -> None:
    ids = {p.id for p in package.list_installed(runtime.plugins_dir)}
    if args.plugin_id not in ids:
        raise PluginNotInstalledError(f"plugin not installed: {args.plugin_id}")


def _report_problems(report: SyncReport, only: str) -> int:
    """After a command's sync: print the errors about ``only`` and fail if there are any."""
    status = report.status_of(only)
    if status is not None and status.last_error:
        print(f"error: {one_line(only)}: {one_line(status.last_error)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _print_report(report: SyncReport) -> None:
    t = report.timings_ms
    print(
        f"revision {report.revision}: {len(report.discovered_plugins)} discovered, "
        f"{len(report.active_plugins)} active, {len(report.errors)} error(s) "
        f"(discover {t.discover:.1f} ms, apply {t.apply:.1f} ms, total {t.total:.1f} ms)"
    )
    if report.plugin_statuses:
        print_table(
            ["PLUGIN", "DESIRED", "STATE", "LAST ERROR"],
            [
                [s.plugin_id, s.desired_state.value, s.lifecycle_state.value, s.last_error]
                for s in report.plugin_statuses
            ],
        )
    if report.transitions:
        print()
        print_table(
            ["PLUGIN", "FROM", "TO", "TRIGGER", "OUTCOME", "DETAIL"],
            [
                [x.plugin_id, x.from_state.value, x.to_state.value, x.trigger.value, x.outcome.value, x.detail.value]
                for x in report.transitions
            ],
        )
    for warning in report.warnings:
        print(f"warning: {one_line(str(warning))}", file=sys.stderr)
    for error in report.errors:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
