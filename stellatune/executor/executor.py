"""The component executor: the runtime's lifecycle host, and where typed capability handles come from."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, TypeVar, cast

import wasmtime
from wasmtime.component import Component, Linker

from .. import diagnostics
from ..errors import ActivationError, RuntimeStateError
from ..paths import default_cache_dir
from .active import ActivePlugin, LoadedComponent
from .capabilities import (
    DecoderCapability,
    DspCapability,
    LyricsCapability,
    OutputSinkCapability,
    SourceCapability,
    _Capability,
)
from .descriptors import CapabilityInfo, PluginDescriptor
from .engine import CompileCache, ComponentEngine
from .imports import GrantedHostServices, HostServices, PluginImports, build_linker, manifest_with_host_grants
from .instance import InstanceLimits, PluginLog
from .worlds import WorldSpec, check_component, world_of

__all__ = ["ComponentExecutor"]

_C = TypeVar("_C", bound=_Capability)


def _kind_name(kind: object) -> str:
    """``AbilityKind.OUTPUT_SINK`` or ``"output-sink"`` → ``"output_sink"``."""
    return str(getattr(kind, "value", kind)).replace("-", "_")


def _reason_name(reason: object) -> str:
    return str(getattr(reason, "value", reason)).replace("_", "-")


class ComponentExecutor:
    """Runs plugin components under wasmtime; implements the runtime's ``LifecycleHost``.

    ``activate`` compiles (or loads from the cache) each component and checks it against its
    world by type; it instantiates nothing that lives on. Instances are made on first use, run
    ``on-enable`` before their first call and ``on-disable(reason)`` before teardown.
    """

    def __init__(
        self,
        cache_dir: Optional[Path] = None,
        host_services: Optional[HostServices] = None,
        *,
        limits: InstanceLimits = InstanceLimits(),
        log_dir: Optional[Path] = None,
    ):
        base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._engine = ComponentEngine()
        self.cache = CompileCache(self._engine, base)
        self.log_dir = Path(log_dir) if log_dir is not None else base / "logs"
        self.limits = limits
        self._host_services: HostServices = host_services or GrantedHostServices()
        self._linkers: dict[str, Linker] = {}
        self._plugins: dict[str, ActivePlugin] = {}
        self._lock = threading.RLock()
        self._shut_down = False

    # --- LifecycleHost ----------------------------------------------------------------------

    def prepare(self, plugin: PluginDescriptor, capabilities: Sequence[CapabilityInfo]) -> None:
        """Everything ``activate`` checks (compile, world and kinds, linking), activating nothing.

        The runtime calls this before it reloads a changed plugin, so broken files on disk never
        take down the running version. The compiled components stay cached for ``activate``.
        """
        self._ensure_running()
        self._load_components(plugin, capabilities)

    def activate(self, plugin: PluginDescriptor, capabilities: Sequence[CapabilityInfo]) -> None:
        """Compile and type-check every component of ``plugin``; raise ActivationError if one is wrong."""
        self._ensure_running()
        # Compiling can take seconds: do it without the executor lock, so calls into other
        # plugins are not held up.
        components = self._load_components(plugin, capabilities)
        # A previous version goes first (its on-disable outside the lock, like every teardown),
        # so its sidecars and instances are gone before the new version can make any.
        self._deactivate(plugin.id, "reload", keep={c.cache_key for c in components.values()})
        with self._lock:
            self._ensure_running()
            context = self._host_services.for_plugin(
                plugin.id, Path(plugin.root_dir), manifest_with_host_grants(plugin)
            )
            self._plugins[plugin.id] = ActivePlugin(
                plugin_id=plugin.id,
                info=plugin,
                capabilities=list(capabilities),
                components=components,
                context=context,
                log=PluginLog(self.log_path(plugin.id)),
                engine=self._engine,
                linker_for=self._linker,
                limits=self.limits,
            )

    def deactivate(self, plugin_id: str, reason: str) -> None:
        """Run ``on-disable(reason)`` on every instance of the plugin and drop them all."""
        self._deactivate(plugin_id, _reason_name(reason), keep=set())

    def _deactivate(self, plugin_id: str, reason: str, keep: set[str]) -> None:
        with self._lock:
            record = self._plugins.pop(plugin_id, None)
            if record is None:
                return
            in_use = keep | {c.cache_key for p in self._plugins.values() for c in p.components.values()}
        record.deactivate(reason)
        for loaded in record.components.values():
            if loaded.cache_key not in in_use:
                self.cache.forget(loaded.cache_key)

    def _ensure_running(self) -> None:
        if self._shut_down:
            raise RuntimeStateError(f"{self!r} is shut down")

    def shutdown(self) -> None:
        """Deactivate every plugin with ``shutdown`` and stop the engine's ticker."""
        with self._lock:
            if self._shut_down:
                return
            # Set first: an activation still compiling sees it and gives up.
            self._shut_down = True
            plugin_ids = list(self._plugins)
            records = list(self._plugins.values())
        try:
            # Every call in flight first, so no plugin's teardown waits behind another's:
            # host waits are cancelled, and wasm loops end at their next epoch check.
            for record in records:
                record.interrupt()
            self._engine.interrupt_all()
            # Outside the lock, like every deactivation: on-disable runs plugin code.
            for plugin_id in plugin_ids:
                self.deactivate(plugin_id, "shutdown")
        finally:
            self._host_services.shutdown()
            self._engine.close()

    # --- activation -------------------------------------------------------------------------

    def _linker(self, world: WorldSpec) -> Linker:
        with self._lock:
            linker = self._linkers.get(world.name)
            if linker is None:
                linker = self._linkers[world.name] = build_linker(self._engine.engine, world)
            return linker

    def _load_components(
        self, plugin: PluginDescriptor, capabilities: Sequence[CapabilityInfo]
    ) -> dict[str, LoadedComponent]:
        declared: dict[str, tuple[str, str]] = {}
        for cap in capabilities:
            seen = declared.setdefault(cap.component_id, (cap.component_rel_path, cap.world))
            if seen != (cap.component_rel_path, cap.world):
                raise ActivationError(f"component {cap.component_id} is declared with two paths or worlds", plugin.id)
        loaded: dict[str, LoadedComponent] = {}
        for component_id, (rel_path, world_text) in declared.items():
            try:
                world = world_of(world_text)
            except ActivationError as e:
                raise ActivationError(f"component {component_id}: {e}", plugin.id) from None
            for cap in capabilities:
                if cap.component_id == component_id and _kind_name(cap.kind) != world.kind:
                    raise ActivationError(
                        f"ability {_kind_name(cap.kind)}:{cap.type_id} is in component {component_id}, "
                        f"whose world {world.name} serves {world.kind}",
                        plugin.id,
                    )
            try:
                key, component = self.cache.load(Path(plugin.root_dir) / rel_path)
            except ActivationError as e:
                raise ActivationError(f"component {component_id}: {e}", plugin.id) from None
            problems = check_component(self._engine.engine, component, world)
            if problems:
                raise ActivationError(
                    f"component {component_id} does not implement world {world.name}: " + "; ".join(problems), plugin.id
                )
            self._check_linkable(plugin.id, component_id, component, world)
            loaded[component_id] = LoadedComponent(component_id, rel_path, world, key, component)
        return loaded

    def _check_linkable(self, plugin_id: str, component_id: str, component: Component, world: WorldSpec) -> None:
        # A throwaway instantiation (no hooks run) proves every import, WASI included, resolves.
        store = diagnostics.track("component_stores", wasmtime.Store(self._engine.engine))
        store.set_wasi(wasmtime.WasiConfig())
        store.set_limits(memory_size=self.limits.memory_bytes)
        store.set_epoch_deadline(self._engine.ticks_for(self.limits.hook_timeout_s))
        try:
            self._linker(world).instantiate(store, component)
        except Exception as e:
            text = [ln for ln in str(e).splitlines() if ln.strip()]
            raise ActivationError(
                f"component {component_id} cannot be linked: {' / '.join(text[:3])}", plugin_id
            ) from e
        finally:
            store.close()
            diagnostics.release("component_stores", store)

    # --- handles ----------------------------------------------------------------------------

    def _handle(self, cls: type[_C], plugin_id: str, type_id: str) -> _C:
        kind = cls.kind
        with self._lock:
            self._ensure_running()
            record = self._plugins.get(plugin_id)
            if record is None:
                raise RuntimeStateError(f"plugin {plugin_id} is not active")
            key = (kind, type_id.strip())
            handle = record.handles.get(key)
            if handle is None:
                matches = [c for c in record.capabilities if _kind_name(c.kind) == kind and c.type_id.strip() == key[1]]
                if not matches:
                    raise RuntimeStateError(f"plugin {plugin_id} has no {kind} ability {type_id!r}")
                handle = record.handles[key] = cls(record, matches[0])
            return cast(_C, handle)  # the handle under (kind, ...) is always of that kind's class

    def decoder(self, plugin_id: str, type_id: str) -> DecoderCapability:
        """The decoder ability ``type_id`` of an active plugin."""
        return self._handle(DecoderCapability, plugin_id, type_id)

    def source(self, plugin_id: str, type_id: str) -> SourceCapability:
        """The source ability (one long-lived catalog instance, shared by every caller)."""
        return self._handle(SourceCapability, plugin_id, type_id)

    def lyrics(self, plugin_id: str, type_id: str) -> LyricsCapability:
        """The lyrics ability (one long-lived provider instance)."""
        return self._handle(LyricsCapability, plugin_id, type_id)

    def output_sink(self, plugin_id: str, type_id: str) -> OutputSinkCapability:
        """The output-sink ability; control calls share one instance, ``open`` makes sessions."""
        return self._handle(OutputSinkCapability, plugin_id, type_id)

    def dsp(self, plugin_id: str, type_id: str) -> DspCapability:
        """The DSP ability; each ``create(spec)`` is a processor with its own instance."""
        return self._handle(DspCapability, plugin_id, type_id)

    # --- introspection ----------------------------------------------------------------------

    def log_path(self, plugin_id: str) -> Path:
        """Where the plugin's stdout/stderr (and the host's notes about it) are appended."""
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in plugin_id)
        return self.log_dir / f"{safe}.log"

    def host_imports(self, plugin_id: str) -> PluginImports:
        """The host services object of an active plugin (e.g. to add run-time grants)."""
        with self._lock:
            self._ensure_running()
            record = self._plugins.get(plugin_id)
            if record is None:
                raise RuntimeStateError(f"plugin {plugin_id} is not active")
            return record.context

    def is_active(self, plugin_id: str) -> bool:
        with self._lock:
            return plugin_id in self._plugins

    def live_instances(self, plugin_id: str) -> int:
        """How many instances of the plugin exist now (0 once it is deactivated)."""
        with self._lock:
            record = self._plugins.get(plugin_id)
        return 0 if record is None else len(record.instances)

    def instance_components(self, plugin_id: str) -> list[str]:
        """The component id of each live instance of the plugin, sorted (one entry per
        instance; empty once it is deactivated)."""
        with self._lock:
            record = self._plugins.get(plugin_id)
        if record is None:
            return []
        with record.lock:
            return sorted(i.component_id for i in record.instances)

    def worlds_of(self, plugin_id: str) -> dict[str, str]:
        """Component id → world name of an active plugin."""
        with self._lock:
            record = self._plugins.get(plugin_id)
        return {} if record is None else {c: loaded.world.name for c, loaded in record.components.items()}

    def __enter__(self) -> ComponentExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = ", shut down" if getattr(self, "_shut_down", False) else ""
        cache = getattr(self, "cache", None)
        return f"<ComponentExecutor {cache.dir if cache is not None else '?'}{state}>"

    def __del__(self) -> None:
        # Like an unclosed file: say so, then release what runs no plugin code. Deactivating
        # (on-disable hooks, sidecars) does, and takes locks: not from a finalizer. With no
        # plugin active nothing can call into the engine, so its epoch thread may end.
        if getattr(self, "_shut_down", True):  # shut down, or __init__ failed
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
        finally:
            self._shut_down = True
            if not self._plugins:
                self._engine.stop_ticker()
