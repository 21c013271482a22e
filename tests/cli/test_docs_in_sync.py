"""docs/cli.md documents every command of the argparse tree and every option of each."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from stellatune.cli import build_parser

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
#: Options documented once, under "Global options", for every command.
GLOBAL_OPTIONS = {"-h", "--help", "--plugins-dir"}


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix, parser
        return
    for name, sub in subparsers[0].choices.items():
        yield from _leaf_commands(sub, (*prefix, name))


def _sections() -> dict[str, str]:
    """Each heading's text → the text under it, up to the next heading."""
    text = CLI_DOC.read_text(encoding="utf-8")
    parts = re.split(r"^(#{2,4} .*)$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2)}


COMMANDS = sorted(_leaf_commands(build_parser()), key=lambda c: c[0])


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_a_section_naming_each_of_its_options(path, parser):
    command = " ".join(path)
    sections = [
        body for heading, body in _sections().items() if re.search(rf"`(stellatune )?{re.escape(command)}\b", heading)
    ]
    assert sections, f"docs/cli.md has no heading for `{command}`"
    body = "\n".join(sections)
    for action in parser._actions:
        for option in action.option_strings:
            if option not in GLOBAL_OPTIONS and option.startswith("--"):
                assert option in body, f"docs/cli.md does not document {command} {option}"
