"""Plugin directives: the original runtime's ``Destroy`` / ``Rebuild`` / ``UpdateConfig`` messages,
for hosts that listen for them (``WasmPluginRuntime.subscribe_plugin`` / ``notify_plugin``).

In the original (reference §2.4-§2.6) the runtime sent a directive to every live instance of a
plugin and to ``subscribe_plugin`` listeners: ``Rebuild`` when a sync made the plugin active
(loaded or reloaded), ``Destroy{reason}`` when a sync, a disable or a shutdown took it away, and
``UpdateConfig{config_json}`` when a host asked for a new configuration. Here the executor tears
instances down synchronously (``LifecycleHost.deactivate``), so directives are only the listener
side: a typed value and a thread-safe registry of callbacks. Callbacks run on the notifying
thread; one that raises is logged (``stellatune.runtime.directives``) and the others still run.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

from .lifecycle import DisableReason

__all__ = ["DirectiveKind", "PluginDirective", "DirectiveCallback", "DirectiveHub"]

log = logging.getLogger(__name__)


class DirectiveKind(str, enum.Enum):
    """The directive kinds of the original, spelled as in its JSON (``kind`` in snake_case)."""

    DESTROY = "destroy"
    """The plugin is gone (disabled, unloaded, removed, shut down): drop what uses it."""
    REBUILD = "rebuild"
    """The plugin became active (new, or reloaded with new files or grants): rebuild what uses it."""
    UPDATE_CONFIG = "update_config"
    """The host wants ``config_json`` applied to the plugin's sessions."""


@dataclass(frozen=True)
class PluginDirective:
    """One directive. Make them with :meth:`destroy`, :meth:`rebuild`, :meth:`update_config`.

    ``reason`` is set for ``destroy`` only (a ``DisableReason``), ``config_json`` for
    ``update_config`` only (a JSON text).
    """

    kind: DirectiveKind
    reason: Optional[DisableReason] = None
    config_json: Optional[str] = None

    def __post_init__(self) -> None:
        kind = DirectiveKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if kind is DirectiveKind.DESTROY:
            if self.reason is None:
                raise ValueError("a destroy directive needs a reason")
            object.__setattr__(self, "reason", DisableReason(self.reason))
        elif self.reason is not None:
            raise ValueError(f"a {kind.value} directive has no reason")
        if kind is DirectiveKind.UPDATE_CONFIG:
            if not isinstance(self.config_json, str):
                raise ValueError("an update_config directive needs config_json (a JSON text)")
            try:
                json.loads(self.config_json)
            except ValueError as exc:
                raise ValueError(f"config_json is not valid JSON: {exc}") from None
        elif self.config_json is not None:
            raise ValueError(f"a {kind.value} directive has no config_json")

    @classmethod
    def destroy(cls, reason: Union[DisableReason, str]) -> PluginDirective:
        return cls(DirectiveKind.DESTROY, reason=_reason(reason))

    @classmethod
    def rebuild(cls) -> PluginDirective:
        return cls(DirectiveKind.REBUILD)

    @classmethod
    def update_config(cls, config: Union[str, Mapping[str, Any]]) -> PluginDirective:
        """``config`` is the JSON text, or a mapping that is serialised (compact, keys kept)."""
        text = config if isinstance(config, str) else json.dumps(dict(config), separators=(",", ":"))
        return cls(DirectiveKind.UPDATE_CONFIG, config_json=text)

    def to_json(self) -> dict[str, str]:
        """The original's JSON: ``{"kind": "destroy", "reason": "host_disable"}``,
        ``{"kind": "rebuild"}``, ``{"kind": "update_config", "config_json": "..."}``."""
        out = {"kind": self.kind.value}
        if self.reason is not None:
            out["reason"] = self.reason.value.replace("-", "_")
        if self.config_json is not None:
            out["config_json"] = self.config_json
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PluginDirective:
        """Read :meth:`to_json`'s form (reasons in either spelling); ``ValueError`` if invalid."""
        kind = DirectiveKind(doc.get("kind"))
        reason = doc.get("reason")
        return cls(kind, reason=_reason(reason) if reason is not None else None, config_json=doc.get("config_json"))


def _reason(reason: Union[DisableReason, str]) -> DisableReason:
    return reason if isinstance(reason, DisableReason) else DisableReason(str(reason).replace("_", "-"))


#: ``callback(plugin_id, directive)``; its return value is ignored.
DirectiveCallback = Callable[[str, PluginDirective], Any]


class DirectiveHub:
    """Subscribers by plugin id. Thread-safe; callbacks run outside the lock, on the thread that
    calls :meth:`notify`, in subscription order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[tuple[int, DirectiveCallback]]] = {}
        self._next_token = 0

    def subscribe(self, plugin_id: str, callback: DirectiveCallback) -> Callable[[], None]:
        """Call ``callback(plugin_id, directive)`` for every directive of ``plugin_id`` from now
        on; returns ``unsubscribe()`` (idempotent). The same callback may subscribe twice."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._subscribers.setdefault(plugin_id, []).append((token, callback))

        def unsubscribe() -> None:
            with self._lock:
                entries = self._subscribers.get(plugin_id)
                if entries is None:
                    return
                entries[:] = [e for e in entries if e[0] != token]
                if not entries:
                    del self._subscribers[plugin_id]

        return unsubscribe

    def subscriber_count(self, plugin_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(plugin_id, ()))

    def notify(self, plugin_id: str, directive: PluginDirective) -> int:
        """Deliver ``directive`` to the subscribers of ``plugin_id``; returns how many callbacks
        ran without raising. A callback that raises is logged and the others still run."""
        if not isinstance(directive, PluginDirective):
            raise TypeError(f"directive must be a PluginDirective, not {type(directive).__name__}")
        with self._lock:
            callbacks = [cb for _token, cb in self._subscribers.get(plugin_id, ())]
        delivered = 0
        for callback in callbacks:
            try:
                callback(plugin_id, directive)
            except Exception:  # a listener's bug must not stop the runtime or the other listeners
                log.exception("directive listener %r failed on %s for %s", callback, directive.to_json(), plugin_id)
            else:
                delivered += 1
        return delivered

    def notify_all(self, directives: Iterable[tuple[str, PluginDirective]]) -> None:
        """Deliver a batch in order (what one runtime operation emitted)."""
        for plugin_id, directive in directives:
            self.notify(plugin_id, directive)
