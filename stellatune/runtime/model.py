"""The runtime's records: plugin info, capability descriptors, statuses and the sync report.

Everything here is plain data (frozen dataclasses and string enums) so reports can be kept,
compared and turned into the stable JSON documented in docs/runtime.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..manifest import AbilityKind, ExtScore, Manifest, Permissions

__all__ = [
    "DesiredState",
    "LifecycleState",
    "TransitionTrigger",
    "TransitionOutcome",
    "TransitionDetail",
    "RuntimePluginInfo",
    "CapabilityDescriptor",
    "PluginStatus",
    "PluginTransition",
    "SyncTimings",
    "SyncReport",
    "normalize_ext",
]


class DesiredState(str, enum.Enum):
    """What the user wants for a plugin; a plugin with no recorded state counts as enabled."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class LifecycleState(str, enum.Enum):
    """Where a plugin actually is, derived from the active map, discovery and desired state."""

    ACTIVE = "active"
    DISABLED = "disabled"
    FAILED = "failed"
    MISSING = "missing"


class TransitionTrigger(str, enum.Enum):
    """Why a sync touched a plugin."""

    LOAD_NEW = "load_new"
    RELOAD_CHANGED = "reload_changed"
    DISABLE_REQUESTED = "disable_requested"
    REMOVED_FROM_DISK = "removed_from_disk"


class TransitionOutcome(str, enum.Enum):
    """Whether the transition happened."""

    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"


class TransitionDetail(str, enum.Enum):
    """The specific case; transitions in a report sort by (plugin_id, detail)."""

    NEW = "new"
    MANIFEST_CHANGED = "manifest_changed"
    DISABLED = "disabled"
    ALREADY_INACTIVE = "already_inactive"
    REMOVED = "removed"
    INSTALL_FAILED = "install_failed"
    UNINSTALL_FAILED = "uninstall_failed"


def normalize_ext(ext: Optional[str]) -> str:
    """Normalise a file extension the way manifests and lookups agree on: trim, drop one leading
    ``.``, lowercase. ``None`` becomes ``""``."""
    if ext is None:
        return ""
    ext = ext.strip()
    if ext.startswith("."):
        ext = ext[1:]
    return ext.lower()


