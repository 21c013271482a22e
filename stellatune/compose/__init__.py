"""The composition layer: installed plugins put together into what a player runs.

- :mod:`.stages`: an installed plugin's DSP or output-sink ability → an engine stage (its hot
  path when the component offers one that loads, else the component path).
- :mod:`.sources`: a file decoded by the best decoder plugin → an engine ``BlockSource``.
- :mod:`.pipeline`: :class:`Pipeline`, a chain of installed plugins by name, used like a pedalboard.
- :mod:`.player`: :class:`Player`, a long-lived player (queue, transport, live chain edits,
  events) over :mod:`.queue` (items → one block stream), :mod:`.livechain` (chain swaps at block
  boundaries), :mod:`.outputs` and :mod:`.events`.

It is the one layer that joins the runtime, the executor and the engine; none of those imports
it (the import contracts in pyproject.toml say so). Names load lazily, so a command that only
parses a ``--dsp`` spec does not start wasmtime.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DspPlugin",
    "Pipeline",
    "Player",
    "build_dsp_stage",
    "build_sink_stage",
    "parse_config",
    "plugin_decoded_source",
]

_HOMES = {
    "DspPlugin": "pipeline",
    "Pipeline": "pipeline",
    "Player": "player",
    "build_dsp_stage": "stages",
    "build_sink_stage": "stages",
    "parse_config": "stages",
    "plugin_decoded_source": "sources",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
