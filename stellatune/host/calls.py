"""How many host calls one plugin made, by host function: a counter cheap enough for every call.

One :class:`HostCalls` belongs to each plugin's :class:`~stellatune.host.PluginHostContext`
(shared by all of the plugin's instances), so its counts start at 0 when the plugin is activated
again. The executor's import bindings count each guest call to a host import before running it,
denied or not; the service reads :meth:`HostCalls.counts` for its metrics.
"""

from __future__ import annotations

import threading

__all__ = ["HostCalls"]


class HostCalls:
    """Call counts by host function name (``host-stream.open``, ``host-stream-handle.read``,
    ``http-client.fetch-json``, ``sidecar.launch``, ``channel.write``, ...). Thread-safe."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        # A lock, not a bare dict update: the read-modify-write of one count is not atomic
        # between threads, and the cost (well under a microsecond) is small next to a host call
        # through the component model.
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, function: str) -> None:
        """Count one call of ``function``."""
        with self._lock:
            self._counts[function] = self._counts.get(function, 0) + 1

    def counts(self) -> dict[str, int]:
        """A copy of the counts (functions never called are absent)."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
