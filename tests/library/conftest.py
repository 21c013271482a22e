"""Fixtures of the library-import tests: one generated library per session (bench/stbench/
librarygen.py: ~200 short WAV/FLAC/OGG files, corrupt ones, duplicates, nested folders) and its
serial import, the reference every other import is compared with."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from stellatune.library import import_library

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from stbench.librarygen import GeneratedLibrary, generate_library  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
#: Columns that differ between two imports of the same files by design.
VOLATILE = ("id", "imported_at")


def rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every track row by path, without the volatile columns."""
    con = sqlite3.connect(db)
    try:
        cur = con.execute("SELECT * FROM tracks")
        names = [d[0] for d in cur.description]
        found = [dict(zip(names, values, strict=True)) for values in cur]
    finally:
        con.close()
    return {r["path"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in found}


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> GeneratedLibrary:
    return generate_library(tmp_path_factory.mktemp("music"))


@pytest.fixture(scope="session")
def serial_db(library: GeneratedLibrary, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    db = tmp_path_factory.mktemp("serial") / "library.sqlite"
    report = import_library([library.root], db, workers=0, plugins_dir=None)
    return db, report
