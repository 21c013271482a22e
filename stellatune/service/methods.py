"""The methods of the control API: parameter checks, then a call into the runtime or the Player.

Each method is ``fn(app, params) -> result`` (JSON-able) and runs on the service's worker
threads, never on the event loop. ``events.subscribe`` and ``service.shutdown`` concern the
connection and the server, so the server handles them itself (docs/service.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .. import package
from ..compose import DspPlugin, parse_config
from ..errors import EngineError, PluginNotInstalledError
from ..manifest import load_manifest
from ..runtime import DesiredState
from ..taxonomy import ErrorCode
from .app import ServiceApp
from .metrics import snapshot
from .protocol import RpcError, quote, reject

__all__ = ["METHODS", "SERVER_METHODS", "Method", "check_params"]

_NUM = (int, float)


@dataclass(frozen=True)
class Method:
    fn: Callable[[ServiceApp, dict[str, Any]], Any]
    params: Mapping[str, tuple[tuple[type, ...], bool]]  # name -> (types, required)


def _bad(message: str) -> RpcError:
    return reject(ErrorCode.INVALID_PARAMS, message)


def check_params(name: str, spec: Mapping[str, tuple[tuple[type, ...], bool]], params: dict[str, Any]) -> None:
    """Raise ``invalid-params`` for a missing, unknown or mistyped parameter."""
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise _bad(f"{name}: unknown parameter(s) {quote(repr(unknown))}; expected {sorted(spec)}")
    for key, (types, required) in spec.items():
        if key not in params:
            if required:
                raise _bad(f"{name}: missing parameter {key!r}")
            continue
        value = params[key]
        if isinstance(value, bool) and bool not in types:
            raise _bad(f"{name}: {key} must be {'/'.join(t.__name__ for t in types)}, not bool")
        if not isinstance(value, types):
            raise _bad(f"{name}: {key} must be {'/'.join(t.__name__ for t in types)}, not {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(f"{name}: {key} must be finite")


def _index(app: ServiceApp, i: int, *, insert: bool = False) -> int:
    n = len(app.player.chain())
    if not (0 <= i <= n if insert else 0 <= i < n):
        raise _bad(f"index {i} out of range (chain has {n} stage(s))")
    return i


def _spec(value: Any) -> str:
    """A stage spec's text, checked for its form (a malformed one is invalid-params; whether
    the plugin is there is the player's question)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and isinstance(value.get("plugin_id"), str) and isinstance(value.get("type_id"), str):
        config = value.get("config", {})
        if not isinstance(config, dict):
            raise _bad("spec.config must be an object")
        text = f"{value['plugin_id']}:{value['type_id']}:{json.dumps(config)}"
    else:
        raise _bad('a stage spec is "ID:TYPE[:JSON]" or {"plugin_id", "type_id", "config"}')
    try:
        DspPlugin.parse(text)
    except EngineError as e:
        raise _bad(str(e)) from None
    return text


def _config(value: Any) -> dict[str, Any]:
    """A config given as an object or JSON object text; anything else is invalid-params."""
    try:
        return parse_config(value, "config")
    except EngineError as e:
        raise _bad(str(e)) from None


# --- player -------------------------------------------------------------------------------------


def _enqueue(app: ServiceApp, p: dict[str, Any]) -> Any:
    items = p["items"]
    if not items or not all(isinstance(i, str) for i in items):
        raise _bad("items must be a non-empty list of strings (paths or source:ID:TYPE:JSON)")
    for item in items:
        if not item.startswith("source:") and not Path(item).is_file():
            raise _bad(f"no such file: {item}")
    app.player.enqueue(*items)
    return {"queued": len(items), "queue_length": len(app.player.queue())}


def _transport(action: str) -> Callable[[ServiceApp, dict[str, Any]], Any]:
    def run(app: ServiceApp, p: dict[str, Any]) -> Any:
        getattr(app.player, action)()
        app.events.emit("transport", action=action)
        return _player_status(app, p)

    return run


def _clear(app: ServiceApp, p: dict[str, Any]) -> Any:
    app.player.clear_queue()
    return {"queue_length": len(app.player.queue())}


def _seek(app: ServiceApp, p: dict[str, Any]) -> Any:
    seconds = float(p["seconds"])
    if seconds < 0:
        raise _bad("seconds must be >= 0")
    return {"seeked": app.player.seek(seconds)}


def _volume(app: ServiceApp, p: dict[str, Any]) -> Any:
    db = float(p["db"])
    if not -120.0 <= db <= 24.0:
        raise _bad("db must be within [-120, 24]")
    app.player.volume_db = db
    return {"volume_db": app.player.volume_db}


