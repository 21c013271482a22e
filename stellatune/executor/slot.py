"""A guest resource plus the instance that owns it, with the config quartet and recreate.

Every capability object (a source catalog, a DSP processor, a sink session...) is a *slot*: a
``build(config_json)`` function that makes a fresh instance and resource with that config, and
the resource currently built. ``update_config`` follows the plugin's plan: hot-apply in place,
recreate (export state, build anew, import state, retire the old one), or reject (nothing
changes, :class:`~stellatune.errors.ConfigRejected` says why).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Optional

from ..errors import ConfigRejected, PluginError, PluginErrorCode, RuntimeStateError
from .active import ActivePlugin
from .boundary import Boundary
from .instance import GuestResource
from .values import ConfigUpdateMode, ConfigUpdatePlan

__all__ = ["ResourceSlot"]


Builder = Callable[[str], GuestResource]

# `Any` here is a component value (a method's arguments and result, untyped in wasmtime-py).


class ResourceSlot:
    """One guest resource, rebuilt on demand (``lazy``) or fixed for its lifetime (sessions)."""

    def __init__(self, plugin: ActivePlugin, build: Builder, config_json: str, *, lazy: bool, recreatable: bool = True):
        self._plugin = plugin
        self._check = Boundary(plugin.plugin_id)
        self._build = build
        self._lazy = lazy
        self._recreatable = recreatable
        self._lock = threading.RLock()
        self.config_json = config_json
        self._res: Optional[GuestResource] = None if lazy else build(config_json)

    @property
    def resource(self) -> GuestResource:
        with self._lock:
            self._plugin.ensure_active()
            if self._res is None or self._res.instance.closed:
                if not self._lazy:
                    why = "was closed" if self._res is None else "was discarded after a failed call"
                    raise RuntimeStateError(f"this handle of {self._plugin.plugin_id} {why}; create a new one")
                self._res = self._build(self.config_json)
            return self._res

    def call(self, method: str, *args: Any, timeout_s: Optional[float] = None) -> Any:
        """Call a method of the resource; a broken lazy slot rebuilds on the next call."""
        res = self.resource
        try:
            return res.call(method, *args, timeout_s=timeout_s)
        finally:
            if res.instance.closed:
                self._plugin.retire(res.instance)

    # --- the config quartet -----------------------------------------------------------------

    def plan_config(self, new_config_json: str) -> ConfigUpdatePlan:
        return ConfigUpdatePlan.from_wit(self.call("plan-config-update-json", new_config_json), self._check)

    def apply_config(self, new_config_json: str) -> None:
        self.call("apply-config-update-json", new_config_json)
        self.config_json = new_config_json

    def export_state(self) -> Optional[str]:
        state = self.call("export-state-json")
        return None if state is None else self._check.json_text("export-state-json", state)

    def import_state(self, state_json: str) -> None:
        self.call("import-state-json", state_json)

    def update_config(
        self, new_config_json: str, *, keep_replaced: Optional[Callable[[GuestResource], None]] = None
    ) -> ConfigUpdateMode:
        """Plan, then hot-apply, recreate or reject; returns what was done. On a recreate,
        ``keep_replaced`` takes the old resource instead of it being closed at once (a caller
        crossfading from it closes it with :meth:`retire_resource`)."""
        with self._lock:
            plan = self.plan_config(new_config_json)
            if plan.mode is ConfigUpdateMode.HOT_APPLY:
                self.apply_config(new_config_json)
            elif plan.mode is ConfigUpdateMode.RECREATE:
                if not self._recreatable:
                    raise PluginError(
                        PluginErrorCode.UNSUPPORTED,
                        f"the plugin asks to recreate ({plan.reason or 'no reason given'}), which "
                        "this handle cannot do; open a new one with the new config",
                        plugin_id=self._plugin.plugin_id,
                    )
                self._recreate(new_config_json, keep_replaced)
            else:
                raise ConfigRejected(plan.reason or "no reason given", plugin_id=self._plugin.plugin_id)
            return plan.mode

    def _recreate(self, new_config_json: str, keep_replaced: Optional[Callable[[GuestResource], None]] = None) -> None:
        old = self.resource
        state = self.export_state()
        fresh = self._build(new_config_json)
        try:
            if state is not None:
                fresh.call("import-state-json", state)
        except BaseException:
            # Keep the old resource: a half-made replacement must not take its place.
            self._plugin.retire(fresh.instance)
            raise
        self._res = fresh
        self.config_json = new_config_json
        if keep_replaced is not None:
            keep_replaced(old)
        else:
            self._close_resource(old)

    def retire_resource(self, res: GuestResource) -> None:
        """Close a resource :meth:`update_config` handed to ``keep_replaced``."""
        self._close_resource(res)

    # --- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the resource and retire its instance (``on-disable(host-disable)``)."""
        with self._lock:
            res, self._res = self._res, None
            self._lazy = False
            if res is not None:
                self._close_resource(res)

    def _close_resource(self, res: GuestResource) -> None:
        if not res.instance.closed:
            res.close()
        self._plugin.retire(res.instance)
