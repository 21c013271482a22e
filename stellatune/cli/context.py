"""What CLI commands share: where the plugins directory is, and how to get a runtime for it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..executor import ComponentExecutor
from ..paths import HOME_ENV, default_plugins_dir
from ..runtime import WasmPluginRuntime

__all__ = [
    "HOME_ENV",
    "default_plugins_dir",
    "add_plugins_dir_option",
    "add_plugin_id_argument",
    "plugins_dir",
    "open_runtime",
]


def add_plugin_id_argument(parser: argparse.ArgumentParser) -> None:
    """The ``ID`` positional of the commands about one installed plugin, trimmed as the package
    plane trims manifest ids (so ``" ID"`` names the same plugin everywhere, state files too)."""
    parser.add_argument("plugin_id", metavar="ID", type=str.strip)


def add_plugins_dir_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Add ``--plugins-dir`` so it works before or after the subcommand. On a subcommand the
    default is suppressed, so leaving it out there never overrides the top-level value."""
    parser.add_argument(
        "--plugins-dir",
        type=Path,
        metavar="DIR",
        default=None if top_level else argparse.SUPPRESS,
        help="the plugins directory (default: $STELLATUNE_HOME/plugins, "
        "else the per-user data directory's stellatune/plugins)",
    )


def plugins_dir(args: argparse.Namespace) -> Path:
    """The plugins directory a command works on (``--plugins-dir`` wins)."""
    chosen = getattr(args, "plugins_dir", None)
    return Path(chosen) if chosen is not None else default_plugins_dir()


def open_runtime(args: argparse.Namespace) -> WasmPluginRuntime:
    """The runtime every command uses, hosted by a component executor; use it as a context
    manager so both shut down. The one place that picks the CLI's lifecycle host."""
    return WasmPluginRuntime(plugins_dir(args), host=ComponentExecutor())
