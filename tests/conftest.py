"""Fixtures every plane's tests share."""
from __future__ import annotations

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
