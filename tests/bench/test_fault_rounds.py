"""A round in which the engine bypasses a stage must not count: the harness logs it, rebuilds the
stages and measures again, and gives up with a clear error if the stage keeps faulting."""

import pytest
import wasmtime

from stbench.kernels import noise
from stbench.timing import BenchmarkError, ChainCase, interleaved_medians, paired_ratio
from stellatune.abi import BufferLayout, CoreModuleSpec, Role
from stellatune.engine import HotPathStage

_IN, _OUT = 1024, 1024 + 8192
# Copies input to output; traps on every call while its "trap" parameter is non-zero.
_WAT = f"""
(module
  (memory (export "memory") 2)
  (global $trap (mut f32) (f32.const 0))
  (data (i32.const 16) "trap\\00\\00")
  (func (export "st_hot_init") (param i32 i32) (result i32)
    (i32.store (local.get 1) (i32.const 1)) (i32.const 0))
  (func (export "st_hot_param_names") (result i32) (i32.const 16))
  (func (export "st_hot_set_param") (param i32 i32 f32) (result i32)
    (global.set $trap (local.get 2)) (i32.const 0))
  (func (export "st_hot_process") (param $ctx i32) (param $frames i32) (param $of i32) (param $fl i32)
        (result i32)
    (if (f32.ne (global.get $trap) (f32.const 0)) (then unreachable))
    (memory.copy (i32.const {_OUT}) (i32.const {_IN}) (i32.shl (local.get $frames) (i32.const 3)))
    (i32.store (local.get $of) (local.get $frames))
    (i32.const 0)))
"""
SPEC = CoreModuleSpec(
    Role.DSP_TRANSFORM, "copy.wasm", BufferLayout(in_offset=_IN, out_offset=_OUT, max_frames=1024, channels=2)
)


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "copy.wasm"
    path.write_bytes(wasmtime.wat2wasm(_WAT))
    return path


def test_a_faulted_round_is_logged_and_taken_again_with_fresh_stages(module):
    builds = []

    def make_stages():
        builds.append(len(builds))
        trap = 1.0 if len(builds) == 1 else 0.0  # only the first build faults
        return [HotPathStage.from_wasm(module, SPEC, 48000, 2, {"trap": trap}, name="copy")]

    faults: list[dict] = []
    case = ChainCase(make_stages, 64, noise(1024), "copy @ 64", faults)
    ns = case()
    assert ns > 0
    assert len(builds) == 2
    assert [(f["case"], f["stage"], f["kind"], f["block"]) for f in faults] == [("copy @ 64", "copy", "trap", 0)]
    assert "unreachable" in faults[0]["message"]
    assert case.stages[0].fault is None
    case.close()


def test_a_stage_that_keeps_faulting_stops_the_run_with_a_clear_error(module):
    faults: list[dict] = []
    case = ChainCase(
        lambda: [HotPathStage.from_wasm(module, SPEC, 48000, 2, {"trap": 1.0}, name="copy")],
        64,
        noise(1024),
        "copy @ 64",
        faults,
    )
    with pytest.raises(BenchmarkError, match=r"copy @ 64: a stage faulted in 5 rounds in a row \(last: copy, trap\)"):
        interleaved_medians({"copy": case}, rounds=3)
    assert len(faults) == 5


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # Round 3 ran under load on both sides: its ratio is as good as the others'.
    assert paired_ratio([2.0, 4.0, 90.0], [1.0, 2.0, 30.0]) == 2.0