def _player_status(app: ServiceApp, p: dict[str, Any]) -> Any:
    return app.player.status()


# --- chain --------------------------------------------------------------------------------------


def _chain_get(app: ServiceApp, p: dict[str, Any]) -> Any:
    return app.player.chain()


def _chain_set(app: ServiceApp, p: dict[str, Any]) -> Any:
    app.player.set_chain([_spec(s) for s in p["stages"]])
    return app.player.chain()


def _chain_insert(app: ServiceApp, p: dict[str, Any]) -> Any:
    app.player.insert_stage(_index(app, p["index"], insert=True), _spec(p["spec"]))
    return app.player.chain()


def _chain_remove(app: ServiceApp, p: dict[str, Any]) -> Any:
    app.player.remove_stage(_index(app, p["index"]))
    return app.player.chain()


def _chain_move(app: ServiceApp, p: dict[str, Any]) -> Any:
    app.player.move_stage(_index(app, p["from"]), _index(app, p["to"]))
    return app.player.chain()


def _chain_bypass(app: ServiceApp, p: dict[str, Any]) -> Any:
    i = _index(app, p["index"])
    on = bool(p.get("on", True))
    app.player.bypass(i, on)
    spec = app.player.chain()[i].get("spec", "")
    app.events.emit("stage-bypass", plugin_id=str(spec).split(":", 1)[0] or None, index=i, on=on, spec=spec)
    return app.player.chain()


def _chain_update_config(app: ServiceApp, p: dict[str, Any]) -> Any:
    i = _index(app, p["index"])
    config = _config(p["config"])
    spec = str(app.player.chain()[i].get("spec", ""))
    app.events.emit("config-plan", plugin_id=spec.split(":", 1)[0] or None, index=i, config=config)
    outcome = app.player.update_config(i, config)
    return {"outcome": outcome}


# --- plugins ------------------------------------------------------------------------------------


def _installed(app: ServiceApp, plugin_id: str) -> Any:
    for row in package.list_installed(app.plugins_dir):
        if row.id == plugin_id:
            return row
    raise PluginNotInstalledError(f"plugin not installed: {plugin_id}")


def _plugins_list(app: ServiceApp, p: dict[str, Any]) -> Any:
    return {"plugins": app.plugins()}


def _plugins_info(app: ServiceApp, p: dict[str, Any]) -> Any:
    row = _installed(app, p["id"])
    status = app.runtime.status(row.id)
    manifest = load_manifest(Path(row.manifest_path))
    return {
        **row.to_json(),
        "desired_state": status.desired_state.value,
        "lifecycle_state": status.lifecycle_state.value,
        "last_error": status.last_error,
        "instances": app.executor.live_instances(row.id),
        "permissions": manifest.permissions.to_json(),
        "host_grants": app.runtime.host_grants(row.id).to_json(),
        "capabilities": [c.to_json() for c in app.runtime.capabilities_of(row.id)],
    }


def _sync_summary(app: ServiceApp, plugin_id: Optional[str] = None) -> dict[str, Any]:
    report = app.runtime.sync_plugins()
    doc = report.to_json()
    if plugin_id is not None:
        st = report.status_of(plugin_id)
        doc["status"] = None if st is None else st.to_json()
    return doc


def _plugins_install(app: ServiceApp, p: dict[str, Any]) -> Any:
    path = Path(p["path"])
    if not path.exists():
        raise _bad(f"no such file or directory: {path}")
    row = package.install_from_artifact(app.plugins_dir, path)
    app.events.emit("plugin-installed", plugin_id=row.id, version=row.version, path=str(path))
    return {"id": row.id, "sync": _sync_summary(app, row.id)}


def _plugins_uninstall(app: ServiceApp, p: dict[str, Any]) -> Any:
    pid = _installed(app, p["id"]).id
    app.runtime.unload(pid)  # its stages leave the chain; its instances and sidecars end
    package.uninstall_by_id(app.plugins_dir, pid)
    states = app.runtime.desired_states()
    if states.pop(pid, None) is not None:
        app.runtime.replace_desired_states(states)
    app.runtime.clear_host_grants(pid)
    app.events.emit("plugin-uninstalled", plugin_id=pid)
    return {"id": pid, "sync": _sync_summary(app)}


def _set_state(state: DesiredState) -> Callable[[ServiceApp, dict[str, Any]], Any]:
    def run(app: ServiceApp, p: dict[str, Any]) -> Any:
        pid = _installed(app, p["id"]).id
        app.runtime.set_desired_state(pid, state)
        kind = "plugin-enabled" if state is DesiredState.ENABLED else "plugin-disabled"
        app.events.emit(kind, plugin_id=pid)
        return {"id": pid, "sync": _sync_summary(app, pid)}

    return run


