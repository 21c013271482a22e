"""The sidecar manager (one per runtime): launches, package-shared leases, locks, teardown."""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ...errors import PluginError
from ..errors import invalid_arg, io_error, os_reason, unsupported
from ..grants import PluginHostContext
from .launch import Generation, plan_launch
from .locks import LockGuard, LockTable
from .spec import LaunchScope, LaunchSpec, TransportKind, TransportOption, normalise_role, order_options
from .supervisor import RestartPolicy, SidecarEvent, SidecarSlot, SidecarStats, SlotState, Supervisor, has_exited
from .transports import Channel

__all__ = ["SidecarManager", "SidecarProcess"]

log = logging.getLogger("stellatune.host.sidecar")
DEFAULT_GRACE_MS = 1500
DEFAULT_CONNECT_TIMEOUT_MS = 5000
EVENT_HISTORY = 1000


class SidecarProcess:
    """WIT ``process``: a plugin's handle on a sidecar. For ``package-shared`` sidecars it is
    one lease among possibly many; ``terminate`` and ``close`` then only release the lease."""

    def __init__(self, manager: SidecarManager, slot: SidecarSlot, scope: LaunchScope):
        self._manager = manager
        self._slot = slot
        self.scope = scope
        self._released = False

    # --- WIT methods -----------------------------------------------------------------------

    def open_control(self) -> Channel:
        """A channel over the first control transport that works (launch order + stdio)."""
        return self._open("control", ("control",), order_options(self._slot.plan.control))

    def open_data(self, role: str, preferred: Sequence[TransportOption] = ()) -> Channel:
        """A data channel for ``role``: the call-time options first, then the launch-time ones,
        by priority; a role-specific endpoint wins over the generic data endpoint."""
        names = (f"data-{normalise_role(role)}", "data") if normalise_role(role) else ("data",)
        return self._open(f"data role {role!r}", names, order_options(preferred, self._slot.plan.data))

    def wait_exit(self, timeout_ms: Optional[int] = None) -> Optional[int]:
        """Exit status of the current process (negative: killed by that signal), or ``None``
        if it is still running when the timeout ends. Still answers after ``terminate`` for an
        instance-scope sidecar (with the status it ended with)."""
        if self.scope is not LaunchScope.INSTANCE:
            self._check()
        return self._slot.wait_exit(None if timeout_ms is None else timeout_ms / 1000)

    def terminate(self, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        """Instance scope: EOF on stdin, ``grace_ms`` to exit, then SIGKILL (and reap).
        Package-shared: release this lease; the process stays while the plugin is active."""
        if self._released:
            return
        self._released = True
        self._manager._release(self, grace_ms / 1000)

    def close(self) -> None:
        """Drop the handle: terminate with no grace (instance) or release the lease (shared)."""
        self.terminate(0)

    # --- diagnostics -------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        gen = self._slot.generation
        return gen.pid if gen is not None and self._slot.state is SlotState.RUNNING else None

    @property
    def state(self) -> SlotState:
        return self._slot.state

    def log_tail(self) -> list[str]:
        """The last lines the sidecar wrote to stderr (and stdout, when stdout is no channel)."""
        gen = self._slot.generation
        return list(gen.log_tail) if gen is not None else []

    # --- internals ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self._released:
            raise invalid_arg("sidecar handle was terminated or released")

    def _open(self, what: str, names: tuple[str, ...], options: list[TransportOption]) -> Channel:
        """Try ``options`` in order on the endpoints called ``names`` (most specific first)."""
        self._check()
        for _attempt in range(3):
            gen = self._slot.current(self._manager.restart_wait_s)
            channel, errors = self._try_options(gen, names, options)
            if channel is not None:
                return self._slot.track(channel)
            if not has_exited(gen):
                break
            # The sidecar died while we were connecting: go again on the restarted process.
        raise io_error(f"no transport for the {what} channel worked: " + "; ".join(errors))

    def _try_options(
        self, gen: Generation, names: tuple[str, ...], options: list[TransportOption]
    ) -> tuple[Optional[Channel], list[str]]:
        errors: list[str] = []
        for option in options:
            lookup = ("stdio",) if option.kind is TransportKind.STDIO else names
            endpoint = next((e for e in (gen.endpoint(n, option.kind) for n in lookup) if e is not None), None)
            if endpoint is None:
                why = (
                    "stdout is not a channel (list stdio in the launch spec)"
                    if option.kind is TransportKind.STDIO
                    else "no endpoint was requested at launch"
                )
                errors.append(f"{option.kind.value}: {why}")
                continue
            exit_fd = gen.pidfd
            if exit_fd is None:
                errors.append(f"{option.kind.value}: the sidecar exited")
                break
            try:
                channel = endpoint.connect(
                    self._manager.connect_timeout_s,
                    is_stale=functools.partial(self._slot.is_stale, gen),
                    exit_fd=exit_fd,
                )
            except PluginError as exc:
                errors.append(f"{option.kind.value}: {exc.message}")
                continue
            except OSError as exc:  # the generation was torn down under us
                errors.append(f"{option.kind.value}: {os_reason(exc)}")
                continue
            return channel, errors
        return None, errors


class SidecarManager:
    """Launches and supervises the sidecars of every plugin of one runtime.

    ``runtime_dir`` holds one private directory per sidecar process (sockets, FIFOs, rings);
    by default a fresh directory under ``/dev/shm`` (else the temp dir), removed by
    :meth:`shutdown`. ``on_event`` receives every :class:`SidecarEvent` (on the supervisor
    thread or the caller's; keep it short).
    """

    def __init__(
        self,
        *,
        runtime_dir: Optional[Path] = None,
        policy: RestartPolicy = RestartPolicy(),
        connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS,
        shutdown_grace_ms: int = DEFAULT_GRACE_MS,
        on_event: Optional[Callable[[SidecarEvent], None]] = None,
    ):
        self.policy = policy
        self.connect_timeout_s = connect_timeout_ms / 1000
        self.shutdown_grace_s = shutdown_grace_ms / 1000
        # A caller waits at most one full back-off (plus slack) for a crashed sidecar's restart.
        self.restart_wait_s = policy.backoff_max_s + 2.0
        self._on_event = on_event
        self._lock = threading.Lock()
        self._base = runtime_dir
        self._own_base = runtime_dir is None
        self._slot_ids = itertools.count(1)
        self._slots: dict[str, list[SidecarSlot]] = collections.defaultdict(list)
        self._shared: dict[tuple, tuple[SidecarSlot, int]] = {}  # key -> (slot, leases)
        self._stats: dict[str, SidecarStats] = collections.defaultdict(SidecarStats)
        self._events: collections.deque[SidecarEvent] = collections.deque(maxlen=EVENT_HISTORY)
        self._locks = LockTable()
        self._supervisor: Optional[Supervisor] = None
        self._closed = False

    # --- WIT free functions ------------------------------------------------------------------

    def launch(self, ctx: PluginHostContext, spec: LaunchSpec) -> SidecarProcess:
        """WIT ``sidecar.launch``. Errors: ``denied`` (executable not granted), ``not-found``,
        ``invalid-arg`` (bad env, args or options), ``io`` (could not start, crash loop)."""
        plan = plan_launch(ctx, spec)
        scope = LaunchScope(spec.scope)
        key = (ctx.plugin_id, spec.signature())
        with self._lock:
            if self._closed:
                raise unsupported("the sidecar manager is shut down")
            existing = self._shared.get(key) if scope is LaunchScope.PACKAGE_SHARED else None
            if existing is None or existing[0].state is SlotState.STOPPED:
                slot_id = next(self._slot_ids)
                slot = SidecarSlot(
                    slot_id,
                    plan,
                    self._runtime_dir() / f"s{slot_id}",
                    self.policy,
                    self._supervisor_thread(),
                    self._stats[ctx.plugin_id],
                    self._emit,
                )
                self._slots[ctx.plugin_id].append(slot)
                if scope is LaunchScope.PACKAGE_SHARED:
                    self._shared[key] = (slot, 1)
                return SidecarProcess(self, slot, scope)
            slot, leases = existing
            self._shared[key] = (slot, leases + 1)
        lease = SidecarProcess(self, slot, scope)
        try:
            # Liveness check before reuse (restarts a dead one). It may wait out a back-off, so
            # not under the manager's lock, which every other plugin's launch and teardown takes.
            slot.current(self.restart_wait_s)
        except BaseException:
            lease.close()
            raise
        return lease

    def lock(self, ctx: PluginHostContext, name: str, timeout_ms: Optional[int] = None) -> LockGuard:
        """WIT ``sidecar.lock``: the plugin-wide named lock ``name``."""
        return self._locks.acquire(ctx.plugin_id, name, timeout_ms)

    # --- lifecycle -----------------------------------------------------------------------------

    def plugin_deactivated(self, plugin_id: str, grace_ms: Optional[int] = None) -> None:
        """End every sidecar of ``plugin_id`` (shared ones too); returns when all are reaped and
        their files removed. EOF goes to all first, so the grace runs once, not per sidecar."""
        with self._lock:
            slots = self._slots.pop(plugin_id, [])
            for key in [k for k in self._shared if k[0] == plugin_id]:
                del self._shared[key]
        grace = self.shutdown_grace_s if grace_ms is None else grace_ms / 1000
        pending = [(slot, slot.begin_terminate()) for slot in slots]
        deadline = time.monotonic() + grace
        for slot, gen in pending:
            slot.finish_terminate(gen, deadline)
        self._locks.forget(plugin_id)

    def shutdown(self, grace_ms: Optional[int] = None) -> None:
        """End every sidecar, stop the supervisor and remove the runtime directory. Idempotent."""
        with self._lock:
            self._closed = True
            plugin_ids = list(self._slots)
        for plugin_id in plugin_ids:
            self.plugin_deactivated(plugin_id, grace_ms)
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._own_base and self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)

    # --- observability -------------------------------------------------------------------------

    def stats(self, plugin_id: str) -> SidecarStats:
        """A copy of the plugin's counters (starts, exits, crashes, restarts, crash loops)."""
        with self._lock:
            return replace(self._stats[plugin_id])

    def events(self, plugin_id: Optional[str] = None) -> list[SidecarEvent]:
        """Recent events, oldest first."""
        return [e for e in list(self._events) if plugin_id is None or e.plugin_id == plugin_id]

    @property
    def runtime_dir(self) -> Optional[Path]:
        return self._base

    # --- internals -----------------------------------------------------------------------------

    def _release(self, handle: SidecarProcess, grace_s: float) -> None:
        slot = handle._slot
        if handle.scope is LaunchScope.PACKAGE_SHARED:
            with self._lock:
                for key, (s, leases) in self._shared.items():
                    if s is slot:
                        # At 0 leases the process stays: it lives as long as the plugin is active.
                        self._shared[key] = (s, max(0, leases - 1))
                        break
            return
        slot.terminate(grace_s)
        with self._lock:
            for slots in self._slots.values():
                if slot in slots:
                    slots.remove(slot)

    def leases(self, plugin_id: str) -> int:
        """Leases held on the plugin's package-shared sidecars (diagnostics)."""
        with self._lock:
            return sum(n for (pid, _), (_, n) in self._shared.items() if pid == plugin_id)

    def _emit(self, event: SidecarEvent) -> None:
        self._events.append(event)
        log.info("sidecar %s/%d %s: %s", event.plugin_id, event.slot, event.kind, event.message)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("sidecar event listener failed")

    def _runtime_dir(self) -> Path:
        if self._base is not None and not self._own_base:
            self._base.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._base is None:
            shm = Path("/dev/shm")
            parent = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
            self._base = Path(tempfile.mkdtemp(prefix="stellatune-sidecars-", dir=parent))
        return self._base

    def _supervisor_thread(self) -> Supervisor:
        if self._supervisor is None:
            self._supervisor = Supervisor()
        return self._supervisor
