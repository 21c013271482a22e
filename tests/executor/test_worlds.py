"""Components are checked against their declared world by type, at activation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from stellatune import package
from stellatune.errors import ActivationError
from stellatune.executor.worlds import SIGNATURES_FILE, WORLDS, reference_signatures, world_of
from stellatune.manifest import AbilityKind, load_manifest
from stellatune.runtime import CapabilityDescriptor, LifecycleState

REPO = Path(__file__).resolve().parents[2]
WIT = REPO / "wit" / "stellatune-plugin"
WASM_TOOLS = str(Path(sys.executable).parent / "wasm-tools")
COMPAT_DIR = REPO / "tests" / "fixtures" / "original-manifests"
PYGAIN = "dev.stellatune.example.pygain"

# These build Python components (cached after the first run).
pytestmark = pytest.mark.slow


def test_the_wit_package_is_valid():
    out = subprocess.run([WASM_TOOLS, "component", "wit", str(WIT)], capture_output=True, text=True, check=True)
    for world in WORLDS:
        assert f"world {world} " in out.stdout


def test_the_world_signatures_the_executor_checks_against_match_the_wit():
    assert reference_signatures(WIT, WASM_TOOLS) == json.loads(SIGNATURES_FILE.read_text())


@pytest.mark.parametrize("source", sorted(COMPAT_DIR.glob("*.json")), ids=lambda p: p.name)
def test_the_original_manifests_validate_and_their_worlds_serve_their_kinds(tmp_path, source):
    document = json.loads(source.read_text())
    for component in document["components"]:
        (tmp_path / component["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / component["path"]).write_bytes(b"\0asm")
    shutil.copy(source, tmp_path / "plugin.json")
    manifest = load_manifest(tmp_path / "plugin.json")
    for component in manifest.components:
        world = world_of(component.world)
        assert {a.kind.value for a in component.abilities} == {world.kind}


def test_the_compat_corpus_is_there():
    assert len(list(COMPAT_DIR.glob("*.json"))) == 3


@pytest.mark.parametrize("text", ["wasi:cli/command", "stellatune:plugin/mixer-plugin@0.1.0", "other:pkg/dsp-plugin"])
def test_unknown_worlds_are_refused(text):
    with pytest.raises(ActivationError, match="unsupported world"):
        world_of(text)


def _repackage(src_zip: Path, dest: Path, edit) -> Path:
    """Unpack a built plugin, let ``edit`` change its manifest dict, return the directory."""
    with zipfile.ZipFile(src_zip) as zf:
        zf.extractall(dest)
    manifest = json.loads((dest / "plugin.json").read_text())
    edit(manifest)
    (dest / "plugin.json").write_text(json.dumps(manifest))
    return dest


def test_a_dsp_component_declared_as_a_decoder_fails_activation(runtime, executor, plugins_dir, built, tmp_path):
    def as_decoder(m):
        m["components"][0]["world"] = "stellatune:plugin/decoder-plugin@0.1.0"
        m["components"][0]["abilities"] = [
            {"kind": "decoder", "type_id": "pygain", "decoder": {"ext_scores": [{"ext": "wav", "score": 1}]}}
        ]

    package.install_from_artifact(plugins_dir, _repackage(built("pygain"), tmp_path / "pkg", as_decoder))
    report = runtime.sync_plugins()
    status = runtime.status(PYGAIN)
    assert status.lifecycle_state is LifecycleState.FAILED
    assert [(t.outcome.value, t.detail.value) for t in report.transitions] == [("failed", "install_failed")]
    assert "does not implement world decoder-plugin" in status.last_error
    assert "does not export stellatune:plugin/decoder@0.1.0" in status.last_error
    assert "imports stellatune:plugin/hot-path@0.1.0" in status.last_error
    assert not executor.is_active(PYGAIN)


def test_an_ability_whose_kind_is_not_the_worlds_fails_activation(executor, built, tmp_path):
    # The manifest plane refuses this too; the executor checks again for hosts that bypass it.
    root = _repackage(built("pygain"), tmp_path / "pkg", lambda m: None)
    info = SimpleNamespace(id=PYGAIN, root_dir=root, manifest=None)
    caps = [
        CapabilityDescriptor(
            PYGAIN,
            "pygain",
            "wasm/pygain.wasm",
            "stellatune:plugin/dsp-plugin@0.1.0",
            kind,
            type_id,
            type_id,
            "{}",
            "{}",
        )
        for kind, type_id in ((AbilityKind.DSP, "pygain"), (AbilityKind.LYRICS, "nope"))
    ]
    with pytest.raises(ActivationError, match=r"ability lyrics:nope .* dsp-plugin serves dsp"):
        executor.activate(info, caps)
    assert not executor.is_active(PYGAIN)
    executor.activate(info, caps[:1])
    assert executor.worlds_of(PYGAIN) == {"pygain": "dsp-plugin"}


def test_a_file_that_is_not_a_component_fails_activation(runtime, plugins_dir, built, tmp_path):
    pkg = _repackage(built("pygain"), tmp_path / "pkg", lambda m: None)
    (pkg / "wasm" / "pygain.wasm").write_bytes(b"\0asm\x01\0\0\0")  # a core module, not a component
    package.install_from_artifact(plugins_dir, pkg)
    runtime.sync_plugins()
    status = runtime.status(PYGAIN)
    assert status.lifecycle_state is LifecycleState.FAILED
    assert "not a valid component" in status.last_error