def _plugins_sync(app: ServiceApp, p: dict[str, Any]) -> Any:
    return _sync_summary(app)


_GRANT_KEYS = ("http", "tcp", "files", "sidecars", "env")


def _plugins_grant(app: ServiceApp, p: dict[str, Any]) -> Any:
    grants: dict[str, list[str]] = {}
    for key in _GRANT_KEYS:
        values = p.get(key, [])
        if not all(isinstance(v, str) for v in values):
            raise _bad(f"{key} must be a list of strings")
        if values:
            grants[key] = list(values)
    pid = _installed(app, p["id"]).id
    revoke = bool(p.get("revoke", False))
    change = app.runtime.revoke(pid, grants) if revoke else app.runtime.grant(pid, grants)
    app.events.emit(
        "grant-changed", plugin_id=pid, action="revoke" if revoke else "grant", changed=change.changed.to_json()
    )
    return {
        "id": pid,
        "changed": change.changed.to_json(),
        "unchanged": change.unchanged.to_json(),
        "grants": change.grants.to_json(),
        "sync": _sync_summary(app, pid),
    }


# --- service ------------------------------------------------------------------------------------


def _runtime_status(app: ServiceApp, p: dict[str, Any]) -> Any:
    report = app.runtime.last_report
    return {
        "plugins_dir": str(app.plugins_dir),
        "revision": app.runtime.revision,
        "active_plugins": [i.id for i in app.runtime.active_plugins()],
        "plugins": app.plugins(),
        "sidecars": app.sidecars(),
        "last_sync": None
        if report is None
        else {"timings_ms": report.timings_ms.to_json(), "errors": list(report.errors)},
    }


def _metrics_get(app: ServiceApp, p: dict[str, Any]) -> Any:
    return snapshot(app)


_I, _S, _L, _D, _B = (int,), (str,), (list,), (dict,), (bool,)

METHODS: dict[str, Method] = {
    "player.enqueue": Method(_enqueue, {"items": (_L, True)}),
    "player.play": Method(_transport("play"), {}),
    "player.pause": Method(_transport("pause"), {}),
    "player.resume": Method(_transport("resume"), {}),
    "player.stop": Method(_transport("stop"), {}),
    "player.skip": Method(_transport("skip"), {}),
    "player.seek": Method(_seek, {"seconds": (_NUM, True)}),
    "player.clear": Method(_clear, {}),
    "player.status": Method(_player_status, {}),
    "player.volume": Method(_volume, {"db": (_NUM, True)}),
    "chain.get": Method(_chain_get, {}),
    "chain.set": Method(_chain_set, {"stages": (_L, True)}),
    "chain.insert": Method(_chain_insert, {"index": (_I, True), "spec": ((str, dict), True)}),
    "chain.remove": Method(_chain_remove, {"index": (_I, True)}),
    "chain.move": Method(_chain_move, {"from": (_I, True), "to": (_I, True)}),
    "chain.bypass": Method(_chain_bypass, {"index": (_I, True), "on": (_B, False)}),
    "chain.update_config": Method(_chain_update_config, {"index": (_I, True), "config": ((dict, str), True)}),
    "plugins.list": Method(_plugins_list, {}),
    "plugins.info": Method(_plugins_info, {"id": (_S, True)}),
    "plugins.install": Method(_plugins_install, {"path": (_S, True)}),
    "plugins.uninstall": Method(_plugins_uninstall, {"id": (_S, True)}),
    "plugins.enable": Method(_set_state(DesiredState.ENABLED), {"id": (_S, True)}),
    "plugins.disable": Method(_set_state(DesiredState.DISABLED), {"id": (_S, True)}),
    "plugins.sync": Method(_plugins_sync, {}),
    "plugins.grant": Method(
        _plugins_grant, {"id": (_S, True), "revoke": (_B, False), **{k: (_L, False) for k in _GRANT_KEYS}}
    ),
    "runtime.status": Method(_runtime_status, {}),
    "metrics.get": Method(_metrics_get, {}),
}

#: Handled by the server (they concern the connection or the process), with their parameters.
SERVER_METHODS: dict[str, Mapping[str, tuple[tuple[type, ...], bool]]] = {
    "events.subscribe": {"kinds": (_L, False)},
    "events.unsubscribe": {},
    "service.shutdown": {},
    "service.ping": {},
}
