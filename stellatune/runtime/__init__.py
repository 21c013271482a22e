"""The runtime plane: which installed plugins are active, and what they can do.

API overview:

- ``WasmPluginRuntime(plugins_dir, host=None)``: ``sync_plugins() -> SyncReport``,
  ``set_desired_state``, ``replace_desired_states``, ``unload``, ``shutdown``; lookups
  ``capability_of``, ``capabilities_of``, ``decoder_candidates``, ``all_decoders``, ``status``,
  ``active_plugins``.
- ``LifecycleHost`` (protocol) and ``NoopLifecycleHost``; ``DisableReason``.
- Records: ``RuntimePluginInfo``, ``CapabilityDescriptor``, ``PluginStatus``,
  ``PluginTransition``, ``SyncReport`` and its enums.

docs/runtime.md describes the sync algorithm, the locking rule and the report JSON.
"""
from .lifecycle import DisableReason, LifecycleHost, NoopLifecycleHost
from .model import (
    CapabilityDescriptor,
    DesiredState,
    LifecycleState,
    PluginStatus,
    PluginTransition,
    RuntimePluginInfo,
    SyncReport,
    SyncTimings,
    TransitionDetail,
    TransitionOutcome,
    TransitionTrigger,
    normalize_ext,
)
from .service import LifecycleFailures, WasmPluginRuntime
from .state import STATE_FILE_NAME

__all__ = [
    "WasmPluginRuntime",
    "LifecycleFailures",
    "LifecycleHost",
    "NoopLifecycleHost",
    "DisableReason",
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
    "STATE_FILE_NAME",
    "normalize_ext",
]
