"""Structured events: one schema for everything the library reports as it runs.

An event is a dict ``{"ts", "seq", "kind", "severity", "plugin_id", "data"}`` (docs/events.md;
the JSON Schema is ``stellatune/service/events.schema.json``). ``seq`` counts up from 1 per
hub, so a subscriber sees events in the order they were emitted.

``EventHub.subscribe(callback, kinds=None)`` calls ``callback(event)`` on the emitting thread,
in order (one delivery lock): callbacks must be short and never block (hand the event to a
queue). A callback that raises is logged and ignored. ``WasmPluginRuntime.events`` is one.

This module imports nothing heavy, so any plane may use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

__all__ = ["EVENT_KINDS", "SEVERITIES", "EventHub", "Event", "EventCallback"]

Event = dict[str, Any]
EventCallback = Callable[[Event], object]

#: Every kind an event may have (docs/events.md lists who emits each and its data).
EVENT_KINDS = frozenset(
    {
        # runtime plane
        "plugin-transition",
        "sync-completed",
        "plugin-installed",
        "plugin-uninstalled",
        "plugin-enabled",
        "plugin-disabled",
        "grant-changed",
        "grant-denied",
        # sidecars
        "sidecar-started",
        "sidecar-exited",
        "sidecar-crashed",
        "sidecar-restarted",
        "sidecar-breaker-open",
        "sidecar-stopped",
        # the hot path and the chain (a stage bypassed for a fault: timeout and non-finite have
        # their own kinds, every other fault kind is a stage-fault)
        "stage-fault",
        "stage-timeout",
        "stage-non-finite",
        "stage-bypass",
        "stage-removed",
        "stage-reloaded",
        "xrun",
        "underrun",
        "config-plan",
        "config-outcome",
        # the player
        "track-started",
        "track-ended",
        "track-error",
        "queue-empty",
        "seek",
        "transport",
        # the service
        "service-started",
        "service-stopping",
        "events-dropped",
    }
)
SEVERITIES = ("debug", "info", "warning", "error", "critical")

_log = logging.getLogger("stellatune.events")


class EventHub:
    """Numbers events and hands them to subscribers, in order. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliver = threading.RLock()
        self._seq = 0
        self._next = 0
        self._subs: dict[int, tuple[EventCallback, Optional[frozenset[str]]]] = {}

    def subscribe(self, callback: EventCallback, kinds: Optional[Iterable[str]] = None) -> Callable[[], None]:
        """Call ``callback(event)`` for each event (of ``kinds``); returns ``unsubscribe()``.

        :raises ValueError: an unknown kind.
        """
        wanted = None if kinds is None else frozenset(kinds)
        if wanted is not None and not wanted <= EVENT_KINDS:
            raise ValueError(f"unknown event kinds: {sorted(wanted - EVENT_KINDS)}")
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._subs[key] = (callback, wanted)

        def unsubscribe() -> None:
            with self._lock:
                self._subs.pop(key, None)

        return unsubscribe

    def emit(self, kind: str, *, severity: str = "info", plugin_id: Optional[str] = None, **data: Any) -> Event:
        """Number and deliver one event; returns it."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind: {kind!r}")
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity: {severity!r}")
        with self._deliver:
            with self._lock:
                self._seq += 1
                event: Event = {
                    "ts": time.time(),
                    "seq": self._seq,
                    "kind": kind,
                    "severity": severity,
                    "plugin_id": plugin_id,
                    "data": data,
                }
                subs = list(self._subs.values())
            for callback, wanted in subs:
                if wanted is None or kind in wanted:
                    try:
                        callback(event)
                    except Exception:  # noqa: BLE001 (a failing subscriber never breaks the emitter)
                        _log.exception("event callback failed on %s", kind)
        return event

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq
