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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-realtime", action="store_true", default=False,
        help="play the live tests with the production decode ring (8192 frames) and hold them to 0 ring "
             "underruns: a claim about this machine's scheduling, which a loaded machine can fail")


#: A decode ring large enough to hold every live test's source whole once prefilled.
WHOLE_SOURCE_RING = 1 << 18


@pytest.fixture
def ring_frames(request: pytest.FixtureRequest) -> int:
    """The decode ring for live tests that assert 0 ring underruns.

    By default the ring holds the test's whole source before the driver starts (playback prefills
    half the ring, and every such source is shorter than that), so the feeder cannot fall behind
    however loaded the machine is, and the test checks what it is about: every frame played, in
    order, bit-exact. ``--strict-realtime`` uses the production ring instead and so also asserts
    that the feeder keeps up in real time.
    """
    return 8192 if request.config.getoption("--strict-realtime") else WHOLE_SOURCE_RING
