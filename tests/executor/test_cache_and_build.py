"""The compile cache survives a restart; the builder makes installable, cached zips; a component
built from C runs through the same executor and describes its hot path."""

from __future__ import annotations

import json
import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from stellatune.abi import Role
from stellatune.errors import ActivationError, PluginBuildError
from stellatune.executor import AudioSpec, ComponentExecutor
from stellatune.manifest import AbilityKind
from stellatune.runtime import CapabilityDescriptor
from stellatune.sdk.build import build_plugin

GAIN = "dev.stellatune.example.gain"

# Some of these build Python components (cached after the first run).
pytestmark = pytest.mark.slow


def _gain(built, root):
    """An unpacked C gain package and its info/capabilities, as the runtime would pass them."""
    with zipfile.ZipFile(built("gain")) as zf:
        zf.extractall(root)
    rel = "wasm/gain.component.wasm"
    info = SimpleNamespace(id=GAIN, root_dir=root, manifest=None)
    caps = [
        CapabilityDescriptor(
            GAIN, "gain", rel, "stellatune:plugin/dsp-plugin@0.1.0", AbilityKind.DSP, "gain", "gain", "{}", "{}"
        )
    ]
    return root / rel, info, caps


def test_a_second_executor_loads_the_compiled_component_from_disk(built, tmp_path):
    wasm, info, caps = _gain(built, tmp_path / "pkg")
    cache = tmp_path / "cache"
    first = ComponentExecutor(cache_dir=cache, log_dir=tmp_path / "logs")
    first.activate(info, caps)
    assert (first.cache.stats.compiled, first.cache.stats.loaded_from_disk) == (1, 0)
    first.shutdown()
    assert len(list((cache / "components").glob("*.cwasm"))) == 1

    second = ComponentExecutor(cache_dir=cache, log_dir=tmp_path / "logs")
    second.activate(info, caps)
    assert (second.cache.stats.compiled, second.cache.stats.loaded_from_disk) == (0, 1)
    proc = second.dsp(GAIN, "gain").create(AudioSpec(48000, 1), '{"gain_db": 6}')
    assert np.allclose(proc.process(np.ones((3, 1), np.float32)), 10 ** (6 / 20), atol=1e-6)

    # Changed bytes under the same path are a different key: the cache never runs stale code.
    wasm.write_bytes(wasm.read_bytes() + b"\0")  # trailing junk: no longer a valid component
    third = ComponentExecutor(cache_dir=cache, log_dir=tmp_path / "logs")
    with pytest.raises(ActivationError, match="not a valid component"):
        third.activate(info, caps)
    for ex in (second, third):
        ex.shutdown()


def test_a_corrupt_cache_entry_is_recompiled(built, tmp_path):
    wasm, info, caps = _gain(built, tmp_path / "pkg")
    cache = tmp_path / "cache"
    ex = ComponentExecutor(cache_dir=cache, log_dir=tmp_path / "logs")
    key = ex.cache.key_for(wasm.read_bytes())
    (cache / "components").mkdir(parents=True)
    (cache / "components" / f"{key}.cwasm").write_bytes(b"garbage")
    ex.activate(info, caps)
    assert (ex.cache.stats.compiled, ex.cache.stats.loaded_from_disk) == (1, 0)
    assert ex.dsp(GAIN, "gain").create(AudioSpec(48000, 1)).process(np.ones((2, 1), np.float32)).shape == (2, 1)
    ex.shutdown()


def test_the_built_zip_holds_the_manifest_artifacts_and_sidecars(built):
    with zipfile.ZipFile(built("wav-sink")) as zf:
        names = set(zf.namelist())
        mode = zf.getinfo("bin/wav-writer").external_attr >> 16
    assert names == {"plugin.json", "wasm/wav-sink.wasm", "bin/wav-writer"}
    assert mode & 0o111, "the sidecar must stay executable"


def test_builds_are_cached_by_source_hash(built, tmp_path):
    zip_path = built("pygain")
    before = zip_path.stat().st_mtime_ns
    assert build_plugin(_examples() / "pygain") == zip_path
    assert zip_path.stat().st_mtime_ns == before
    out = build_plugin(_examples() / "pygain", tmp_path / "out" / "pygain.zip")
    assert out.read_bytes() == zip_path.read_bytes()


def test_a_broken_plugin_fails_to_build_with_the_compilers_message(tmp_path):
    src = tmp_path / "broken"
    shutil.copytree(_examples() / "pygain", src)
    manifest = json.loads((src / "plugin.json").read_text())
    manifest["components"][0]["world"] = "stellatune:plugin/no-such-plugin@0.1.0"
    (src / "plugin.json").write_text(json.dumps(manifest))
    with pytest.raises(PluginBuildError, match=r"(?s)componentize-py.*World `no-such-plugin` not found"):
        build_plugin(src)
    (src / "plugin.json").write_text("{")
    with pytest.raises(PluginBuildError, match="cannot read"):
        build_plugin(src)
    with pytest.raises(PluginBuildError, match=r"no plugin.json"):
        build_plugin(tmp_path)


def test_a_c_component_runs_through_the_executor_and_describes_its_hot_path(install, executor, hooks):
    install("gain")
    proc = executor.dsp(GAIN, "gain").create(AudioSpec(48000, 2), '{"gain_db": -6}')
    out = proc.process(np.ones((16, 2), np.float32))
    assert out.shape == (16, 2) and np.allclose(out, 10 ** (-6 / 20), atol=1e-6)
    spec = proc.describe_hot_path()
    assert spec is not None and spec.role is Role.DSP_TRANSFORM and spec.problems() == []
    assert (executor.host_imports(GAIN).context.root / spec.wasm_rel_path).is_file()
    proc.close()
    assert executor.live_instances(GAIN) == 0


def _examples():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "examples" / "plugins"
