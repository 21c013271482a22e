"""From an installed plugin to a ready hot-path stage."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Union

from stellatune.engine.stages import HotPathStage
from stellatune.errors import EngineError, HotPathAbiError, PluginNotInstalledError
from stellatune.manifest import AbilityKind, load_manifest
from stellatune.sdk.abi import Role, sdk_core_module_spec

__all__ = ["dsp_stage_for"]

_COMPONENT_SUFFIX = ".component.wasm"


def dsp_stage_for(
    plugins_dir: Union[str, Path], plugin_id: str, type_id: str,
    config: Union[Mapping[str, Any], str, None], sample_rate: int, channels: int,
    native: bool = False,
) -> HotPathStage:
    """Load the hot-path core module of an installed plugin's DSP ability ``type_id``.

    ``config`` (a mapping or a JSON object string) is applied on top of the ability's default
    config; its keys must be parameter names of the module. ``native`` loads the native
    baseline build instead. The spec comes from the C SDK's fixed memory map: this is the one
    place that will ask the component's ``describe-hot-path`` instead.
    """
    root = Path(plugins_dir) / plugin_id
    manifest_path = root / "plugin.json"
    if not manifest_path.is_file():
        raise PluginNotInstalledError(f"plugin {plugin_id!r} is not installed in {plugins_dir}")
    manifest = load_manifest(manifest_path)
    found = [(c, a) for c in manifest.components for a in c.abilities
             if a.kind is AbilityKind.DSP and a.type_id == type_id]
    if not found:
        dsps = sorted(a.type_id for c in manifest.components for a in c.abilities if a.kind is AbilityKind.DSP)
        raise HotPathAbiError(f"{plugin_id} has no dsp ability {type_id!r} (has: {', '.join(dsps) or 'none'})")
    component, ability = found[0]
    name = Path(component.path).name
    name = name[: -len(_COMPONENT_SUFFIX)] if name.endswith(_COMPONENT_SUFFIX) else Path(name).stem
    wasm_rel = f"wasm/{name}.hotpath.wasm"
    artifact = root / (f"native/{name}.so" if native else wasm_rel)
    if not artifact.is_file():
        raise HotPathAbiError(f"{plugin_id}: no hot-path {'native build' if native else 'core module'}"
                              f" at {artifact.relative_to(root)}")

    user = _config_object(config, f"{plugin_id}/{type_id} config")
    defaults = _config_object(ability.default_config_json, f"{plugin_id}/{type_id} default config")
    spec = sdk_core_module_spec(wasm_rel, Role.DSP_TRANSFORM, channels)
    where = f"{plugin_id}/{type_id}"
    if native:
        stage = HotPathStage.from_native(artifact, spec, sample_rate, channels, name=where)
    else:
        stage = HotPathStage.from_wasm(artifact, spec, sample_rate, channels, name=where)
    # Defaults may hold settings that are not real-time parameters; the caller's keys must all be.
    stage.configure({k: v for k, v in defaults.items() if k in stage.param_names and k not in user})
    stage.configure(user)
    return stage


def _config_object(config: Union[Mapping[str, Any], str, None], what: str) -> dict[str, Any]:
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
