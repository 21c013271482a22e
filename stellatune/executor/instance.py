"""One component instance in its own store: lock, deadlines, memory cap, lifecycle hooks, teardown.

Every call into a guest goes through :meth:`PluginInstance.call`, which holds the store's lock
(wasmtime-py releases the GIL inside calls, so two threads could otherwise enter one store), arms
an epoch deadline, and maps failures: a ``plugin-error`` result becomes :class:`PluginError`, a
trap becomes :class:`PluginTrap`, a deadline overrun :class:`PluginTimeout`. After a trap the
component instance refuses re-entry, so the instance is torn down at once and the caller must
get a fresh one.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import wasmtime
from wasmtime.component import Component, Func, Instance, Linker, ResourceAny

from ..errors import ActivationError, PluginError, PluginTimeout, PluginTrap, RuntimeStateError
from .engine import ComponentEngine
from .imports import PluginImports, StoreImports
from .values import unwrap
from .worlds import WorldSpec, iface

__all__ = ["InstanceLimits", "PluginLog", "PluginInstance", "GuestResource"]


@dataclass(frozen=True)
class InstanceLimits:
    """Containment for each store: call deadlines and a linear-memory cap."""

    call_timeout_s: float = 10.0
    hook_timeout_s: float = 5.0
    memory_bytes: int = 512 << 20


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

    def __init__(self, instance: "PluginInstance", handle: ResourceAny, interface: str, resource: str):
        self.instance = instance
        self.handle = handle
        self.interface = interface
        self.resource = resource
        self.closed = False

    def call(self, method: str, *args: Any, timeout_s: Optional[float] = None) -> Any:
        """Call ``[method]<resource>.<method>`` with this resource as ``self``."""
        if self.closed:
            raise RuntimeStateError(f"{self.resource} of {self.instance.plugin_id} is closed")
        return self.instance.call(self.interface, f"[method]{self.resource}.{method}", self.handle, *args,
                                  timeout_s=timeout_s)

    def close(self) -> None:
        """Run the guest's ``close`` and drop the handle; safe to call twice or after teardown."""
        self.instance.close_resource(self)


class PluginInstance:
    """A live instance of one component of one plugin; ``on-enable`` has run when this exists."""

    def __init__(self, *, engine: ComponentEngine, linker: Linker, component: Component, world: WorldSpec,
                 plugin_id: str, component_id: str, context: PluginImports, log: PluginLog,
                 limits: InstanceLimits):
        self.plugin_id = plugin_id
        self.component_id = component_id
        self.world = world
        self.lock = threading.RLock()
        self._engine = engine
        self._limits = limits
        self._log = log
        self._funcs: dict[tuple[str, str], Func] = {}
        self._resources: list[GuestResource] = []
        self.closed = False
        self.store = wasmtime.Store(engine.engine)
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

    def _func(self, interface: str, name: str) -> Func:
        key = (interface, name)
        func = self._funcs.get(key)
        if func is None:
            parent = self._instance.get_export_index(self.store, iface(interface))
            index = self._instance.get_export_index(self.store, name, parent) if parent else None
            func = self._instance.get_func(self.store, index) if index else None
            if func is None:
                raise PluginError("unsupported", f"component has no export {interface}.{name}",
                                  plugin_id=self.plugin_id, capability=self.world.kind)
            self._funcs[key] = func
        return func

    def call(self, interface: str, name: str, *args: Any, timeout_s: Optional[float] = None) -> Any:
        """Call an export under the store lock and a deadline; return its ``ok`` value."""
        with self.lock:
            if self.closed:
                raise RuntimeStateError(f"instance of {self.plugin_id}/{self.component_id} is gone")
            func = self._func(interface, name)
            seconds = timeout_s if timeout_s is not None else self._limits.call_timeout_s
            self.store.set_epoch_deadline(self._engine.ticks_for(seconds))
            self._imports.pending = None
            try:
                result = func(self.store, *args)
            except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
                cause = self._imports.pending
                error = self._broken(e, f"{interface}.{name}", seconds, cause)
                if cause is not None and not isinstance(cause, Exception):
                    raise cause from None  # KeyboardInterrupt, SystemExit: the caller's, not the plugin's
                raise error from cause or e
            except (TypeError, ValueError, OverflowError) as e:
                # Raised while lowering our own arguments, before the guest ran: the store is fine.
                raise PluginError("invalid-arg", f"{interface}.{name}: {e}", plugin_id=self.plugin_id,
                                  capability=self.world.kind) from e
            except Exception as e:  # noqa: BLE001 - wasmtime-py re-raised something unexpected
                raise self._broken(e, f"{interface}.{name}", seconds) from e
            return unwrap(result, plugin_id=self.plugin_id, capability=self.world.kind)

    def _broken(self, error: BaseException, what: str, seconds: float,
                cause: Optional[BaseException] = None) -> PluginError:
        """The instance can no longer be entered: tear it down now and describe why."""
        where = {"plugin_id": self.plugin_id, "capability": self.world.kind}
        why = f"host import failed: {type(cause).__name__}: {cause}" if cause is not None else _summary(error)
        self._log.note(f"{what} failed, instance discarded: {why}")
        self._teardown()
        if cause is None and "wasm trap: interrupt" in str(error):
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
                self.call(res.interface, f"[method]{res.resource}.close", res.handle,
                          timeout_s=self._limits.hook_timeout_s)
                res.handle.drop(self.store)
            except PluginError as e:
                self._log.note(f"closing {res.resource} failed: {e}")
            except wasmtime.WasmtimeError as e:  # the guest's destructor trapped
                self._broken(e, f"dropping {res.resource}", self._limits.hook_timeout_s)

    # --- teardown ---------------------------------------------------------------------------

    def disable(self, reason: str) -> None:
        """Close every guest resource, run ``on-disable(reason)``, then drop the store."""
        with self.lock:
            if self.closed:
                return
            try:
                for res in list(self._resources):
                    self.close_resource(res)
                if not self.closed:
                    try:
                        self.call("lifecycle", "on-disable", reason, timeout_s=self._limits.hook_timeout_s)
                    except PluginError as e:
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


def _summary(error: BaseException) -> str:
    """The meaningful line of a wasmtime error (its text starts with a long backtrace)."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("wasm trap:", "Caused by", "0:", "1:")) or "trap" in ln:
            return ln
    return lines[-1] if lines else type(error).__name__
