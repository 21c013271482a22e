"""Debug counters of live native resources, in the spirit of uvloop's ``_debug_*`` counters.

Each counter is the number of objects of one kind that exist now: incremented where the object is
made (:func:`track`), decremented once when it is closed (:func:`release`) or, if nobody closed it,
when Python frees it (a ``weakref.finalize``). A counter that grows with every install / enable /
disable / uninstall cycle is a leak; the tests check that they come back to where they were.

``live_counts()`` keys (docs/engine.md, "Debug counters"):

- ``hotpath_stages``: :class:`~stellatune.engine.HotPathStage` objects not yet closed.
- ``hotpath_stores``: wasmtime ``Store`` objects of hot-path stages not yet freed (a stage's store
  lives as long as the stage object, its core module's instance with it).
- ``hotpath_modules``: compiled hot-path core modules alive (each holds a
  ``memfd:wasm-memory-image`` descriptor); ``hotpath_modules_pinned`` of them are held by the
  engine's small LRU for fast rebuilds, the others only by live stages.
- ``component_stores``: stores of component instances (and link-check stores) not yet closed.
- ``component_instances``: :class:`~stellatune.executor.instance.PluginInstance` objects not torn
  down.
- ``sidecar_processes``: sidecar processes launched and not yet reaped.

This module imports nothing heavy (no wasmtime, no numpy), so anything may import it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Optional, TypeVar

__all__ = ["COUNTERS", "live_counts", "track", "release", "register_gauge"]

COUNTERS = (
    "hotpath_stages",
    "hotpath_stores",
    "hotpath_modules",
    "component_stores",
    "component_instances",
    "sidecar_processes",
)

T = TypeVar("T")

_lock = threading.Lock()
_counts: dict[str, int] = {name: 0 for name in COUNTERS}
# (kind, id(obj)) -> the finalizer that decrements ``kind`` once (on release, or when obj dies).
_live: dict[tuple[str, int], weakref.finalize] = {}
_gauges: dict[str, Callable[[], int]] = {}


def _drop(kind: str, key: tuple[str, int]) -> None:
    with _lock:
        _counts[kind] -= 1
        _live.pop(key, None)


def track(kind: str, obj: T) -> T:
    """Count ``obj`` under ``kind`` until :func:`release` (or until it is freed); returns ``obj``."""
    key = (kind, id(obj))
    with _lock:
        if key in _live:
            return obj
        _counts[kind] = _counts.get(kind, 0) + 1
        fin = _live[key] = weakref.finalize(obj, _drop, kind, key)
        fin.atexit = False  # nothing to count at interpreter exit
    return obj


def release(kind: str, obj: object) -> None:
    """``obj`` was closed: stop counting it (a no-op the second time, or if it was never tracked)."""
    with _lock:
        fin: Optional[weakref.finalize] = _live.get((kind, id(obj)))
    if fin is not None:
        fin()  # runs _drop at most once, and detaches from obj


def register_gauge(name: str, fn: Callable[[], int]) -> None:
    """A count computed on demand (e.g. the size of a cache), reported by :func:`live_counts`."""
    with _lock:
        _gauges[name] = fn


def live_counts() -> dict[str, int]:
    """Every counter and gauge, now."""
    with _lock:
        counts = dict(_counts)
        gauges = list(_gauges.items())
    for name, fn in gauges:
        counts[name] = int(fn())
    return counts
