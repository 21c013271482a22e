"""Player events: a small thread-safe dispatcher whose callbacks run on one Python thread.

Kinds: ``track-started``, ``track-ended``, ``queue-empty``, ``stage-fault``, ``config-applied``,
``config-rejected``, ``xrun``, ``seeked``, ``stage-removed``. An event is a dict with ``kind`` and
its details. Callbacks never run on the audio thread; one that raises is logged and ignored.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional

__all__ = ["EVENT_KINDS", "EventBus"]

EVENT_KINDS = frozenset(
    {
        "track-started",
        "track-ended",
        "queue-empty",
        "stage-fault",
        "config-applied",
        "config-rejected",
        "xrun",
        "seeked",
        "stage-removed",
        "stage-reloaded",
        "track-error",
    }
)
_log = logging.getLogger("stellatune.player")
Callback = Callable[[dict[str, Any]], object]


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[int, tuple[Callback, Optional[frozenset[str]]]] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._q: queue.Queue[Optional[dict[str, Any]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="stellatune-player-events", daemon=True)
        self._thread.start()

    def subscribe(self, callback: Callback, kinds: Optional[Iterable[str]] = None) -> Callable[[], None]:
        """Call ``callback(event)`` for every event (of ``kinds``); returns the unsubscribe function."""
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

    def emit(self, kind: str, **details: Any) -> None:
        self._q.put({"kind": kind, **details})

    def _run(self) -> None:
        while True:
            event = self._q.get()
            if event is None:
                return
            if event["kind"] == "_flush":
                event["_done"].set()
                continue
            with self._lock:
                subs = list(self._subs.values())
            for callback, wanted in subs:
                if wanted is None or event["kind"] in wanted:
                    try:
                        callback(event)
                    except Exception:  # noqa: BLE001 (a failing callback never breaks the player)
                        _log.exception("player event callback failed on %s", event["kind"])

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every event emitted so far has been delivered (tests, close)."""
        done = threading.Event()
        self._q.put({"kind": "_flush", "_done": done})
        if threading.current_thread() is not self._thread:
            done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._q.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
