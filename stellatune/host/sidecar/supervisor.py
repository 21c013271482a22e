"""Supervision: watch every sidecar, restart crashed ones with back-off, stop a crash loop.

One :class:`Supervisor` thread per manager waits on the processes' pidfds (no polling), so an
exit is seen as it happens. A :class:`SidecarSlot` is one supervised sidecar: the launch plan
plus its current :class:`~.launch.Generation`.

Policy: an exit the host did not ask for is a *crash* when the status is non-zero or a signal,
and is restarted after ``backoff_initial_s * 2**(n-1)`` (capped at ``backoff_max_s``), ``n``
being the crashes within ``window_s``. At ``max_crashes`` crashes within the window the breaker
opens: the slot stays down, a ``crash-loop`` event is emitted, and every use of it fails with
``io`` saying so. A clean exit (status 0) is not restarted at once; the next use starts the
sidecar again (the liveness check before reuse).
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
import logging
import os
import select
import selectors
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ...errors import PluginError
from .. import budget
from ..errors import invalid_arg, io_error
from .launch import Generation, LaunchPlan
from .transports import Channel

__all__ = ["RestartPolicy", "SlotState", "SidecarStats", "SidecarEvent", "SidecarSlot", "Supervisor", "has_exited"]

log = logging.getLogger("stellatune.host.sidecar")


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a crashed sidecar, and when to give up (the breaker)."""

    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    max_crashes: int = 5
    """Crashes within ``window_s`` that open the breaker."""
    window_s: float = 60.0


class SlotState(str, enum.Enum):
    """Where a supervised sidecar stands."""

    RUNNING = "running"
    BACKOFF = "backoff"
    """Crashed; a restart is scheduled."""
    EXITED = "exited"
    """Exited cleanly on its own; started again on next use."""
    CRASH_LOOP = "crash-loop"
    """The breaker is open: no more restarts until the plugin is deactivated."""
    STOPPED = "stopped"
    """Terminated by the host; final."""


@dataclass
class SidecarStats:
    """Counters of one plugin's sidecars (all slots, past and present)."""

    starts: int = 0
    exits: int = 0
    crashes: int = 0
    restarts: int = 0
    crash_loops: int = 0

    def bump(self, name: str) -> None:
        # Slots of one plugin share this object but not a lock: count under a common one.
        with _STATS_LOCK:
            setattr(self, name, getattr(self, name) + 1)


_STATS_LOCK = threading.Lock()


@dataclass(frozen=True)
class SidecarEvent:
    """Something that happened to a sidecar, for logs, status pages and tests."""

    plugin_id: str
    slot: int
    kind: str
    """``started``, ``exited``, ``crashed``, ``restarted``, ``crash-loop``, ``stopped``."""
    message: str
    pid: Optional[int] = None
    returncode: Optional[int] = None
    at: float = field(default_factory=time.time)


