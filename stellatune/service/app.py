"""What ``stellatune serve`` runs: one runtime, one executor and one Player, with their events
bridged into the runtime's :class:`~stellatune.events.EventHub` and counters for the metrics."""

from __future__ import annotations

import collections
import functools
import threading
from pathlib import Path
from typing import Any, Optional, Union

from ..compose.player import Player
from ..errors import RuntimeStateError
from ..events import EventHub
from ..executor import ComponentExecutor
from ..executor.imports import GrantedHostServices, GrantedPluginImports
from ..host.sidecar import SidecarEvent, SidecarManager
from ..runtime import WasmPluginRuntime
from .durations import DurationHistogram

__all__ = ["STAGE_FAULT_EVENTS", "ServiceApp"]

_SIDECAR_KINDS = {
    "started": ("sidecar-started", "info"),
    "exited": ("sidecar-exited", "info"),
    "crashed": ("sidecar-crashed", "error"),
    "restarted": ("sidecar-restarted", "warning"),
    "crash-loop": ("sidecar-breaker-open", "critical"),
    "stopped": ("sidecar-stopped", "info"),
}

#: A stage bypassed for one of these fault kinds (engine ``FAULT_KINDS``) gets its own event
#: kind, so a subscriber can follow overruns and NaN/Inf output without parsing ``data``;
#: every other fault kind (and a component-path stage's ``plugin-error``) is a ``stage-fault``.
STAGE_FAULT_EVENTS = {"timeout": "stage-timeout", "non-finite": "stage-non-finite"}
_FAULT_EVENT_KINDS = frozenset({"stage-fault", *STAGE_FAULT_EVENTS.values()})


class _EventedHostServices(GrantedHostServices):
    """The default host services, with a sidecar manager that reports its events."""

    def __init__(self, app: ServiceApp):
        super().__init__()
        self._app = app

    def sidecars(self) -> SidecarManager:
        with self._lock:
            if self._sidecars is None:
                self._sidecars = SidecarManager(on_event=self._app._on_sidecar_event)
            return self._sidecars

    def manager(self) -> Optional[SidecarManager]:
        with self._lock:
            return self._sidecars

    def for_plugin(self, plugin_id: str, root_dir: Path, manifest: Any) -> GrantedPluginImports:
        imports = super().for_plugin(plugin_id, root_dir, manifest)
        imports.context.grants.on_denied = functools.partial(self._app._on_grant_denied, plugin_id)
        return imports


