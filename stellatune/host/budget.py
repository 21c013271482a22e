"""The time a host import may spend: the calling plugin call's remaining deadline, and its cancel.

Host imports run on the caller's thread, inside a guest call. The executor's epoch deadline
only interrupts wasm code, never a Python host function, so every host function that waits
(a lock, a channel read, a process exit, a connect, a socket read) asks this module how long
it may wait: at most what is left of the call's :class:`CallBudget`, whatever timeout the
plugin chose. The executor publishes the budget around each call (:func:`running_under`);
outside a guest call (plain Python use of ``stellatune.host``) there is none and waits keep
their own timeouts.

A budget can be **cancelled** (the plugin is being disabled). Cancelling wakes every wait at
once, without polling: fd waits include the cancel's wake pipe, Condition waits register a
notify, socket waits register a ``shutdown``. A wait that ends because the budget ran out or
was cancelled raises ``PluginError(timeout)`` naming only what the plugin asked for.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

from ..errors import PluginError
from .errors import timeout

__all__ = [
    "Cancel",
    "CallBudget",
    "current",
    "running_under",
    "allowed_wait",
    "check",
    "wait_fds",
    "wake_fd",
    "on_cancel",
    "condition_wait",
]


class Cancel:
    """A one-shot cancel signal that wakes waiters: an Event, a wake pipe for ``poll``, callbacks.

    The pipe is made on first use (most calls never wait on an fd) and closed by :meth:`close`;
    its fd is only touched under the lock, so a late :meth:`set` never writes to a reused fd.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._pipe: Optional[tuple[int, int]] = None
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._closed = False

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        """Cancel: every current and future wait under this signal ends at once."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            if self._pipe is not None:
                os.write(self._pipe[1], b"\0")
            callbacks = list(self._callbacks.values())
        for callback in callbacks:  # outside the lock: a callback takes its own locks
            try:
                callback()
            except OSError:  # e.g. shutdown() of a socket that closed meanwhile
                pass

    def wake_fd(self) -> Optional[int]:
        """An fd that becomes readable when cancelled (``None`` once closed)."""
        with self._lock:
            if self._closed:
                return None
            if self._pipe is None:
                self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                if self._event.is_set():
                    os.write(self._pipe[1], b"\0")
            return self._pipe[0]

    @contextlib.contextmanager
    def on_cancel(self, callback: Callable[[], None]) -> Iterator[None]:
        """Run ``callback`` if cancelled while inside the block (at once if already cancelled)."""
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._callbacks[key] = callback
            already = self._event.is_set()
        try:
            if already:
                callback()
            yield
        finally:
            with self._lock:
                self._callbacks.pop(key, None)

    def close(self) -> None:
        """Release the wake pipe; the signal itself stays usable (``set`` still wakes Events)."""
        with self._lock:
            self._closed = True
            pipe, self._pipe = self._pipe, None
        if pipe is not None:
            os.close(pipe[0])
            os.close(pipe[1])


@dataclass(frozen=True)
class CallBudget:
    """One guest call's limit: an absolute ``time.monotonic()`` deadline and a cancel signal."""

    deadline: float
    cancel: Cancel = field(default_factory=Cancel)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def exhausted(self) -> bool:
        """Cancelled, or past the deadline: no host wait may start."""
        return self.cancel.is_set() or self.expired()


_local = threading.local()


def current() -> Optional[CallBudget]:
    """The budget of the guest call running on this thread, if any."""
    return getattr(_local, "budget", None)


@contextlib.contextmanager
def running_under(budget: CallBudget) -> Iterator[CallBudget]:
    """Publish ``budget`` to host functions on this thread for the duration of a guest call.

    Calls nest (a decoder's host read that goes through a source plugin): the inner budget
    keeps the earlier deadline of the two, and cancelling the outer call cancels the inner one.
    """
    outer = current()
    if outer is not None and outer.deadline < budget.deadline:
        budget = CallBudget(outer.deadline, budget.cancel)
    _local.budget = budget
    try:
        with outer.cancel.on_cancel(budget.cancel.set) if outer is not None else contextlib.nullcontext():
            yield budget
    finally:
        _local.budget = outer


def _ended(what: str, budget: CallBudget) -> PluginError:
    why = "the plugin is being disabled" if budget.cancel.is_set() else "the call's deadline ended"
    return timeout(f"{what}: {why}")


def check(what: str) -> None:
    """Raise ``timeout`` now if the current call is cancelled or past its deadline."""
    budget = current()
    if budget is not None and budget.exhausted():
        raise _ended(what, budget)


def wake_fd() -> Optional[int]:
    """The current call's cancel wake fd, for a ``poll`` this module does not run itself."""
    budget = current()
    return budget.cancel.wake_fd() if budget is not None else None


def allowed_wait(what: str, timeout_s: Optional[float]) -> Optional[float]:
    """How long a host wait may take: ``timeout_s`` (``None``: no limit of its own) cut to the
    call's remaining budget. Raises ``timeout`` if nothing is left."""
    budget = current()
    if budget is None:
        return timeout_s
    if budget.exhausted():
        raise _ended(what, budget)
    left = budget.remaining()
    return left if timeout_s is None else min(timeout_s, left)


def wait_fds(what: str, fds: list[tuple[int, int]], timeout_s: Optional[float]) -> set[int]:
    """``poll`` ``(fd, events)`` pairs for up to ``timeout_s`` cut to the budget; returns the
    ready fds (empty on the wait's own timeout). Raises ``timeout`` when the budget runs out
    or is cancelled first."""
    wait_s = allowed_wait(what, timeout_s)
    budget = current()
    # The budget, not the caller's own timeout, decides when the wait ends.
    budget_bound = budget is not None and (timeout_s is None or (wait_s is not None and wait_s < timeout_s))
    poller = select.poll()
    for fd, events in fds:
        poller.register(fd, events)
    wake = budget.cancel.wake_fd() if budget is not None else None
    if wake is not None:
        poller.register(wake, select.POLLIN)
    ms = None if wait_s is None else max(0, int(wait_s * 1000 + 0.999))
    ready = {fd for fd, _ in poller.poll(ms)}
    ready.discard(wake)
    if budget is not None and (budget.cancel.is_set() or (not ready and budget_bound)):
        raise _ended(what, budget)
    return ready


@contextlib.contextmanager
def on_cancel(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` if the current call is cancelled inside the block (no budget: never)."""
    budget = current()
    if budget is None:
        yield
        return
    with budget.cancel.on_cancel(callback):
        yield


def condition_wait(what: str, cond: threading.Condition, timeout_s: Optional[float]) -> bool:
    """``cond.wait`` (the caller holds ``cond``) for up to ``timeout_s`` cut to the budget; a
    cancel notifies it. ``False`` on the wait's own timeout; ``timeout`` when the budget ends."""
    wait_s = allowed_wait(what, timeout_s)

    def wake() -> None:
        with cond:
            cond.notify_all()

    # The caller holds cond, and wake() takes it: registering cannot miss a notify, since
    # cond.wait releases it atomically.
    with on_cancel(wake):
        notified = cond.wait(wait_s)
    budget = current()
    if budget is not None and budget.exhausted():
        raise _ended(what, budget)
    return notified
