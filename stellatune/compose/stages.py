"""From installed plugins to engine stages: ask the component for its hot path, fall back to it.

The component is asked first (``describe-hot-path`` for the stream's ``AudioSpec``). When it
answers with a core-module spec that checks out and loads, the stage runs that module in the
engine's C loop; when it answers ``none``, or anything about the answer does not fit, the stage
runs the component's own ``process`` (the component path) and says why in
``stage.fallback_reason``. Either way the stage holds the component processor (or sink session)
and closes it with itself.

This module joins the planes (runtime + executor → engine); the engine never imports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Optional, Union

from stellatune.abi import CoreModuleSpec, Role
from stellatune.engine import ComponentStage, HotPathStage, Stage
from stellatune.errors import EngineError, HotPathAbiError, PluginError, RuntimeStateError
from stellatune.executor import AudioSpec, ComponentExecutor
from stellatune.runtime import WasmPluginRuntime

__all__ = ["build_dsp_stage", "build_sink_stage", "parse_config", "closer", "check_dsp"]

Config = Union[Mapping[str, Any], str, None]
_HOTPATH_SUFFIX = ".hotpath.wasm"


def parse_config(config: Config, what: str) -> dict[str, Any]:
    """A config given as a mapping, JSON object text, or nothing, as a dict."""
    if config is None or config == "":
        return {}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as e:
            raise EngineError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(config, Mapping):
        raise EngineError(f"{what} must be a JSON object")
    return dict(config)


def build_dsp_stage(
    runtime: WasmPluginRuntime,
    executor: ComponentExecutor,
    plugin_id: str,
    type_id: str,
    config: Config,
    sample_rate: int,
    channels: int,
    *,
    native: bool = False,
    memory_limit_bytes: Optional[int] = None,
) -> Stage:
    """A pipeline stage for the active plugin's DSP ability ``type_id``.

    ``config`` (a mapping or JSON object text) goes over the ability's default config: to the
    component processor as its config, and to the hot-path module through its parameter table,
    where every key given here must be a parameter (an unknown one is an ``EngineError`` naming
    it). ``native`` loads ``native/<name>.so`` beside the core module instead (unsandboxed; the
    speed baseline). Raises ``RuntimeStateError`` when the plugin is not active or lacks the
    ability, and ``PluginError`` when the plugin refuses the config.

    ``memory_limit_bytes`` caps the hot-path module's linear memory; it wins over the manifest's
    ``limits.hot_path_memory_mib``, which wins over the engine's 64 MiB default. A module over
    the cap is refused at load and the stage falls back to the component path, with the cap
    named in ``fallback_reason`` (as for any other hot-path ABI problem).
    """
    where = f"{plugin_id}/{type_id}"
    descriptor = _active_capability(runtime, plugin_id, "dsp", type_id)
    user = parse_config(config, f"{where} config")
    defaults = parse_config(descriptor.default_config_json, f"{where} default config")
    spec = AudioSpec(sample_rate, channels)
    processor = executor.dsp(plugin_id, type_id).create(spec, json.dumps({**defaults, **user}))
    return _stage_over(
        runtime,
        plugin_id,
        where,
        processor,
        Role.DSP_TRANSFORM,
        processor.process,
        None,
        defaults,
        user,
        spec,
        native,
        memory_limit_bytes,
    )


def build_sink_stage(
    runtime: WasmPluginRuntime,
    executor: ComponentExecutor,
    plugin_id: str,
    type_id: str,
    target: Union[str, Mapping[str, Any]],
    config: Config,
    sample_rate: int,
    channels: int,
    *,
    native: bool = False,
    memory_limit_bytes: Optional[int] = None,
) -> Stage:
    """A pipeline stage for the active plugin's output sink ``type_id``, opened on ``target``.

    The session is opened first (with ``config`` over the default config) and asked for its
    role-2 core module; the fallback writes each block to the session. Config keys reach the
    hot-path module, and ``memory_limit_bytes`` applies, as for :func:`build_dsp_stage`.
    """
    where = f"{plugin_id}/{type_id}"
    descriptor = _active_capability(runtime, plugin_id, "output_sink", type_id)
    user = parse_config(config, f"{where} config")
    defaults = parse_config(descriptor.default_config_json, f"{where} default config")
    spec = AudioSpec(sample_rate, channels)
    session = executor.output_sink(plugin_id, type_id).open(
        target if isinstance(target, str) else json.dumps(dict(target)), spec, json.dumps({**defaults, **user})
    )
    return _stage_over(
        runtime,
        plugin_id,
        where,
        session,
        Role.OUTPUT_SINK,
        session.write,
        session.reset,
        defaults,
        user,
        spec,
        native,
        memory_limit_bytes,
    )


def _stage_over(
    runtime: WasmPluginRuntime,
    plugin_id: str,
    where: str,
    resource: Any,
    role: Role,
    process: Callable[..., Any],
    reset: Optional[Callable[[], object]],
    defaults: dict[str, Any],
    user: dict[str, Any],
    spec: AudioSpec,
    native: bool,
    memory_limit_bytes: Optional[int] = None,
) -> Stage:
    """The stage over an open processor or session: its hot path if that loads, else the
    component path. The stage owns ``resource`` from here on (closed with it, or now on error)."""
    try:
        hot, reason = _hot_path(
            runtime,
            plugin_id,
            where,
            lambda: resource.describe_hot_path(spec),
            role,
            spec.sample_rate,
            spec.channels,
            native,
            _memory_limit(runtime, plugin_id, memory_limit_bytes),
        )
        if hot is None:
            return ComponentStage(
                name=where,
                role=role,
                sample_rate=spec.sample_rate,
                channels=spec.channels,
                process=process,
                configure=_merging(resource),
                reset=reset,
                close=closer(resource),
                fallback_reason=reason,
            )
        try:
            # Defaults may hold settings that are not real-time parameters; given keys must be.
            hot.configure({k: v for k, v in defaults.items() if k in hot.param_names and k not in user})
            hot.configure(user)
        except BaseException:
            hot.close()
            raise
        hot.hold(closer(resource))
        return hot
    except BaseException:
        closer(resource)()
        raise


#: The format a chain edited before playback is checked at (the real one is known at play).
_CHECK_SPEC = AudioSpec(48000, 2)


def check_dsp(
    runtime: WasmPluginRuntime, executor: ComponentExecutor, plugin_id: str, type_id: str, config: Config
) -> None:
    """Raise as building the stage would: ``RuntimeStateError`` unless ``plugin_id`` is active
    with the DSP ability ``type_id``, ``PluginError`` when the plugin refuses ``config`` (a
    processor is made at 48 kHz stereo and closed). For a chain edited before it is built."""
    where = f"{plugin_id}/{type_id}"
    descriptor = _active_capability(runtime, plugin_id, "dsp", type_id)
    user = parse_config(config, f"{where} config")
    defaults = parse_config(descriptor.default_config_json, f"{where} default config")
    executor.dsp(plugin_id, type_id).create(_CHECK_SPEC, json.dumps({**defaults, **user})).close()


def _active_capability(runtime: WasmPluginRuntime, plugin_id: str, kind: str, type_id: str) -> Any:
    descriptor = runtime.capability_of(plugin_id, kind, type_id)
    if descriptor is not None:
        return descriptor
    if not runtime.is_active(plugin_id):
        status = runtime.status(plugin_id)
        why = f": {status.last_error}" if status.last_error else ""
        raise RuntimeStateError(f"plugin {plugin_id!r} is not active ({status.lifecycle_state.value}){why}")
    have = sorted(c.type_id for c in runtime.capabilities_of(plugin_id) if c.kind.value == kind)
    raise RuntimeStateError(
        f"{plugin_id} has no {kind.replace('_', '-')} ability {type_id!r} (has: {', '.join(have) or 'none'})"
    )


def _memory_limit(runtime: WasmPluginRuntime, plugin_id: str, host_limit: Optional[int]) -> Optional[int]:
    """The hot-path memory cap in bytes: the host's, else the manifest's
    ``limits.hot_path_memory_mib``, else None (the engine's default)."""
    if host_limit is not None:
        return host_limit
    for info in runtime.active_plugins():
        if info.id == plugin_id:
            mib = info.manifest.limits.hot_path_memory_mib
            return None if mib is None else mib << 20
    return None


def _hot_path(
    runtime: WasmPluginRuntime,
    plugin_id: str,
    where: str,
    describe,
    role: Role,
    sample_rate: int,
    channels: int,
    native: bool,
    memory_limit_bytes: Optional[int] = None,
) -> tuple[Optional[HotPathStage], str]:
    """The loaded hot-path stage, or None and the reason to fall back to the component."""
    try:
        spec: Optional[CoreModuleSpec] = describe()
    except PluginError as e:
        return None, f"describe-hot-path failed: {e}"
    if spec is None:
        return None, f"the component offers no hot path for {sample_rate} Hz x {channels} ch"
    problems = spec.problems()
    if spec.role is not role:
        problems.append(f"role is {spec.role.wit_name}, expected {role.wit_name}")
    root = runtime.plugins_dir / plugin_id
    module = root
    if not problems:  # a path with problems (a NUL byte, '..') is never joined, let alone resolved
        module = (root / spec.wasm_rel_path).resolve()
        if not module.is_relative_to(root.resolve()):
            problems.append(f"wasm_rel_path {spec.wasm_rel_path!r} leaves the plugin directory")
        elif not module.is_file():
            problems.append(f"no core module at {spec.wasm_rel_path}")
    if problems:
        return None, "hot-path spec rejected: " + "; ".join(problems)
    if native:
        name = module.name[: -len(_HOTPATH_SUFFIX)] if module.name.endswith(_HOTPATH_SUFFIX) else module.stem
        so = root / "native" / f"{name}.so"
        if not so.is_file():
            # Asked for explicitly: a missing baseline is the caller's error, not a fallback.
            raise HotPathAbiError(f"{where}: no hot-path native build at native/{name}.so")
    try:
        if native:
            return HotPathStage.from_native(so, spec, sample_rate, channels, name=where), ""
        return HotPathStage.from_wasm(
            module, spec, sample_rate, channels, name=where, memory_limit_bytes=memory_limit_bytes
        ), ""
    except HotPathAbiError as e:
        return None, f"core module rejected: {e}"


def _merging(resource: Any):
    """A partial config update (like ``set_param`` on a hot-path stage) over the resource's
    current config, through the plugin's plan (hot-apply, recreate or reject)."""

    def configure(changes: Mapping[str, Any]) -> None:
        resource.update_config({**json.loads(resource.config_json), **changes})

    return configure


def closer(resource: Any) -> Callable[[], None]:
    """``resource.close`` that tolerates a plugin already disabled or unloaded underneath: the
    executor has torn the instance down then, and there is nothing left to close."""

    def close() -> None:
        try:
            resource.close()
        except RuntimeStateError:
            pass

    return close
