"""stellatune.sdk.cbuild: the staged package, artifact validity, and build errors (the cache:
test_builder_cache.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stellatune.abi import Role
from stellatune.sdk.cbuild import PluginBuildError, build_c_plugin

WASM_TOOLS = str(Path(sys.executable).parent / "wasm-tools")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
WORLD_EXPORTS = {
    "dsp-plugin": "export stellatune:plugin/dsp@0.1.0;",
    "output-sink-plugin": "export stellatune:plugin/output-sink@0.1.0;",
}


def wasm_tools(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WASM_TOOLS, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["gain", "eq", "compressor", "delay", "passthrough-sink"])
def test_package_is_complete_and_valid(built, name, capsys):
    root = built[name]
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(
        ["plugin.json", f"native/{name}.so", f"wasm/{name}.component.wasm", f"wasm/{name}.hotpath.wasm"]
    )
    manifest = json.loads((root / "plugin.json").read_text())
    assert manifest == json.loads((EXAMPLES / name / "plugin.json").read_text())
    assert (root / manifest["components"][0]["path"]).is_file()
    for artifact in ("hotpath", "component"):
        proc = wasm_tools("validate", str(root / "wasm" / f"{name}.{artifact}.wasm"))
        assert proc.returncode == 0, proc.stderr
    world = manifest["components"][0]["world"].split("/")[-1].split("@")[0]
    wit = wasm_tools("component", "wit", str(root / "wasm" / f"{name}.component.wasm")).stdout
    assert WORLD_EXPORTS[world] in wit and "export stellatune:plugin/lifecycle@0.1.0;" in wit
    assert "sidecar" not in wit  # the glue imports nothing it does not use
    sizes = {p: (root / p).stat().st_size for p in files if p != "plugin.json"}
    with capsys.disabled():
        print(f"\n[sdk] {name}: " + ", ".join(f"{p} {s / 1024:.1f} KiB" for p, s in sizes.items()))


@pytest.mark.parametrize("name", ["gain", "eq", "compressor", "delay", "passthrough-sink"])
def test_manifest_schema_matches_the_kernel_params(built, hot, name):
    """plugin.json's config schema and defaults describe exactly the C parameter table."""
    ability = json.loads((built[name] / "plugin.json").read_text())["components"][0]["abilities"][0]
    schema = json.loads(ability["config_schema_json"])
    defaults = json.loads(ability["default_config_json"])
    m = hot(name)
    assert m.init(role=Role.OUTPUT_SINK if name == "passthrough-sink" else Role.DSP_TRANSFORM) == 0
    names = m.param_names()
    assert names == list(schema["properties"]) == list(defaults)
    for param, prop in schema["properties"].items():
        assert prop["default"] == defaults[param]
        assert m.set_param(param, prop["minimum"]) == 0
        assert m.set_param(param, prop["maximum"]) == 0
        span = prop["maximum"] - prop["minimum"]
        assert m.set_param(param, prop["minimum"] - span * 1e-3) != 0
        assert m.set_param(param, prop["maximum"] + span * 1e-3) != 0
    assert schema["additionalProperties"] is False


def test_native_library_exports_only_the_abi(built):
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(built["gain"] / "native" / "gain.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    assert exported == {
        "st_hot_init",
        "st_hot_process",
        "st_hot_reset",
        "st_hot_drop",
        "st_hot_param_names",
        "st_hot_set_param",
        "st_hot_native_memory",
        # the optional state-carry extension (native builds answer size 0: nothing to carry)
        "st_hot_state_size",
        "st_hot_export_state",
        "st_hot_state_staging",
        "st_hot_import_state",
    }


def make_plugin(tmp_path: Path, manifest_edit=None, source: str | None = None) -> Path:
    src = tmp_path / "plugin"
    shutil.copytree(EXAMPLES / "gain", src)
    if manifest_edit:
        manifest = json.loads((src / "plugin.json").read_text())
        manifest_edit(manifest)
        (src / "plugin.json").write_text(json.dumps(manifest))
    if source is not None:
        (src / "src" / "gain.c").write_text(source)
    return src


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m["components"].append(dict(m["components"][0])), "exactly one component"),
        (
            lambda m: m["components"][0].update(world="stellatune:plugin/decoder-plugin@0.1.0"),
            "not one the C SDK builds",
        ),
        (lambda m: m["components"][0].update(path="gain.wasm"), "wasm/<name>.component.wasm"),
        (lambda m: m["components"][0].update(path="wasm/x/y.component.wasm"), "wasm/<name>.component.wasm"),
        (lambda m: m["components"][0].update(path="wasm/../x.component.wasm"), "must stay inside the plugin"),
    ],
)
def test_bad_manifest_is_a_build_error(tmp_path, edit, message):
    with pytest.raises(PluginBuildError, match=message):
        build_c_plugin(make_plugin(tmp_path, edit), tmp_path / "out")


def test_missing_manifest_and_sources(tmp_path):
    with pytest.raises(PluginBuildError, match=r"no plugin.json"):
        build_c_plugin(tmp_path, tmp_path / "out")
    src = make_plugin(tmp_path)
    (src / "src" / "gain.c").unlink()
    with pytest.raises(PluginBuildError, match=r"no .c sources"):
        build_c_plugin(src, tmp_path / "out")


def test_compiler_error_carries_the_log(tmp_path):
    src = make_plugin(tmp_path, source='#include "stellatune_sdk.h"\nint broken( {\n')
    with pytest.raises(PluginBuildError) as info:
        build_c_plugin(src, tmp_path / "out")
    assert "compiling" in str(info.value) and "gain.c" in info.value.log
    assert not (tmp_path / "out").exists()  # nothing half-staged
