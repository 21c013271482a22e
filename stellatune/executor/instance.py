"""One component instance in its own store: lock, deadlines, memory cap, lifecycle hooks, teardown.

Every call into a guest goes through :meth:`PluginInstance.call`, which holds the store's lock
(wasmtime-py releases the GIL inside calls, so two threads could otherwise enter one store), arms
an epoch deadline, and maps failures: a ``plugin-error`` result becomes :class:`PluginError`, a
trap becomes :class:`PluginTrap`, a deadline overrun :class:`PluginTimeout`. After a trap the
component instance refuses re-entry, so the instance is torn down at once and the caller must
get a fresh one.

The epoch deadline only interrupts wasm code. Host imports run in Python on the calling thread,
so each call also publishes a :class:`~stellatune.host.budget.CallBudget` (the same deadline, and
a cancel signal) that every blocking host import waits under: a wait ends at the deadline, or at
once when :meth:`PluginInstance.interrupt` cancels it because the plugin is being disabled.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import wasmtime
from wasmtime.component import Component, Func, Instance, Linker, ResourceAny

from .. import diagnostics
from ..errors import ActivationError, PluginError, PluginErrorCode, PluginTimeout, PluginTrap, RuntimeStateError
from ..host.budget import CallBudget, running_under
from .engine import ComponentEngine
from .imports import PluginImports, StoreImports
from .typedcall import Signature, exports_of
from .values import unwrap
from .worlds import WorldSpec, iface

__all__ = ["InstanceLimits", "PluginLog", "PluginInstance", "GuestResource"]

# `Any` here is a component value: the arguments and results of guest calls, which wasmtime-py
# passes untyped (lowered and lifted by the function's own component type).


@dataclass(frozen=True)
class InstanceLimits:
    """Containment for each store: call deadlines, a linear-memory cap, and how long a
    deactivation waits for a call in flight before leaving the teardown to that call."""

    call_timeout_s: float = 10.0
    hook_timeout_s: float = 5.0
    memory_bytes: int = 512 << 20
    disable_wait_s: float = 2.0


class PluginLog:
    """The file a plugin's stdout and stderr are appended to (one per plugin, shared by its stores)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, data: bytes) -> None:
        with self._lock, open(self.path, "ab") as f:
            f.write(data)

    def note(self, text: str) -> None:
        """A host-side line in the same log, marked so it cannot be mistaken for guest output."""
        self.write(f"[stellatune] {text}\n".encode())

    def text(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""


class GuestResource:
    """A guest resource this instance owns (session, processor, catalog...), closed on teardown."""

    def __init__(self, instance: PluginInstance, handle: ResourceAny, interface: str, resource: str):
        self.instance = instance
        self.handle = handle
        self.interface = interface
        self.resource = resource
        self.closed = False

    def call(self, method: str, *args: Any, timeout_s: Optional[float] = None) -> Any:
        """Call ``[method]<resource>.<method>`` with this resource as ``self``."""
        if self.closed:
            raise RuntimeStateError(f"{self.resource} of {self.instance.plugin_id} is closed")
        return self.instance.call(
            self.interface, f"[method]{self.resource}.{method}", self.handle, *args, timeout_s=timeout_s
        )

    def close(self) -> None:
        """Run the guest's ``close`` and drop the handle; safe to call twice or after teardown."""
        self.instance.close_resource(self)


class PluginInstance:
    """A live instance of one component of one plugin; ``on-enable`` has run when this exists."""

    def __init__(
        self,
        *,
        engine: ComponentEngine,
        linker: Linker,
        component: Component,
        world: WorldSpec,
        plugin_id: str,
        component_id: str,
        context: PluginImports,
        log: PluginLog,
        limits: InstanceLimits,
    ):
        self.plugin_id = plugin_id
        self.component_id = component_id
        self.world = world
        self.lock = threading.RLock()
        self._engine = engine
        self._limits = limits
        self._log = log
        self._component = component
        self._exports = exports_of(component)
        self._funcs: dict[tuple[str, str], tuple[Func, Signature]] = {}
        self._resources: list[GuestResource] = []
        self.closed = False
        # Deactivation state, guarded by _state_lock (never held while plugin code runs):
        self._state_lock = threading.Lock()
        self._budget: Optional[CallBudget] = None  # the call in flight, if any
        self._interrupted = False  # the plugin is being disabled: refuse new calls
        self._in_teardown = False  # disable() is running its own calls (close, on-disable)
        self._doomed: Optional[str] = None  # disable gave up waiting: the running call tears down
        diagnostics.track("component_instances", self)
        self.store = diagnostics.track("component_stores", wasmtime.Store(engine.engine))
        self.store.set_limits(memory_size=limits.memory_bytes)
        wasi = wasmtime.WasiConfig()
        # Nothing granted: no preopens, env, args or stdin; output goes to the plugin's log.
        wasi.stdout_custom = log.write
        wasi.stderr_custom = log.write
        self.store.set_wasi(wasi)
        self._imports = StoreImports(self.store, context)
        self.store.set_epoch_deadline(engine.ticks_for(limits.hook_timeout_s))
        try:
            self._instance: Instance = linker.instantiate(self.store, component)
        except Exception as e:
            self._teardown()
            raise ActivationError(f"cannot instantiate {component_id}: {_summary(e)}", plugin_id) from e
        try:
            self.call("lifecycle", "on-enable", timeout_s=limits.hook_timeout_s)
        except BaseException:
            # An instance whose on-enable failed never served a call: drop it without on-disable.
            self._teardown()
            raise

    @property
    def imports(self) -> StoreImports:
        return self._imports

    # --- calls ------------------------------------------------------------------------------

    def _func(self, interface: str, name: str) -> tuple[Func, Signature]:
        key = (interface, name)
        found = self._funcs.get(key)
        if found is None:
            index = self._exports.index(self._component, iface(interface), name)
            func = self._instance.get_func(self.store, index) if index is not None else None
            if func is None:
                raise PluginError(
                    PluginErrorCode.UNSUPPORTED,
                    f"component has no export {interface}.{name}",
                    plugin_id=self.plugin_id,
                    capability=self.world.kind,
                )
            found = self._funcs[key] = (func, self._exports.signature(iface(interface), name, func, self.store))
        return found

    def call(self, interface: str, name: str, *args: Any, timeout_s: Optional[float] = None) -> Any:
        """Call an export under the store lock and a deadline; return its ``ok`` value."""
        with self.lock:
            try:
                return self._call_locked(interface, name, args, timeout_s)
            finally:
                self._after_call()

    def _call_locked(self, interface: str, name: str, args: tuple[Any, ...], timeout_s: Optional[float]) -> Any:
        if self.closed:
            raise RuntimeStateError(f"instance of {self.plugin_id}/{self.component_id} is gone")
        what = f"{interface}.{name}"
        func, signature = self._func(interface, name)
        seconds = timeout_s if timeout_s is not None else self._limits.call_timeout_s
        budget = self._begin_call(seconds)
        self.store.set_epoch_deadline(self._engine.ticks_for(seconds))
        self._imports.pending = None
        try:
            with running_under(budget):
                result = signature.call(self.store, func, *args)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            cause = self._imports.pending
            error = self._broken(e, what, seconds, cause, overran=budget.expired())
            if cause is not None and not isinstance(cause, Exception):
                raise cause from None  # KeyboardInterrupt, SystemExit: the caller's, not the plugin's
            raise error from cause or e
        except (TypeError, ValueError, OverflowError) as e:
            # Raised while lowering our own arguments, before the guest ran: the store is fine.
            raise PluginError(
                PluginErrorCode.INVALID_ARG, f"{what}: {e}", plugin_id=self.plugin_id, capability=self.world.kind
            ) from e
        except Exception as e:
            raise self._broken(e, what, seconds) from e
        finally:
            self._end_call(budget)
        try:
            return unwrap(result, plugin_id=self.plugin_id, capability=self.world.kind)
        except PluginError as e:
            raise self._overrun(e, budget, what, seconds) from e

    def _overrun(self, error: PluginError, budget: CallBudget, what: str, seconds: float) -> Exception:
        """The error a failed call reports: the plugin's own, unless the call was cut short (a
        host import gave up because the deadline passed or the plugin is being disabled)."""
        where = {"plugin_id": self.plugin_id, "capability": self.world.kind}
        if budget.cancel.is_set():
            return RuntimeStateError(f"{what} of {self.plugin_id} was interrupted: the plugin is being disabled")
        if budget.expired():
            return PluginTimeout(f"{what} ran past its {seconds:g} s deadline (waiting in a host import)", **where)
        return error

    # --- deadlines, cancellation, deactivation ------------------------------------------------

    def _begin_call(self, seconds: float) -> CallBudget:
        """Publish the budget of the call about to start (so :meth:`interrupt` can cancel it)."""
        budget = CallBudget(time.monotonic() + seconds)
        with self._state_lock:
            if self._interrupted and not self._in_teardown:
                raise RuntimeStateError(f"plugin {self.plugin_id} is being disabled")
            self._budget = budget
        return budget

    def _end_call(self, budget: CallBudget) -> None:
        with self._state_lock:
            self._budget = None
        budget.cancel.close()

    def _after_call(self) -> None:
        """Runs under the store lock as a call returns: finish a teardown that gave up waiting."""
        with self._state_lock:
            reason = None if self._in_teardown else self._doomed
        if reason is not None and not self.closed:
            self._disable_locked(reason)

    def interrupt(self) -> None:
        """The plugin is being disabled: cancel the call in flight (every host wait it is in
        ends at once with ``timeout``) and refuse new calls. Takes no store lock, so it never
        waits for plugin code."""
        with self._state_lock:
            self._interrupted = True
            budget = self._budget
        if budget is not None:
            budget.cancel.set()

    def _broken(
        self,
        error: BaseException,
        what: str,
        seconds: float,
        cause: Optional[BaseException] = None,
        *,
        overran: bool = False,
    ) -> PluginError:
        """The instance can no longer be entered: tear it down now and describe why."""
        where = {"plugin_id": self.plugin_id, "capability": self.world.kind}
        why = f"host import failed: {type(cause).__name__}: {cause}" if cause is not None else _summary(error)
        self._log.note(f"{what} failed, instance discarded: {why}")
        self._teardown()
        if cause is None and (overran or "wasm trap: interrupt" in str(error)):
            return PluginTimeout(f"{what} ran past its {seconds:g} s deadline", **where)
        return PluginTrap(f"{what}: {why}", **where)

    # --- resources --------------------------------------------------------------------------

    def adopt(self, handle: ResourceAny, interface: str, resource: str) -> GuestResource:
        """Track a guest resource returned by a call so teardown can close it first."""
        res = GuestResource(self, handle, interface, resource)
        with self.lock:
            self._resources.append(res)
        return res

    def close_resource(self, res: GuestResource) -> None:
        with self.lock:
            if res.closed:
                return
            res.closed = True
            if res in self._resources:
                self._resources.remove(res)
            if self.closed:
                return
            try:
                self.call(
                    res.interface, f"[method]{res.resource}.close", res.handle, timeout_s=self._limits.hook_timeout_s
                )
                res.handle.drop(self.store)
            except (PluginError, RuntimeStateError) as e:  # RuntimeStateError: interrupted again
                self._log.note(f"closing {res.resource} failed: {e}")
            except wasmtime.WasmtimeError as e:  # the guest's destructor trapped
                self._broken(e, f"dropping {res.resource}", self._limits.hook_timeout_s)

    # --- teardown ---------------------------------------------------------------------------

    def disable(self, reason: str, wait_s: Optional[float] = None) -> bool:
        """Close every guest resource, run ``on-disable(reason)``, then drop the store.

        ``wait_s`` bounds the wait for a call in flight. If that call is still running then
        (a guest spinning in wasm until its epoch deadline), the instance is *doomed*: the
        call tears it down when it returns, and this returns ``False`` at once.
        """
        if self.lock.acquire(timeout=-1 if wait_s is None else wait_s):
            try:
                self._disable_locked(reason)
            finally:
                self.lock.release()
            return True
        with self._state_lock:
            if self._budget is not None:  # still in a guest call; _after_call sees this
                self._doomed = reason
                self._log.note(
                    f"on-disable({reason}) left to the call in flight, which did not end within {wait_s:g} s"
                )
                return False
        with self.lock:  # the call ended in between: the lock is free or about to be
            self._disable_locked(reason)
        return True

    def _disable_locked(self, reason: str) -> None:
        if self.closed:
            return
        with self._state_lock:
            self._in_teardown = True
        try:
            for res in list(self._resources):
                self.close_resource(res)
            if not self.closed:
                try:
                    self.call("lifecycle", "on-disable", reason, timeout_s=self._limits.hook_timeout_s)
                except (PluginError, RuntimeStateError) as e:
                    # Teardown goes on regardless: a failing hook must not keep the plugin alive.
                    self._log.note(f"on-disable({reason}) failed: {e}")
        finally:
            # Also when interrupted (Ctrl-C in a host import): the store and its host
            # resources must not outlive a teardown.
            self._teardown()

    def _teardown(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for res in self._resources:
                res.closed = True
            self._resources.clear()
            self._funcs.clear()
            self._imports.close()
            self.store.close()
            diagnostics.release("component_stores", self.store)
            diagnostics.release("component_instances", self)


def _summary(error: BaseException) -> str:
    """The meaningful line of a wasmtime error (its text starts with a long backtrace)."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("wasm trap:", "Caused by", "0:", "1:")) or "trap" in ln:
            return ln
    return lines[-1] if lines else type(error).__name__
