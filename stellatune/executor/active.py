"""The executor's record of one active plugin: its components, host context, log and instances."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from wasmtime.component import Component, Linker

from ..errors import RuntimeStateError
from .descriptors import CapabilityInfo, PluginDescriptor
from .engine import ComponentEngine
from .imports import PluginImports
from .instance import InstanceLimits, PluginInstance, PluginLog
from .worlds import WorldSpec

__all__ = ["LoadedComponent", "ActivePlugin"]


@dataclass(frozen=True)
class LoadedComponent:
    """A compiled component checked against its world."""

    component_id: str
    rel_path: str
    world: WorldSpec
    cache_key: str
    component: Component


@dataclass
class ActivePlugin:
    """Everything the executor holds for one active plugin; ``instances`` are all its live stores."""

    plugin_id: str
    info: PluginDescriptor
    capabilities: list[CapabilityInfo]
    components: dict[str, LoadedComponent]
    context: PluginImports
    log: PluginLog
    engine: ComponentEngine
    linker_for: Callable[[WorldSpec], Linker]
    limits: InstanceLimits
    instances: set[PluginInstance] = field(default_factory=set)
    handles: dict[tuple[str, str], object] = field(default_factory=dict)
    """(kind, type id) → the capability handle (``ComponentExecutor._handle`` types it)."""
    active: bool = True
    deactivation_reason: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)

    def ensure_active(self) -> None:
        if not self.active:
            raise RuntimeStateError(
                f"plugin {self.plugin_id} was deactivated ({self.deactivation_reason}); "
                "ask the executor for a new handle"
            )

    def spawn(self, component_id: str) -> PluginInstance:
        """A new instance of one of this plugin's components (``on-enable`` has run)."""
        self.ensure_active()
        loaded = self.components[component_id]
        # Instantiating runs the guest's on-enable (up to the hook deadline), so it happens
        # outside the lock: a deactivation or another spawn never waits on plugin code, and
        # the linker (behind the executor's lock) is never fetched under this one.
        instance = PluginInstance(
            engine=self.engine,
            linker=self.linker_for(loaded.world),
            component=loaded.component,
            world=loaded.world,
            plugin_id=self.plugin_id,
            component_id=component_id,
            context=self.context,
            log=self.log,
            limits=self.limits,
        )
        with self.lock:
            tracked = self.active
            if tracked:
                self.instances.add(instance)
        if not tracked:
            # Deactivated while on-enable ran: the teardown did not see this instance.
            instance.disable(self.deactivation_reason)
            self.ensure_active()  # raises
        return instance

    def retire(self, instance: PluginInstance, reason: str = "host-disable") -> None:
        """Tear one instance down (session closed, or broken) and stop tracking it."""
        instance.disable(reason)
        with self.lock:
            self.instances.discard(instance)

    def interrupt(self) -> None:
        """Cancel the call in flight of every instance (their host waits end at once) and make
        the instances refuse new calls; takes no instance lock (docs/executor.md, Deadlines)."""
        with self.lock:
            instances = list(self.instances)
        for instance in instances:
            instance.interrupt()

    def deactivate(self, reason: str) -> None:
        """Tear down every instance with ``reason``; when this returns, none is tracked.

        Every call in flight is cancelled before any instance lock is taken, so a call blocked
        in a host import ends at once. An instance whose call still runs after
        ``limits.disable_wait_s`` (a guest spinning in wasm) is left to that call, which tears it
        down when its epoch deadline stops it.
        """
        with self.lock:
            self.active = False
            self.deactivation_reason = reason
            instances = list(self.instances)
            self.instances.clear()
            self.handles.clear()
        for instance in instances:
            instance.interrupt()
        try:
            for instance in instances:
                instance.disable(reason, wait_s=self.limits.disable_wait_s)
        finally:
            # Even when a teardown is interrupted (Ctrl-C), the plugin's sidecars must not outlive it.
            self.context.close()
