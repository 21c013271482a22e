"""The runtime plane: which installed plugins are active, and what they can do.

API overview:

- ``WasmPluginRuntime(plugins_dir, host=None)``: ``sync_plugins() -> SyncReport``,
  ``set_desired_state``, ``replace_desired_states``, ``unload``, ``shutdown``; lookups
  ``capability_of``, ``capabilities_of``, ``decoder_candidates``, ``all_decoders``, ``status``,
  ``active_plugins``.
- ``LifecycleHost`` (protocol) and ``NoopLifecycleHost``; ``DisableReason``.
- Host grants (``grant``, ``revoke``, ``host_grants``; ``HostGrantChange``) and directives
  (``subscribe_plugin``, ``notify_plugin``; ``PluginDirective``, ``DirectiveKind``).
- Records: ``RuntimePluginInfo``, ``CapabilityDescriptor``, ``PluginStatus``,
  ``PluginTransition``, ``SyncReport`` and its enums.

docs/runtime.md describes the sync algorithm, the locking rule and the report JSON.
"""

from ..errors import LifecycleFailures
from .directives import DirectiveCallback, DirectiveHub, DirectiveKind, PluginDirective
from .grants import GRANT_KINDS, HostGrantChange, validate_host_grants
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
from .service import WasmPluginRuntime
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
    "PluginDirective",
    "DirectiveKind",
    "DirectiveCallback",
    "DirectiveHub",
    "HostGrantChange",
    "GRANT_KINDS",
    "validate_host_grants",
    "normalize_ext",
]
