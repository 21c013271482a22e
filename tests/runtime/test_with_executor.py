"""The runtime driving the real component executor on the real example gain plugin (C, built from
examples/plugins/gain and cached by the SDK builder): activation compiles it, disable tears it down,
and broken updates are reported without losing the working version when its files remain."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stellatune import package
from stellatune.executor import ComponentExecutor
from stellatune.executor.values import AudioSpec
from stellatune.runtime import DesiredState, LifecycleState, WasmPluginRuntime
from stellatune.sdk.build import build_plugin

REPO = Path(__file__).resolve().parents[2]
GAIN_ID = "dev.stellatune.example.gain"


@pytest.fixture(scope="module")
def gain_zip() -> Path:
    return build_plugin(REPO / "examples" / "plugins" / "gain")


@pytest.fixture
def executor(tmp_path: Path):
    ex = ComponentExecutor(cache_dir=tmp_path / "cache")
    yield ex
    ex.shutdown()


def unpacked(gain_zip: Path, dest: Path) -> Path:
    with zipfile.ZipFile(gain_zip) as zf:
        zf.extractall(dest)
    (manifest_path,) = dest.rglob("plugin.json")
    return manifest_path.parent


def test_sync_activates_through_the_executor_and_disable_tears_down(plugins_dir, gain_zip, executor):
    package.install_from_artifact(plugins_dir, gain_zip)
    with WasmPluginRuntime(plugins_dir, executor) as rt:
        report = rt.sync_plugins()
        assert report.ok, report.errors
        assert executor.is_active(GAIN_ID)
        assert rt.capability_of(GAIN_ID, "dsp", "gain").display_name == "Gain"
        processor = executor.dsp(GAIN_ID, "gain").create(AudioSpec(48000, 2))
        block = np.full((64, 2), 0.25, dtype=np.float32)
        assert processor.process(block).shape == block.shape

        rt.set_desired_state(GAIN_ID, DesiredState.DISABLED)
        assert not executor.is_active(GAIN_ID) and not rt.is_active(GAIN_ID)
    assert executor.is_active(GAIN_ID) is False


def test_garbage_component_is_reported_as_install_failed(plugins_dir, gain_zip, executor, tmp_path):
    src = unpacked(gain_zip, tmp_path / "unpacked")
    (src / "wasm" / "gain.component.wasm").write_bytes(b"\0asm\x01\0\0\0 not really")
    package.install_from_artifact(plugins_dir, src)
    with WasmPluginRuntime(plugins_dir, executor) as rt:
        report = rt.sync_plugins()
    (transition,) = report.transitions
    assert (transition.trigger.value, transition.outcome.value, transition.detail.value) == (
        "load_new",
        "failed",
        "install_failed",
    )
    status = report.status_of(GAIN_ID)
    assert status.lifecycle_state is LifecycleState.FAILED and status.last_error
    assert not executor.is_active(GAIN_ID)


def test_broken_update_keeps_the_working_version(plugins_dir, gain_zip, executor, tmp_path):
    package.install_from_artifact(plugins_dir, gain_zip)
    with WasmPluginRuntime(plugins_dir, executor) as rt:
        assert rt.sync_plugins().ok
        # Update in place: version 2 adds a second component whose file is not a component.
        # The first component's bytes stay on disk, so the previous version can come back.
        root = plugins_dir / GAIN_ID
        manifest = json.loads((root / "plugin.json").read_text())
        broken = dict(manifest["components"][0], id="broken", path="wasm/broken.wasm")
        broken["abilities"] = [dict(broken["abilities"][0], type_id="broken")]
        manifest["components"].append(broken)
        manifest["version"] = "2.0.0"
        (root / "wasm" / "broken.wasm").write_bytes(b"\0asm\x01\0\0\0")
        (root / "plugin.json").write_text(json.dumps(manifest))

        report = rt.sync_plugins()
        (transition,) = report.transitions
        assert (transition.trigger.value, transition.outcome.value, transition.detail.value) == (
            "reload_changed",
            "failed",
            "install_failed",
        )
        assert [p.version for p in report.active_plugins] == ["0.1.0"]
        assert report.status_of(GAIN_ID).last_error
        assert executor.is_active(GAIN_ID)
        assert rt.capability_of(GAIN_ID, "dsp", "broken") is None
        processor = executor.dsp(GAIN_ID, "gain").create(AudioSpec(48000, 2))
        assert processor.process(np.zeros((16, 2), dtype=np.float32)).shape == (16, 2)
