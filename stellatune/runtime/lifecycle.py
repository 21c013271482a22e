"""The seam between the runtime and whatever runs plugins: the ``LifecycleHost`` protocol.

The runtime decides *which* plugins should be active; a host makes it so. The component executor
is the real host (the CLI uses it); ``NoopLifecycleHost`` lets the runtime act as a pure registry
(the runtime's default, and the tests of the runtime's own logic).

Host contract (the runtime relies on each point):

- ``activate`` and ``deactivate`` are called from the thread that called the runtime method, one
  at a time (the runtime serialises its operations).
- To fail, raise a ``StellatuneError`` (usually ``ActivationError``). The runtime records the error
  in its report and keeps its bookkeeping consistent; any other exception is treated as a bug and
  propagates to the caller.
- When ``deactivate`` returns, no instance of the plugin is left (its on-disable ran with
  ``reason``). If it raises, the runtime keeps the plugin active.
- Optional: a host may define ``prepare(plugin, capabilities)``, doing everything ``activate``
  does that can fail (compile, type-check) without making the plugin active. The runtime calls
  it before reloading a changed plugin; if it raises, the running version is never touched, so
  an update whose files on disk are broken cannot take a working plugin away.
- A host may call the runtime's read methods (``capability_of``, ``decoder_candidates``,
  ``status``, ...) from inside a hook, but not its operations (``sync_plugins``,
  ``set_desired_state``, ``unload``, ...): those raise ``RuntimeStateError`` there.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .model import CapabilityDescriptor, RuntimePluginInfo

__all__ = ["DisableReason", "LifecycleHost", "NoopLifecycleHost"]


class DisableReason(str, enum.Enum):
    """Why a plugin is being deactivated; the values are the WIT ``disable-reason`` spellings."""

    HOST_DISABLE = "host-disable"
    """The user disabled it."""
    UNLOAD = "unload"
    """It was removed from disk, or ``WasmPluginRuntime.unload`` was called."""
    SHUTDOWN = "shutdown"
    """The runtime is shutting down."""
    RELOAD = "reload"
    """Its manifest or component bytes changed; it is re-activated right after."""


@runtime_checkable
class LifecycleHost(Protocol):
    """What the runtime needs from the thing that runs plugins."""

    def activate(self, plugin: RuntimePluginInfo, capabilities: Sequence[CapabilityDescriptor]) -> None:
        """Make ``plugin`` usable with exactly ``capabilities``; raise ``StellatuneError`` to fail."""
        ...

    def deactivate(self, plugin_id: str, reason: DisableReason) -> None:
        """Tear down every instance of ``plugin_id``; raise ``StellatuneError`` to fail."""
        ...

    def shutdown(self) -> None:
        """Release everything; called once, after every plugin was deactivated."""
        ...


class NoopLifecycleHost:
    """A host that runs nothing: activation always succeeds and does no work."""

    def activate(self, plugin: RuntimePluginInfo, capabilities: Sequence[CapabilityDescriptor]) -> None:
        pass

    def deactivate(self, plugin_id: str, reason: DisableReason) -> None:
        pass

    def shutdown(self) -> None:
        pass
