"""``stellatune bench --json --quick``: one valid JSON document with the documented keys, figures
that are consistent with each other, and targets judged by their stated thresholds. No
assertion here is about how fast anything is."""

import json
import math
import shutil

import jsonschema
import pytest

# A real benchmark run: minutes of a loaded machine's time, so not part of the default suite
# (`scripts/test -m bench` runs it). The committed results are checked by default below.
pytestmark = pytest.mark.bench

KERNELS = ["gain", "eq", "compressor", "delay"]
BLOCKS = [64, 128, 256, 1024]


def test_stdout_is_exactly_one_json_document_and_progress_goes_to_stderr(quick_run):
    assert quick_run.code == 0, quick_run.stderr[-2000:]
    json.loads(quick_run.stdout)  # the whole of stdout, nothing before or after
    assert quick_run.stdout.endswith("}\n")
    assert "bench: building kernels" in quick_run.stderr
    assert "bench:" not in quick_run.stdout


def test_document_matches_the_schema(results, schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(results, schema)
    assert results["quick"] is True


def test_every_kernel_is_measured_once_at_every_block_size_on_every_path(results):
    pairs = [(r["name"], r["frames"]) for r in results["kernels"]]
    assert sorted(pairs) == sorted((k, b) for k in KERNELS for b in BLOCKS)
    for r in results["kernels"]:
        for key, value in r.items():
            if key.endswith("_ns_per_block"):
                assert math.isfinite(value) and value > 0, (r["name"], r["frames"], key)


def test_ratios_are_computed_from_the_reported_times(results):
    # wasm_vs_native and speedup_vs_pedalboard are medians of per-round ratios (paired_ratio).
    for r in results["kernels"]:
        assert r["component_vs_wasm"] == pytest.approx(r["component_ns_per_block"] / r["wasm_ns_per_block"])
    c = results["chain"]
    assert c["wasm_us_per_call"] == pytest.approx(c["wasm_ns_per_frame"] * c["frames"] / 1000)


THRESHOLDS = {
    "wasm_vs_native": lambda v: v <= 1.15,
    "wasm_vs_native_worst": lambda v: v <= 1.3,
    "fixed_overhead_ns": lambda v: v <= 50,
    "stage_build_ms": lambda v: v <= 1,
    "component_vs_hot_path": lambda v: v >= 50,
    "chain_vs_pedalboard": lambda v: v >= 3,
    "ring_underruns": lambda v: v == 0,
    "nonfinite_check_overhead": lambda v: v <= 5,
    "edit_to_output_p99_ms": lambda v: v <= 10,
    "seek_to_audio_p99_ms": lambda v: v <= 50,
    "gapless_join_error_samples": lambda v: v == 0,
}


def test_targets_are_judged_by_their_thresholds(results):
    targets = {t["key"]: t for t in results["targets"]}
    realtime = {"ring_underruns", "realtime_16x32"}
    expected = set(THRESHOLDS) | realtime if results["realtime"] else set(THRESHOLDS)
    assert set(targets) == expected
    for key, t in targets.items():
        if key == "realtime_16x32":  # two conditions: the p99.9 (measured) and 0 xruns
            r = results["realtime_16x32"]
            assert t["met"] is (t["measured"] < 25 and r["xruns"] == 0 and r["faults"] == 0)
        else:
            assert t["met"] is THRESHOLDS[key](t["measured"]), key
    worst = max(r["wasm_vs_native"] for r in results["kernels"] if r["frames"] >= 128)
    assert targets["wasm_vs_native_worst"]["measured"] == worst
    slowest = max(r["median_ms"] for r in results["stage_build"]["kernels"])
    assert targets["stage_build_ms"]["measured"] == slowest
    overhead_128 = next(r for r in results["overhead"] if r["frames"] == 128)
    assert targets["fixed_overhead_ns"]["measured"] == overhead_128["wasm_ns_per_plugin_per_block"]
    check = results["nonfinite_check"]
    # Judged on the worst kernel (the cheapest block), not the median.
    assert targets["nonfinite_check_overhead"]["measured"] == pytest.approx(100 * check["max_overhead_fraction"])
    assert check["max_overhead_fraction"] == max(r["overhead_fraction"] for r in check["kernels"])
    assert check["median_overhead_fraction"] <= check["max_overhead_fraction"]
    assert sorted(r["name"] for r in check["kernels"]) == sorted(KERNELS)


def test_the_cpu_is_recorded(results):
    m = results["machine"]
    assert m["cpu"] and m["kernel"]
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpuinfo = f.read()
    assert f"vendor_id\t: {m['cpu_vendor']}" in cpuinfo
    assert isinstance(m["cpu_family"], int) and isinstance(m["cpu_model_number"], int)
    flags = next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    assert m["avx2"] is ("avx2" in flags) and m["avx512f"] is ("avx512f" in flags)


def test_stage_build_is_timed_for_gain_and_eq_with_its_parts(results):
    build = results["stage_build"]
    assert build["builds"] == 20 and build["warmup"] >= 1  # --quick
    assert [r["name"] for r in build["kernels"]] == ["gain", "eq"]
    for r in build["kernels"]:
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert set(r["breakdown"]) == {"create_ms", "describe_hot_path_ms", "load_ms"}
        assert all(v > 0 for v in r["breakdown"].values())


@pytest.mark.audio
def test_realtime_runs_play_the_whole_source_at_both_block_sizes(results):
    if shutil.which("jackd") is None:
        pytest.fail("jackd (Debian jackd2) is required for the real-time benchmark")
    assert results["realtime_skipped"] is None
    runs = {r["frames"]: r for r in results["realtime"]}
    assert set(runs) == {64, 128}
    for frames, r in runs.items():
        assert r["plugins"] == 8 and r["faults"] == 0
        # Every frame of the source needs one callback of `frames`, plus the ones while draining.
        assert r["callbacks"] >= r["seconds"] * results["sample_rate"] // frames
        assert r["deadline_us"] == pytest.approx(frames / results["sample_rate"] * 1e6)
        assert (
            r["chain_p50_fraction"] <= r["chain_p99_fraction"] <= r["chain_p999_fraction"] <= r["render_max_fraction"]
        )


@pytest.mark.audio
def test_the_16_plugin_chain_plays_at_32_frames_for_the_quick_length(results):
    if shutil.which("jackd") is None:
        pytest.fail("jackd (Debian jackd2) is required for the real-time benchmark")
    r = results["realtime_16x32"]
    assert (r["plugins"], r["frames"], r["seconds"], r["soak"]) == (16, 32, 3.0, False)
    assert r["faults"] == 0
    assert r["callbacks"] >= r["seconds"] * results["sample_rate"] // 32
    assert r["deadline_us"] == pytest.approx(32 / results["sample_rate"] * 1e6)
    assert r["chain_p50_fraction"] <= r["chain_p99_fraction"] <= r["chain_p999_fraction"] <= r["render_max_fraction"]
