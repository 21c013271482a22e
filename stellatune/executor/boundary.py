"""Checks on every value a plugin hands back, at the component boundary.

A guest controls every number and string it returns. The WIT types bound them only by their
width (a ``u32`` sample rate may be 4294967295), so each value the host goes on to use as a rate,
a channel count, a frame count, a path or a piece of text is checked here first. A value out of
range is a :class:`PluginContractError` naming the plugin, the field and the limit; nothing
downstream (soundfile, numpy, the engine, a path join) ever sees it.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ..errors import PluginContractError

__all__ = [
    "Boundary",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "MAX_CHANNELS",
    "MAX_BLOCK_FRAMES",
    "MAX_TEXT_CHARS",
    "MAX_JSON_CHARS",
    "MAX_REL_PATH_CHARS",
]

#: Sample rates a plugin may report or negotiate (1 Hz to 768 kHz, the highest rate in use).
MIN_SAMPLE_RATE = 1
MAX_SAMPLE_RATE = 768_000
#: Channel counts a plugin may report (up to 32, beyond any speaker layout in use).
MAX_CHANNELS = 32
#: Frames in one block a plugin may ask for or report (about 22 s at 48 kHz).
MAX_BLOCK_FRAMES = 1 << 20
#: A name, title, tag, reason or hint.
MAX_TEXT_CHARS = 64 * 1024
#: JSON a plugin returns (catalog listings, targets, exported state), or lyrics text.
MAX_JSON_CHARS = 4 * 1024 * 1024
#: A path inside the plugin's own package.
MAX_REL_PATH_CHARS = 4096
#: Durations and positions, in milliseconds (a year).
MAX_DURATION_MS = 366 * 24 * 3600 * 1000


class Boundary:
    """The checks, bound to the plugin (and capability) whose answers they judge."""

    def __init__(self, plugin_id: Optional[str] = None, capability: Optional[str] = None):
        self.plugin_id = plugin_id
        self.capability = capability

    def _refuse(self, field: str, message: str) -> PluginContractError:
        return PluginContractError(field, message, plugin_id=self.plugin_id, capability=self.capability)

    def integer(self, field: str, value: object, low: int, high: int) -> int:
        """``value`` as an int in ``[low, high]``."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refuse(field, f"must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise self._refuse(field, f"{value} is outside {low}..{high}")
        return value

    def optional_integer(self, field: str, value: object, low: int, high: int) -> Optional[int]:
        return None if value is None else self.integer(field, value, low, high)

    def sample_rate(self, field: str, value: object) -> int:
        return self.integer(field, value, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)

    def channels(self, field: str, value: object) -> int:
        return self.integer(field, value, 1, MAX_CHANNELS)

    def frames(self, field: str, value: object, most: int = MAX_BLOCK_FRAMES) -> int:
        return self.integer(field, value, 0, most)

    def duration_ms(self, field: str, value: object) -> Optional[int]:
        return self.optional_integer(field, value, 0, MAX_DURATION_MS)

    def text(self, field: str, value: object, limit: int = MAX_TEXT_CHARS) -> str:
        """A string of at most ``limit`` characters without NUL (it may end up in a C string)."""
        if not isinstance(value, str):
            raise self._refuse(field, f"must be a string, got {type(value).__name__}")
        if len(value) > limit:
            raise self._refuse(field, f"is {len(value)} characters long, over the {limit} limit")
        if "\0" in value:
            raise self._refuse(field, "contains a NUL character")
        return value

    def optional_text(self, field: str, value: object, limit: int = MAX_TEXT_CHARS) -> Optional[str]:
        return None if value is None else self.text(field, value, limit)

    def json_text(self, field: str, value: object) -> str:
        return self.text(field, value, MAX_JSON_CHARS)

    def json_value(self, field: str, value: object) -> Any:  # parsed JSON: any JSON value
        """JSON text, parsed; text that does not parse is the plugin's fault, not the caller's."""
        text = self.json_text(field, value)
        try:
            return json.loads(text)
        except ValueError as e:
            raise self._refuse(field, f"is not valid JSON ({e})") from None

    def rel_path(self, field: str, value: object) -> str:
        """A relative path inside the plugin's package: no NUL, no root, no ``..``, no
        backslash, no empty part. (Symlinks are the loader's business: it resolves the path and
        checks it stays inside the package.)"""
        path = self.text(field, value, MAX_REL_PATH_CHARS)
        parts = path.split("/")
        if not path.strip():
            raise self._refuse(field, "is blank")
        if path.startswith("/"):
            raise self._refuse(field, f"{path!r} is absolute; it must be relative to the package")
        if "\\" in path:
            raise self._refuse(field, f"{path!r} contains a backslash; use '/'")
        if ".." in parts:
            raise self._refuse(field, f"{path!r} leaves the package ('..')")
        if any(p == "" for p in parts[:-1]) or parts[-1] in ("", "."):
            raise self._refuse(field, f"{path!r} has an empty part")
        return path