class SidecarSlot:
    """One supervised sidecar. Thread-safe; state changes are announced on ``_cond``."""

    def __init__(
        self,
        slot_id: int,
        plan: LaunchPlan,
        directory: Path,
        policy: RestartPolicy,
        supervisor: Supervisor,
        stats: SidecarStats,
        emit: Callable[[SidecarEvent], None],
    ):
        self.id = slot_id
        self.plan = plan
        self._directory = directory
        self._policy = policy
        self._supervisor = supervisor
        self._stats = stats
        self._emit = emit
        self._cond = threading.Condition()
        self._crash_times: collections.deque[float] = collections.deque()
        self._generations = itertools.count(1)
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()
        self._terminating = False
        self.state = SlotState.RUNNING
        self.generation: Optional[Generation] = None
        self.last_returncode: Optional[int] = None
        self._logger = log.getChild(plan.plugin_id.replace(".", "_"))
        directory.mkdir(mode=0o700)
        try:
            with self._cond:
                self._start_locked(restart=False)
        except BaseException:
            directory.rmdir()  # the generation removed its own directory
            raise

    # --- starting --------------------------------------------------------------------------

    def _start_locked(self, *, restart: bool) -> None:
        index = next(self._generations)
        gen = Generation(self.plan, index, self._directory / f"g{index}", self._logger)
        if self.generation is not None:
            self.generation.close_pipes()
        self.generation = gen
        self.state = SlotState.RUNNING
        self._stats.bump("starts")
        if restart:
            self._stats.bump("restarts")
        self._supervisor.watch(self, gen)
        self._event("restarted" if restart else "started", f"{self.plan.name} started (generation {index})", gen)
        self._cond.notify_all()

    def _event(self, kind: str, message: str, gen: Optional[Generation] = None) -> None:
        self._emit(
            SidecarEvent(
                self.plan.plugin_id, self.id, kind, message, gen.pid if gen else None, gen.returncode if gen else None
            )
        )

    # --- exits (supervisor thread, or a caller that saw the exit first) ---------------------

    def on_exit(self, gen: Generation) -> None:
        """Record the exit of ``gen`` once; decide: stopped, exited, back-off or crash loop."""
        with self._cond:
            if gen.exited.is_set():
                return
            code = gen.reap()
            gen.kill_group()  # whatever it started goes with it
            gen.exited.set()
            self.last_returncode = code
            self._stats.bump("exits")
            if gen is not self.generation:
                gen.cleanup()
                gen.close_pipes()
                return
            if self._terminating:
                self.state = SlotState.STOPPED
                self._event("stopped", f"stopped with status {code}", gen)
            elif code == 0:
                self.state = SlotState.EXITED
                self._event("exited", "exited with status 0; it will start again on next use", gen)
            else:
                self._crashed_locked(
                    gen, f"crashed with {'signal ' + str(-code) if code < 0 else 'status ' + str(code)}"
                )
            gen.cleanup()
            self._cond.notify_all()

    def _crashed_locked(self, gen: Optional[Generation], what: str) -> None:
        now = time.monotonic()
        self._stats.bump("crashes")
        self._crash_times.append(now)
        while self._crash_times and now - self._crash_times[0] > self._policy.window_s:
            self._crash_times.popleft()
        n = len(self._crash_times)
        if n >= self._policy.max_crashes:
            self.state = SlotState.CRASH_LOOP
            self._stats.bump("crash_loops")
            self._event("crash-loop", f"{what}; {n} crashes within {self._policy.window_s:g} s, not restarting it", gen)
            self._logger.error("sidecar %s: crash loop, restarts stopped", self.plan.name)
            return
        delay = min(self._policy.backoff_initial_s * 2 ** (n - 1), self._policy.backoff_max_s)
        self.state = SlotState.BACKOFF
        self._event("crashed", f"{what}; restarting in {delay * 1000:.0f} ms", gen)
        self._supervisor.schedule(time.monotonic() + delay, self)

    def restart_due(self) -> None:
        """The back-off ended (supervisor thread)."""
        with self._cond:
            if self.state is SlotState.BACKOFF:
                try:
                    self._start_locked(restart=True)
                except PluginError as exc:
                    self._crashed_locked(None, f"restart failed: {exc.message}")
                self._cond.notify_all()

    # --- use ---------------------------------------------------------------------------------

    def current(self, wait_s: float) -> Generation:
        """The running generation, after a liveness check; waits out a back-off (up to
        ``wait_s``) and restarts a cleanly exited sidecar. ``io`` in a crash loop."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                gen = self.generation
                if self.state is SlotState.RUNNING and gen is not None:
                    if not has_exited(gen):
                        return gen
                    self.on_exit(gen)  # the condition's lock is re-entrant
                    continue
                if self.state is SlotState.CRASH_LOOP:
                    raise io_error(
                        f"sidecar {self.plan.name} is in a crash loop "
                        f"({self._policy.max_crashes} crashes within {self._policy.window_s:g} s); not restarted"
                    )
                if self.state is SlotState.STOPPED:
                    raise invalid_arg(f"sidecar {self.plan.name} was terminated")
                if self.state is SlotState.EXITED:
                    self._start_locked(restart=True)
                    fresh = self.generation
                    assert fresh is not None
                    return fresh  # no second liveness check: that would loop on a quick exiter
                left = deadline - time.monotonic()
                if left <= 0:
                    raise io_error(f"sidecar {self.plan.name} is restarting after a crash; try again")
                budget.condition_wait(f"sidecar {self.plan.name}", self._cond, left)

    def is_stale(self, gen: Generation) -> bool:
        return self.generation is not gen or self.state is SlotState.STOPPED

    def track(self, channel: Channel) -> Channel:
        self._channels.add(channel)
        return channel

    def wait_exit(self, timeout_s: Optional[float]) -> Optional[int]:
        """The exit status of the current generation, or ``None`` if it runs past the timeout."""
        with self._cond:
            gen = self.generation
            if gen is None or self.state is not SlotState.RUNNING:
                return self.last_returncode
        if not _wait_exit_fd(gen, timeout_s, f"sidecar {self.plan.name}: wait-exit"):
            return None
        self.on_exit(gen)
        return gen.returncode

    # --- teardown ----------------------------------------------------------------------------

    def begin_terminate(self) -> Optional[Generation]:
        """Mark the slot as going away and send EOF on stdin; returns the generation to wait for."""
        with self._cond:
            self._terminating = True
            self._supervisor.cancel(self)
            gen = self.generation
            if self.state is not SlotState.RUNNING or gen is None or gen.exited.is_set():
                self._finish_locked()
                return None
        gen.close_stdin()
        return gen

    def finish_terminate(self, gen: Optional[Generation], deadline: float) -> None:
        """Wait for ``gen`` until ``deadline``, then SIGKILL its group and reap it."""
        if gen is not None:
            try:
                exited = _wait_exit_fd(
                    gen, max(0.0, deadline - time.monotonic()), f"sidecar {self.plan.name}: terminate"
                )
            except PluginError:  # a plugin's terminate ran out of call budget: kill now, not after the grace
                exited = False
            if not exited:
                gen.kill_group()
                _wait_exit_fd(gen, None)  # not cut by any budget: the process must be reaped
            self.on_exit(gen)
        with self._cond:
            self._finish_locked()

    def terminate(self, grace_s: float) -> None:
        self.finish_terminate(self.begin_terminate(), time.monotonic() + grace_s)

    def _finish_locked(self) -> None:
        if self.state is not SlotState.STOPPED:
            self.state = SlotState.STOPPED
            self._event("stopped", "stopped by the host")
        for channel in list(self._channels):
            channel.close()
        if self.generation is not None:
            self.generation.close_pipes()
        self._cond.notify_all()
        try:
            self._directory.rmdir()  # each generation removed its own directory already
        except OSError:
            pass


def has_exited(gen: Generation) -> bool:
    return gen.exited.is_set() or _wait_exit_fd(gen, 0)


def _wait_exit_fd(gen: Generation, timeout_s: Optional[float], what: Optional[str] = None) -> bool:
    """Wait on the pidfd (readable once the process has exited). With ``what`` (a wait a plugin
    asked for) the wait is cut to the calling plugin call's budget (``timeout`` when it ends)."""
    if gen.exited.is_set():
        return True
    pidfd = gen.pidfd
    if pidfd is None:
        return True
    if what is not None:
        return bool(budget.wait_fds(what, [(pidfd, select.POLLIN)], timeout_s))
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout_s is None else max(0, int(timeout_s * 1000))))