@dataclass(frozen=True)
class RuntimePluginInfo:
    """An installed plugin as the runtime sees it."""

    id: str
    name: str
    version: str
    root_dir: Path
    """The plugin's install directory, ``<plugins_dir>/<id>``."""
    manifest_path: Path
    component_count: int
    manifest: Manifest = field(repr=False, compare=False)
    """The validated manifest read at discovery; hosts read component paths and permissions here."""
    host_grants: Permissions = field(default=Permissions(), repr=False, compare=False)
    """The host grants stored for the plugin when it was activated (``WasmPluginRuntime.grant``):
    a host grants them on top of ``manifest.permissions``. Changed grants reach a plugin at its
    next activation (a sync reloads it: the grants are part of its signature)."""

    def to_json(self) -> dict[str, Any]:
        """The stable JSON row (the manifest itself is left out; it is in the install receipt)."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "root_dir": str(self.root_dir),
            "manifest_path": str(self.manifest_path),
            "component_count": self.component_count,
        }


@dataclass(frozen=True)
class CapabilityDescriptor:
    """One ability of an active plugin, with the defaults applied (display name, JSON fields,
    normalised decoder extensions)."""

    plugin_id: str
    component_id: str
    component_rel_path: str
    world: str
    kind: AbilityKind
    type_id: str
    display_name: str
    config_schema_json: str
    default_config_json: str
    decoder_ext_scores: tuple[ExtScore, ...] = ()
    """Normalised, one entry per extension (a duplicate in the manifest keeps the larger score)."""
    decoder_wildcard_score: int = 0

    def decoder_score(self, ext: Optional[str]) -> int:
        """The score this decoder gives ``ext``: its exact rule if it has one, else the wildcard.

        An empty or missing extension gets the wildcard score; 0 means "cannot decode".
        """
        wanted = normalize_ext(ext)
        if wanted:
            for rule in self.decoder_ext_scores:
                if rule.ext == wanted:
                    return rule.score
        return self.decoder_wildcard_score

    def to_json(self) -> dict[str, Any]:
        """The stable JSON object."""
        return {
            "plugin_id": self.plugin_id,
            "component_id": self.component_id,
            "component_rel_path": self.component_rel_path,
            "world": self.world,
            "kind": self.kind.value,
            "type_id": self.type_id,
            "display_name": self.display_name,
            "config_schema_json": self.config_schema_json,
            "default_config_json": self.default_config_json,
            "decoder_ext_scores": [{"ext": r.ext, "score": r.score} for r in self.decoder_ext_scores],
            "decoder_wildcard_score": self.decoder_wildcard_score,
        }


@dataclass(frozen=True)
class PluginStatus:
    """Where one plugin stands after a sync (or now, from ``WasmPluginRuntime.status``)."""

    plugin_id: str
    desired_state: DesiredState
    lifecycle_state: LifecycleState
    last_error: Optional[str] = None
    """Errors of the last sync or management call for this plugin, joined with ``; ``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "desired_state": self.desired_state.value,
            "lifecycle_state": self.lifecycle_state.value,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class PluginTransition:
    """One thing a sync did, skipped or failed to do for a plugin.

    ``to_state`` is ``failed`` whenever ``outcome`` is ``failed``, even when the plugin stays
    active (a failed reload or deactivation keeps the previous activation); the plugin's status
    says where it really is.
    """

    plugin_id: str
    from_state: LifecycleState
    to_state: LifecycleState
    trigger: TransitionTrigger
    outcome: TransitionOutcome
    detail: TransitionDetail
    duration_ms: float = field(default=0.0, compare=False)
    """Wall-clock milliseconds (``time.perf_counter``) this sync spent on the plugin: its host
    calls (prepare, deactivate, activate, a rollback) and bookkeeping. Carried by the
    ``plugin-transition`` event; not in :meth:`to_json` (the report's JSON is stable)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "from": self.from_state.value,
            "to": self.to_state.value,
            "trigger": self.trigger.value,
            "outcome": self.outcome.value,
            "detail": self.detail.value,
        }


@dataclass(frozen=True)
class SyncTimings:
    """Wall-clock milliseconds (``time.perf_counter``) spent in one sync."""

    discover: float
    apply: float
    total: float

    def to_json(self) -> dict[str, float]:
        return {"discover": self.discover, "apply": self.apply, "total": self.total}


@dataclass(frozen=True)
class SyncReport:
    """What one ``WasmPluginRuntime.sync_plugins`` call found and did."""

    revision: int
    """Counts syncs of this runtime instance, from 1."""
    discovered_plugins: tuple[str, ...]
    """Ids of valid installed plugins found on disk, sorted."""
    active_plugins: tuple[RuntimePluginInfo, ...]
    """Plugins active after the sync, sorted by id."""
    plugin_statuses: tuple[PluginStatus, ...]
    """Every plugin discovered, active, with a recorded desired state or in a transition; by id."""
    transitions: tuple[PluginTransition, ...]
    """Sorted by (plugin_id, detail)."""
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    """Discovery warnings: installed entries skipped because their manifest or receipt is broken."""
    timings_ms: SyncTimings

    @property
    def ok(self) -> bool:
        """True when the sync recorded no error."""
        return not self.errors

    def status_of(self, plugin_id: str) -> Optional[PluginStatus]:
        """The status row of ``plugin_id``, or ``None``."""
        for status in self.plugin_statuses:
            if status.plugin_id == plugin_id:
                return status
        return None

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (docs/runtime.md, "Sync report JSON")."""
        return {
            "revision": self.revision,
            "discovered_plugins": list(self.discovered_plugins),
            "active_plugins": [p.to_json() for p in self.active_plugins],
            "plugin_statuses": [s.to_json() for s in self.plugin_statuses],
            "transitions": [t.to_json() for t in self.transitions],
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "timings_ms": self.timings_ms.to_json(),
        }
