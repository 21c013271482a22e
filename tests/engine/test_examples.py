"""The SDK's example kernels, built from examples/plugins/*/src/*.c: wasm output equals native.

Resolving installed plugins into stages is tested in tests/compose/."""

import json
from pathlib import Path

import numpy as np
import pytest

from stellatune.abi import Role, sdk_core_module_spec
from stellatune.engine import Chain, HotPathStage
from stellatune.errors import EngineError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
RATE = 48000


def c_examples():
    """(name, role) of every example written in C with a dsp or output_sink ability."""
    out = []
    for d in sorted(EXAMPLES.iterdir()):
        if not any((d / "src").glob("*.c")) or not (d / "plugin.json").is_file():
            continue
        kinds = {a["kind"] for c in json.loads((d / "plugin.json").read_text())["components"] for a in c["abilities"]}
        if "dsp" in kinds:
            out.append((d.name, Role.DSP_TRANSFORM))
        elif kinds & {"output_sink", "output-sink"}:
            out.append((d.name, Role.OUTPUT_SINK))
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    from stellatune.sdk.cbuild import build_c_plugin

    cache = tmp_path_factory.mktemp("cbuild-cache")
    root = tmp_path_factory.mktemp("examples")

    def build(name: str) -> Path:
        out = root / name
        if not out.exists():
            build_c_plugin(EXAMPLES / name, out, cache_dir=cache)
        return out

    return build


def midpoints(example: Path) -> dict:
    """The middle of each numeric config range the manifest's schema declares."""
    out = {}
    for c in json.loads((example / "plugin.json").read_text())["components"]:
        for a in c["abilities"]:
            schema = json.loads(a.get("config_schema_json") or "{}")
            for key, prop in schema.get("properties", {}).items():
                if "minimum" in prop and "maximum" in prop:
                    out[key] = (prop["minimum"] + prop["maximum"]) / 2
    return out


def artifact_name(pkg: Path) -> str:
    return next((pkg / "wasm").glob("*.hotpath.wasm")).name[: -len(".hotpath.wasm")]


@pytest.mark.parametrize("name, role", c_examples())
def test_wasm_output_equals_native_output(built, noise, name, role):
    pkg = built(name)
    stem = artifact_name(pkg)
    spec = sdk_core_module_spec(f"wasm/{stem}.hotpath.wasm", role, 2)
    wasm = HotPathStage.from_wasm(pkg / "wasm" / f"{stem}.hotpath.wasm", spec, RATE, 2)
    native = HotPathStage.from_native(pkg / "native" / f"{stem}.so", spec, RATE, 2)
    assert wasm.param_names == native.param_names
    pipes = [Chain([s], RATE, 2, block_frames=256) for s in (wasm, native)]
    x = noise(RATE // 2)
    # Both builds run the same C with IEEE float ops and no FMA contraction: bit-exact.
    for render in range(2):
        a, b = (p.process(x) for p in pipes)
        np.testing.assert_array_equal(a, b)
        for stage in (wasm, native):
            assert stage.fault is None
        if render == 0:  # a parameter change must land the same way
            for param, value in midpoints(EXAMPLES / name).items():
                for stage in (wasm, native):
                    stage.set_param(param, value)


def gain_stage(built):
    pkg = built("gain")
    spec = sdk_core_module_spec("wasm/gain.hotpath.wasm", Role.DSP_TRANSFORM, 2)
    return HotPathStage.from_wasm(pkg / "wasm" / "gain.hotpath.wasm", spec, RATE, 2, {"gain_db": 0})


def test_a_refused_parameter_value_is_an_error_but_not_a_fault(built, noise):
    stage = gain_stage(built)
    with pytest.raises(EngineError, match=r"refused gain_db=1000.0 \(error code 1, invalid-arg\)"):
        stage.set_param("gain_db", 1000)
    x = noise(256)
    np.testing.assert_array_equal(Chain([stage], RATE, 2).process(x), x)
    assert stage.fault is None and stage.stats().rejected_params == 1