class ServiceApp:
    """The long-lived objects of the service and what is observed of them."""

    def __init__(
        self,
        plugins_dir: Path,
        *,
        output: Union[str, int, None] = "null",
        cache_dir: Optional[Path] = None,
        frames: int = 128,
    ):
        self.plugins_dir = Path(plugins_dir)
        self.plugins_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.sync_durations_ms: list[float] = []
        self.event_counts: collections.Counter[str] = collections.Counter()
        # (plugin_id, trigger) -> how long its lifecycle steps took (plugin-transition events).
        self.transition_times: dict[tuple[str, str], DurationHistogram] = {}
        self._xruns = self._underruns = 0
        self.host_services = _EventedHostServices(self)
        self.executor = ComponentExecutor(cache_dir, self.host_services)
        self.runtime = WasmPluginRuntime(self.plugins_dir, self.executor)
        self.events: EventHub = self.runtime.events
        self.events.subscribe(self._count)
        try:
            self.runtime.sync_plugins()
            self.player = Player(runtime=self.runtime, output=output, frames=frames)
        except BaseException:
            self.runtime.shutdown()
            raise
        self._unsub_player = self.player.subscribe(self._on_player_event)
        self._closed = False

    # --- events -------------------------------------------------------------------------------

    def _count(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.event_counts[event["kind"]] += 1
            if event["kind"] in _FAULT_EVENT_KINDS:
                self.fault_counts[str(event["data"].get("fault"))] += 1
            elif event["kind"] == "plugin-transition" and event["data"].get("duration_ms") is not None:
                key = (str(event["plugin_id"]), str(event["data"].get("trigger")))
                self.transition_times.setdefault(key, DurationHistogram()).observe(float(event["data"]["duration_ms"]))
            elif event["kind"] == "sync-completed":
                self.sync_durations_ms.append(float(event["data"]["timings_ms"]["total"]))
                del self.sync_durations_ms[:-1000]

    def _on_sidecar_event(self, ev: SidecarEvent) -> None:
        kind, severity = _SIDECAR_KINDS.get(ev.kind, ("sidecar-exited", "info"))
        self.events.emit(
            kind,
            severity=severity,
            plugin_id=ev.plugin_id,
            slot=ev.slot,
            message=ev.message,
            pid=ev.pid,
            returncode=ev.returncode,
        )

    def _on_grant_denied(self, plugin_id: str, grant: str, message: str) -> None:
        """A host call of ``plugin_id`` was refused for a missing ``grant`` (the plugin got
        ``denied``); called on the host call's thread."""
        self.events.emit("grant-denied", severity="warning", plugin_id=plugin_id, grant=grant, message=message)

    def _on_player_event(self, ev: dict[str, Any]) -> None:
        kind = ev["kind"]
        data = {k: v for k, v in ev.items() if k != "kind"}
        spec = data.get("spec")
        plugin_id = spec.split(":", 1)[0] if isinstance(spec, str) else None
        emit = self.events.emit
        if kind in ("track-started", "track-ended", "queue-empty"):
            emit(kind, **data)
        elif kind == "track-error":
            emit(kind, severity="error", **data)
        elif kind == "seeked":
            emit("seek", **data)
        elif kind == "stage-fault":
            emit(
                STAGE_FAULT_EVENTS.get(str(data.get("fault")), "stage-fault"),
                severity="error",
                plugin_id=plugin_id,
                **data,
            )
        elif kind == "stage-removed":
            emit("stage-removed", severity="warning", plugin_id=plugin_id, **data)
        elif kind == "stage-reloaded":
            emit("stage-reloaded", plugin_id=plugin_id, **data)
        elif kind == "config-applied":
            emit("config-outcome", plugin_id=plugin_id, outcome=data.get("mode"), **data)
        elif kind == "config-rejected":
            emit("config-outcome", severity="warning", plugin_id=plugin_id, outcome="reject", **data)
        elif kind == "xrun":
            xruns, underruns = int(data.get("device_underflows", 0)), int(data.get("ring_underruns", 0))
            if xruns > self._xruns:
                emit("xrun", severity="warning", count=xruns, new=xruns - self._xruns)
            if underruns > self._underruns:
                emit("underrun", severity="warning", count=underruns, new=underruns - self._underruns)
            self._xruns, self._underruns = max(xruns, self._xruns), max(underruns, self._underruns)

    # --- observing ------------------------------------------------------------------------------

    def sidecar_manager(self) -> Optional[SidecarManager]:
        return self.host_services.manager()

    def sidecars(self) -> list[dict[str, Any]]:
        """Per plugin: counters, and the breaker state from the latest event of each slot."""
        manager = self.sidecar_manager()
        if manager is None:
            return []
        slots: dict[tuple[str, int], SidecarEvent] = {}
        for ev in manager.events():
            slots[(ev.plugin_id, ev.slot)] = ev
        rows: dict[str, dict[str, Any]] = {}
        for (pid, slot), ev in sorted(slots.items()):
            st = manager.stats(pid)
            row = rows.setdefault(
                pid,
                {
                    "plugin_id": pid,
                    "starts": st.starts,
                    "exits": st.exits,
                    "crashes": st.crashes,
                    "restarts": st.restarts,
                    "crash_loops": st.crash_loops,
                    "slots": [],
                },
            )
            breaker = "open" if ev.kind == "crash-loop" else "closed"
            row["slots"].append({"slot": slot, "last_event": ev.kind, "pid": ev.pid, "breaker": breaker})
        return list(rows.values())

    def _host_imports(self) -> list[tuple[str, Any]]:
        """(plugin id, its host imports object) of each active plugin."""
        out = []
        for pid in sorted(self._active_ids()):
            try:
                out.append((pid, self.executor.host_imports(pid)))
            except RuntimeStateError:  # deactivated meanwhile, or shutting down
                continue
        return out

    def _active_ids(self) -> list[str]:
        return [i.id for i in self.runtime.active_plugins() if self.executor.is_active(i.id)]

    def host_denials(self) -> dict[str, dict[str, int]]:
        """Per active plugin: host-call denials by grant kind, read from its host context's
        grants (counted where the host raises ``denied``; reset when the plugin is reactivated)."""
        out: dict[str, dict[str, int]] = {}
        for pid, imports in self._host_imports():
            grants = getattr(imports, "grants", None)
            counts = grants.denials() if grants is not None and hasattr(grants, "denials") else {}
            if counts:
                out[pid] = counts
        return out

    def host_calls(self) -> dict[str, dict[str, int]]:
        """Per active plugin: its guest's host calls by host function (``host-stream-handle.read``,
        ``http-client.fetch-json``...), counted by the executor's import bindings into the
        plugin's host context (reset when the plugin is reactivated)."""
        out: dict[str, dict[str, int]] = {}
        for pid, imports in self._host_imports():
            calls = getattr(imports, "host_calls", None)
            counts = calls.counts() if calls is not None else {}
            if counts:
                out[pid] = counts
        return out

    def memory(self) -> list[dict[str, Any]]:
        """Linear memory per instance: one row per hot-path stage (its own store; the size is
        exact, fixed after init) and one per component instance (the component model exports no
        core memory and wasmtime has no per-store usage call, so only the store's cap is known:
        ``linear_memory_bytes`` is None). Rows: ``plugin_id``, ``kind`` (``hot-path`` or
        ``component``), ``where`` (the stage spec, or the component id), ``index`` (chain
        position; None for a sink or a component instance), ``linear_memory_bytes``,
        ``memory_limit_bytes``."""
        rows: list[dict[str, Any]] = []
        for st in self.player.stage_memory():
            if st["linear_memory_bytes"] is None:  # native or component-path: no store of its own
                continue
            rows.append(
                {
                    "plugin_id": st["plugin_id"],
                    "kind": "hot-path",
                    "where": st["spec"],
                    "index": st["index"],
                    "linear_memory_bytes": st["linear_memory_bytes"],
                    "memory_limit_bytes": st["memory_limit_bytes"],
                }
            )
        cap = self.executor.limits.memory_bytes
        for pid in self._active_ids():
            for component in self.executor.instance_components(pid):
                rows.append(
                    {
                        "plugin_id": pid,
                        "kind": "component",
                        "where": component,
                        "index": None,
                        "linear_memory_bytes": None,
                        "memory_limit_bytes": cap,
                    }
                )
        return rows

    def plugins(self) -> list[dict[str, Any]]:
        from ..package import list_installed

        rows = []
        for p in list_installed(self.plugins_dir):
            st = self.runtime.status(p.id)
            rows.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "version": p.version,
                    "install_state": p.install_state.value,
                    "desired_state": st.desired_state.value,
                    "lifecycle_state": st.lifecycle_state.value,
                    "last_error": st.last_error,
                    "instances": self.executor.live_instances(p.id),
                }
            )
        return rows

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the player, then the runtime (every plugin deactivated, sidecars ended)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._unsub_player()
            self.player.close()
        finally:
            try:
                self.runtime.shutdown()
            finally:
                self.host_services.shutdown()