class Supervisor:
    """The thread that turns pidfd readiness into ``on_exit`` and back-off deadlines into
    ``restart_due``. Other threads hand it work through a queue and a wake-up pipe."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._pending: list[tuple[SidecarSlot, Generation]] = []
        self._timers: list[tuple[float, int, SidecarSlot]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="stellatune-sidecar-supervisor", daemon=True)
        self._thread.start()

    def watch(self, slot: SidecarSlot, gen: Generation) -> None:
        with self._lock:
            self._pending.append((slot, gen))
        self._wake()

    def schedule(self, when: float, slot: SidecarSlot) -> None:
        with self._lock:
            heapq.heappush(self._timers, (when, next(self._seq), slot))
        self._wake()

    def cancel(self, slot: SidecarSlot) -> None:
        with self._lock:
            self._timers = [t for t in self._timers if t[2] is not slot]
            heapq.heapify(self._timers)

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._unwatch(key.fd)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                for slot, gen in self._pending:
                    pidfd = gen.pidfd
                    if pidfd is None or gen.exited.is_set():
                        continue
                    # Our own copy of the pidfd: the generation closes its copy whenever
                    # its exit is handled, possibly on another thread...
                    try:
                        fd = os.dup(pidfd)
                    except OSError:
                        continue  # ...which may just have happened: nothing left to watch.
                    self._selector.register(fd, selectors.EVENT_READ, (slot, gen))
                self._pending.clear()
                wait = None if not self._timers else max(0.0, self._timers[0][0] - time.monotonic())
            for key, _ in self._selector.select(wait):
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                slot, gen = key.data
                self._unwatch(key.fd)
                self._guard(slot.on_exit, gen)
            self._forget_closed()
            self._fire_timers()

    @staticmethod
    def _guard(fn: Callable[..., None], *args: object) -> None:
        """Run one callback; an error in one sidecar's handling must not end supervision."""
        try:
            fn(*args)
        except Exception:
            log.exception("sidecar supervision step failed")

    def _forget_closed(self) -> None:
        """Unregister generations whose exit another thread already handled."""
        for key in list(self._selector.get_map().values()):
            if key.data is not None and key.data[1].exited.is_set():
                self._unwatch(key.fd)

    def _unwatch(self, fd: int) -> None:
        self._selector.unregister(fd)
        os.close(fd)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        due: list[SidecarSlot] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for slot in due:
            self._guard(slot.restart_due)
