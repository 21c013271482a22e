"""Fixtures every plane's tests share."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from stellatune.sdk.build import build_plugin

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plugins"


@pytest.fixture(scope="session")
def built() -> Callable[[str], Path]:
    """``built(name)`` → the installable zip of ``examples/plugins/<name>``.

    The builder caches by source hash across runs; this adds a per-session memo so a test
    does not even re-hash the sources.
    """
    zips: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in zips:
            zips[name] = build_plugin(EXAMPLES / name)
        return zips[name]

    return get


def _child_pids() -> set[int]:
    """Live or zombie children of this test process, read from /proc (no psutil)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == me:  # ppid, after "pid (comm) state"
            found.add(int(entry))
    return found


@pytest.fixture(scope="session")
def children() -> Callable[[], set[int]]:
    """``children()``: the pids of this process's children (live or zombie), now."""
    return _child_pids
