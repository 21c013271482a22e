"""Player fixtures: the example plugins installed into a temporary plugins directory, synced by a
real runtime over a real ComponentExecutor (tests/compose/conftest.py's fixtures), and the
constants the player tests share."""

from __future__ import annotations

# The runtime over a real executor, install() and noise(): the same as the composition tests'.
from ..compose.conftest import component_cache, executor, install, noise, runtime  # noqa: F401

RATE = 48000
GAIN = "dev.stellatune.example.gain"
PYGAIN = "dev.stellatune.example.pygain"


def db(x: float) -> float:
    return float(10.0 ** (x / 20.0))
