"""Per-plugin named locks (WIT ``sidecar.lock``): one mutex per (plugin id, name), shared by
every instance and component of that plugin, so they can serialise access to a shared sidecar.

A wait for a lock is bounded by the calling plugin call's budget (``stellatune.host.budget``):
a lock taken twice without a timeout ends with ``timeout`` at the call's deadline, or at once
when the plugin is disabled, instead of blocking the host forever."""

from __future__ import annotations

import threading
import time
from typing import Optional

from .. import budget
from ..errors import invalid_arg, timeout

__all__ = ["LockTable", "LockGuard"]


class _NamedLock:
    """A non-re-entrant mutex whose waits a Condition can wake (a cancelled call must not sit
    in ``threading.Lock.acquire``, which nothing interrupts)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False

    def acquire(self, name: str, timeout_s: Optional[float]) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._held:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                budget.condition_wait(f"lock {name!r}", self._cond, left)
            self._held = True
            return True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify()


class LockGuard:
    """A held lock; ``unlock`` is idempotent (dropping the guard in the executor calls it)."""

    def __init__(self, name: str, lock: _NamedLock):
        self.name = name
        self._lock: Optional[_NamedLock] = lock

    def unlock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def held(self) -> bool:
        return self._lock is not None

    def __enter__(self) -> LockGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


class LockTable:
    """The named locks of every plugin of one runtime."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], _NamedLock] = {}

    def acquire(self, plugin_id: str, name: str, timeout_ms: Optional[int] = None) -> LockGuard:
        """Wait for the lock (``None``: as long as the calling plugin call may); ``timeout``
        when the wait ends first. Not re-entrant: locking twice without unlocking waits on
        yourself until the call's deadline."""
        key = name.strip()
        if not key:
            raise invalid_arg("lock name is blank")
        if timeout_ms is not None and timeout_ms < 0:
            raise invalid_arg(f"lock timeout must be >= 0, got {timeout_ms}")
        with self._guard:
            lock = self._locks.setdefault((plugin_id, key), _NamedLock())
        if not lock.acquire(key, None if timeout_ms is None else timeout_ms / 1000):
            raise timeout(f"lock {key!r} not acquired within {timeout_ms} ms")
        return LockGuard(key, lock)

    def forget(self, plugin_id: str) -> None:
        """Drop the plugin's locks nobody holds (it was deactivated: its instances, and the
        guards they held, are gone), so lock names such as ``file:<path>`` do not pile up."""
        with self._guard:
            for key in [k for k, lock in self._locks.items() if k[0] == plugin_id and not lock._held]:
                del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
