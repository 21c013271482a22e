"""Printing helpers shared by command modules: compact tables and stable JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["print_json", "print_table", "one_line"]


def one_line(text: str) -> str:
    """``text`` as a single printable line: a plugin chooses its own names and messages, so line
    breaks and control characters (terminal escapes) in them are shown escaped, never obeyed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())


def print_json(document: Any, file: TextIO | None = None) -> None:
    """Print ``document`` as indented JSON with a trailing newline (keys in insertion order, so
    the documented field order is the printed one)."""
    print(json.dumps(document, indent=2, ensure_ascii=False), file=file or sys.stdout)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], file: TextIO | None = None) -> None:
    """Print left-aligned columns separated by two spaces; ``-`` stands for ``None``."""
    out = file or sys.stdout
    cells = [[("-" if value is None else one_line(str(value))) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip(), file=out)
