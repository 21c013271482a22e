"""Per-plugin named locks (WIT ``sidecar.lock``): one mutex per (plugin id, name), shared by
every instance and component of that plugin, so they can serialise access to a shared sidecar."""
from __future__ import annotations

import threading
from typing import Optional

from ..errors import invalid_arg, timeout

__all__ = ["LockTable", "LockGuard"]


class LockGuard:
    """A held lock; ``unlock`` is idempotent (dropping the guard in the executor calls it)."""

    def __init__(self, name: str, lock: threading.Lock):
        self.name = name
        self._lock: Optional[threading.Lock] = lock

    def unlock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def held(self) -> bool:
        return self._lock is not None

    def __enter__(self) -> "LockGuard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


class LockTable:
    """The named locks of every plugin of one runtime."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def acquire(self, plugin_id: str, name: str, timeout_ms: Optional[int] = None) -> LockGuard:
        """Wait for the lock (forever when ``timeout_ms`` is ``None``); ``timeout`` when the
        wait ends first. Not re-entrant: locking twice without unlocking waits on yourself."""
        key = name.strip()
        if not key:
            raise invalid_arg("lock name is blank")
        if timeout_ms is not None and timeout_ms < 0:
            raise invalid_arg(f"lock timeout must be >= 0, got {timeout_ms}")
        with self._guard:
            lock = self._locks.setdefault((plugin_id, key), threading.Lock())
        if not lock.acquire(timeout=-1 if timeout_ms is None else timeout_ms / 1000):
            raise timeout(f"lock {key!r} not acquired within {timeout_ms} ms")
        return LockGuard(key, lock)
