"""Fixtures for the runtime plane: real plugin packages installed by the real package plane into a
tmp plugins directory, and a lifecycle host that records (and can fail) every hook call.

The ``.wasm`` files hold placeholder bytes: the runtime never runs them, it only hashes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import pytest

from stellatune import package
from stellatune.errors import ActivationError
from stellatune.runtime import CapabilityDescriptor, DisableReason, RuntimePluginInfo

WORLDS = {
    "decoder": "stellatune:plugin/decoder-plugin@0.1.0",
    "dsp": "stellatune:plugin/dsp-plugin@0.1.0",
    "source": "stellatune:plugin/source-plugin@0.1.0",
}


def write_plugin(
    src: Path,
    plugin_id: str,
    *,
    version: str = "1.0.0",
    abilities: Optional[list[dict]] = None,
    kind: str = "dsp",
    wasm: bytes = b"\0asm placeholder",
) -> Path:
    """Write a plugin source directory (``plugin.json`` + one component) and return it."""
    if abilities is None:
        abilities = [{"kind": kind, "type_id": "main"}]
    src.mkdir(parents=True, exist_ok=True)
    (src / "wasm").mkdir(exist_ok=True)
    (src / "wasm" / "main.wasm").write_bytes(wasm)
    manifest = {
        "schema_version": 1,
        "id": plugin_id,
        "name": f"Plugin {plugin_id}",
        "version": version,
        "api_version": 1,
        "components": [
            {"id": "main", "path": "wasm/main.wasm", "world": WORLDS[abilities[0]["kind"]], "abilities": abilities}
        ],
    }
    (src / "plugin.json").write_text(json.dumps(manifest, indent=2))
    return src


class RecordingLifecycleHost:
    """A lifecycle host that records every call in ``events`` and fails on demand.

    ``fail_activate(info)`` / ``fail_deactivate(plugin_id, reason)`` return True to make the call
    raise ``ActivationError``; the failing call is still recorded.
    """

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.active: dict[str, RuntimePluginInfo] = {}
        self.fail_activate: Callable[[RuntimePluginInfo], bool] = lambda info: False
        self.fail_deactivate: Callable[[str, DisableReason], bool] = lambda pid, reason: False

    def activate(self, plugin: RuntimePluginInfo, capabilities: Sequence[CapabilityDescriptor]) -> None:
        self.events.append(("activate", plugin.id, plugin.version))
        if self.fail_activate(plugin):
            raise ActivationError("refused by the test host", plugin.id)
        self.active[plugin.id] = plugin

    def deactivate(self, plugin_id: str, reason: DisableReason) -> None:
        self.events.append(("deactivate", plugin_id, reason))
        if self.fail_deactivate(plugin_id, reason):
            raise ActivationError(f"cannot stop ({reason.value})", plugin_id)
        self.active.pop(plugin_id, None)

    def shutdown(self) -> None:
        self.events.append(("shutdown",))

    def take(self) -> list[tuple]:
        """The events so far, clearing the list."""
        events, self.events = self.events, []
        return events


class PreparingLifecycleHost(RecordingLifecycleHost):
    """A recording host that also has the optional ``prepare`` pre-flight hook."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_prepare: Callable[[RuntimePluginInfo], bool] = lambda info: False

    def prepare(self, plugin: RuntimePluginInfo, capabilities: Sequence[CapabilityDescriptor]) -> None:
        self.events.append(("prepare", plugin.id, plugin.version))
        if self.fail_prepare(plugin):
            raise ActivationError("does not compile", plugin.id)


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    return d


@pytest.fixture
def host() -> RecordingLifecycleHost:
    return RecordingLifecycleHost()


@pytest.fixture
def preparing_host() -> PreparingLifecycleHost:
    return PreparingLifecycleHost()


@pytest.fixture
def install(tmp_path: Path, plugins_dir: Path):
    """``install(plugin_id, **write_plugin_kwargs)``: build a source dir and install it for real."""
    counter = iter(range(10_000))

    def _install(plugin_id: str, **kwargs) -> Path:
        src = write_plugin(tmp_path / "src" / f"{plugin_id}-{next(counter)}", plugin_id, **kwargs)
        installed = package.install_from_artifact(plugins_dir, src)
        return Path(installed.root_dir)

    return _install
