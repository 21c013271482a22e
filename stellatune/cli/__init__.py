"""The ``stellatune`` command.

Each command group is a module of this package with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (``args -> int`` exit code) on every leaf command. ``main`` loads the
modules named in ``COMMAND_MODULES``; adding a group means adding a module and its name there.

Errors: every ``StellatuneError`` becomes a message on stderr and the exit code of its family
(``exit_code_for``); only unexpected errors print a traceback. docs/cli.md is the contract.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Optional

from .. import __version__
from ..errors import (
    HostGrantError,
    ManifestError,
    PackageError,
    PluginBuildError,
    PluginNotInstalledError,
    StellatuneError,
)
from ..package import NoValidManifestError
from .context import add_plugins_dir_option
from .output import one_line

__all__ = [
    "main",
    "build_parser",
    "COMMAND_MODULES",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_INVALID",
    "EXIT_PACKAGE",
    "EXIT_NOT_INSTALLED",
    "EXIT_INTERRUPTED",
    "exit_code_for",
    "format_error",
    "one_line",
]

#: Modules of this package that add command groups.
COMMAND_MODULES: list[str] = ["plugins", "decode", "audio", "bench", "report", "library", "serve", "ctl", "doctor"]

EXIT_OK = 0
#: An operation failed (plugin activation, state file, sync with errors, any other StellatuneError).
EXIT_FAILURE = 1
#: Bad input: wrong arguments (argparse's own code), or no valid plugin manifest.
EXIT_INVALID = 2
#: The package plane refused or failed: unsafe or oversized artifact, install/uninstall I/O.
EXIT_PACKAGE = 3
#: The named plugin is not installed.
EXIT_NOT_INSTALLED = 4
#: Interrupted with Ctrl-C (the shell convention 128 + SIGINT).
EXIT_INTERRUPTED = 130


def exit_code_for(error: StellatuneError) -> int:
    """The exit code of an expected error, by family (narrowest first)."""
    if isinstance(error, (ManifestError, NoValidManifestError, HostGrantError)):
        return EXIT_INVALID
    if isinstance(error, PluginNotInstalledError):
        return EXIT_NOT_INSTALLED
    if isinstance(error, PackageError):
        return EXIT_PACKAGE
    return EXIT_FAILURE


def format_error(error: StellatuneError) -> str:
    """How an expected error is shown: one line, or one line per problem for manifests."""
    if isinstance(error, ManifestError) and error.problems:
        where = f"{one_line(str(error.file))}: " if error.file else ""
        lines = [f"error: {where}invalid plugin manifest ({len(error.problems)} problem(s)):"]
        lines += [f"  {one_line(str(p))}" for p in error.problems]  # a manifest's text, escaped
        return "\n".join(lines)
    if isinstance(error, NoValidManifestError) and error.candidates:
        lines = [f"error: no valid plugin manifest; {len(error.candidates)} invalid candidate(s):"]
        lines += [f"  {one_line(f'{rel}: {p}')}" for rel, err in error.candidates for p in err.problems]
        return "\n".join(lines)
    if isinstance(error, PluginBuildError) and error.log:
        # The tool's own output (a compiler's diagnostics) reads best as the lines it wrote.
        return "\n".join([f"error: {one_line(error.message)}", *(f"  {one_line(ln)}" for ln in error.log.splitlines())])
    return f"error: {one_line(str(error))}"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every module in ``COMMAND_MODULES`` registered."""
    parser = argparse.ArgumentParser(
        prog="stellatune",
        description="Manage and run sandboxed WebAssembly audio plugins.",
    )
    parser.add_argument("--version", action="version", version=f"stellatune {__version__}")
    add_plugins_dir_option(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors exit through argparse
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_INVALID
    try:
        return int(args.func(args))
    except StellatuneError as exc:
        print(format_error(exc), file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`stellatune ... | head`). Point stdout at devnull so the
        # interpreter's final flush does not raise again, and report failure quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
