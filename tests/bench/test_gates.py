"""The replacement gates (bench/stbench/gates.py): every verdict follows from the outcomes and
figures given, and every test a row cites exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stbench import gates, report_evidence, report_render

REPO = Path(__file__).resolve().parents[2]


def _all_passed() -> dict[str, str]:
    return {ref if "::" in ref else f"{ref}::test_x": "passed" for ref in gates.all_row_tests()} | {
        f"{tree}/test_a.py::test_a": "passed" for tree in gates.EVIDENCE_TREES
    }


def _good_inputs() -> dict:
    targets = {
        "wasm_vs_native": 1.2,
        "fixed_overhead_ns": 70.0,
        "chain_vs_pedalboard": 2.5,
        "edit_to_output_p99_ms": 5.0,
        "seek_to_audio_p99_ms": 8.0,
        "stage_build_ms": 1.4,
    }
    return {
        "outcomes": _all_passed(),
        "bench": {
            "targets": [{"key": k, "measured": v} for k, v in targets.items()],
            "realtime": [
                {"seconds": 30, "xruns": 0, "chain_p999_fraction": 0.2, "render_max_fraction": 0.4},
                {"seconds": 30, "xruns": 1, "chain_p999_fraction": 0.3, "render_max_fraction": 0.5},
            ],
        },
        "memory": {
            "stages": 128,
            "rss_growth_kb": 38400,
            "rss_per_stage_kb": 300.0,
            "linear_memory_median_kb": 1088.0,
            "linear_memory_max_kb": 1152.0,
        },
        "evidence": {
            "stress_churn_hot_path": {"rss_growth_kb": 900, "fd_growth": 0},
            "stress_reload_while_playing": {"rss_growth_kb": 2000, "leaked": 0},
            "stress_sidecar_crash_loop": {"orphans": 0},
            "stress_concurrent_sessions": {"mismatches": 0},
            "stress_soak": {"faults": 0, "xruns_per_minute": 0.5, "callback_load": {"p999": 0.2, "max": 0.6}},
        },
    }


def _gate(results: list[gates.GateResult], name: str) -> gates.GateResult:
    return next(g for g in results if g.name == name)


def test_good_figures_and_passing_tests_pass_every_gate():
    results = gates.evaluate(_good_inputs())
    assert [g.name for g in results] == [
        "Feature parity",
        "Stability",
        "Performance",
        "Operational readiness",
        "Migration readiness",
    ]
    assert all(g.passed for g in results), [(g.name, g.to_json()) for g in results if not g.passed]


@pytest.mark.parametrize("outcome", ["failed", "skipped"])
def test_a_failed_or_skipped_proof_fails_its_row_and_gate(outcome):
    inputs = _good_inputs()
    ref = gates.MIGRATION[0].tests[0]
    inputs["outcomes"][ref] = outcome
    migration = _gate(gates.evaluate(inputs), "Migration readiness")
    assert not migration.passed
    assert not migration.rows[0].passed and migration.rows[0].counts == {outcome: 1, "passed": 1}
    assert all(r.passed for r in migration.rows[1:])


def test_a_row_whose_tests_never_ran_fails():
    inputs = _good_inputs()
    inputs["outcomes"] = {k: v for k, v in inputs["outcomes"].items() if not k.startswith("tests/cli/")}
    migration = _gate(gates.evaluate(inputs), "Migration readiness")
    assert not migration.passed and migration.rows[-1].counts == {"missing": 1}


def test_parametrized_cases_and_whole_files_are_matched():
    inputs = _good_inputs()
    ref = gates.PARITY[0].tests[0]  # a test function
    del inputs["outcomes"][ref]
    inputs["outcomes"][ref + "[pcm16]"] = "passed"
    inputs["outcomes"][ref + "[float]"] = "failed"
    parity = _gate(gates.evaluate(inputs), "Feature parity")
    assert parity.rows[0].counts == {"passed": 3, "failed": 1} and not parity.rows[0].passed


@pytest.mark.parametrize(
    ("where", "value", "gate"),
    [
        (("evidence", "stress_sidecar_crash_loop", "orphans"), 1, "Stability"),
        (("evidence", "stress_churn_hot_path", "rss_growth_kb"), 20 * 1024 + 1, "Stability"),
        (("memory", "rss_per_stage_kb"), 4096.0, "Performance"),
    ],
)
def test_a_figure_past_its_threshold_fails_the_gate(where, value, gate):
    inputs = _good_inputs()
    node = inputs
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    assert not _gate(gates.evaluate(inputs), gate).passed


def test_a_missing_figure_is_not_a_pass():
    inputs = _good_inputs()
    del inputs["evidence"]["stress_soak"]
    stability = _gate(gates.evaluate(inputs), "Stability")
    soak = [c for c in stability.checks if c.source == "tests/stress/test_soak.py"]
    assert len(soak) == 4 and all(c.measured is None and not c.passed for c in soak)


def test_soak_xruns_or_a_heavy_callback_fail_stability():
    for figure, value in (
        ("xruns_per_minute", 13),  # above the shared VM's noise floor
        ("callback_load", {"p999": 0.7, "max": 0.8}),
        ("callback_load", {"p999": 0.2, "max": 1.0}),  # one callback overran its period
    ):
        inputs = _good_inputs()
        inputs["evidence"]["stress_soak"][figure] = value
        stability = _gate(gates.evaluate(inputs), "Stability")
        failed = [c for c in stability.checks if not c.passed]
        assert not stability.passed and len(failed) == 1 and failed[0].source == "tests/stress/test_soak.py"


def test_performance_reads_the_benchmark_targets_and_worst_realtime_run():
    inputs = _good_inputs()
    inputs["bench"]["realtime"][1]["xruns"] = 7  # in 30 s: 14 a minute
    performance = _gate(gates.evaluate(inputs), "Performance")
    xruns = next(c for c in performance.checks if c.source == "bench: realtime[].xruns")
    assert xruns.measured == 14 and not xruns.passed
    inputs = _good_inputs()
    inputs["bench"]["realtime"][0]["render_max_fraction"] = 1.2
    overrun = next(c for c in _gate(gates.evaluate(inputs), "Performance").checks if "longest callback" in c.claim)
    assert overrun.measured == 1.2 and not overrun.passed
    inputs["bench"]["targets"] = [t for t in inputs["bench"]["targets"] if t["key"] != "wasm_vs_native"]
    cpu = next(c for c in _gate(gates.evaluate(inputs), "Performance").checks if c.source.endswith("wasm_vs_native"))
    assert cpu.measured is None and not cpu.passed


def test_the_report_shows_every_verdict_threshold_and_link(tmp_path):
    inputs = _good_inputs()
    inputs["outcomes"][gates.OPERATIONS[0].tests[0] + "::test_x"] = "failed"
    results = gates.evaluate(inputs)
    report = {
        **inputs,
        "command": "stellatune report",
        "full": False,
        "started_at": "2026-12-04T00:00:00+00:00",
        "duration_s": 60.0,
        "tests": {"exitstatus": 1, "seconds": 30.0, "totals": {"passed": 10, "failed": 1}},
        "bench": {**inputs["bench"], "machine": {"cpu": "test CPU"}},
    }
    md = report_render.markdown(report, results, link_root="../")
    assert "Can the Wasm runtime replace the native one? **FAIL**" in md
    assert "## 4. Operational readiness: **FAIL**" in md and "## 1. Feature parity: **pass**" in md
    for check in gates.PERFORMANCE:
        assert check.threshold in md
    assert "](../tests/service/test_doctor.py)" in md


def test_the_report_tabulates_compatibility_and_the_soak():
    stats = {"p50_us": 1.0, "p99_us": 2.0, "max_us": 9.0, "median_round_ns_per_block": 1000.0}
    evidence = {
        "compat_output": {
            "claim": "bit-exact",
            "plugins": {"gain": {"cases": 3, "bit_exact": False, "max_abs_error": 2e-7}},
        },
        "compat_latency": {
            "how": "C loop",
            "envelope": {
                "gain": {"64": {"native": stats, "wasm": {**stats, "median_round_ns_per_block": 1250.0}}, "config": {}}
            },
        },
        "compat_fault_trap": {"native": "not containable", "wasm": {"kind": "trap", "block": 2}},
        "stress_soak": {
            "seconds": 600,
            "frames": 64,
            "chain": ["g"] * 8,
            "callbacks": 450000,
            "xruns": 2,
            "ring_underruns": 0,
            "faults": 0,
            "seconds_without_progress": 0,
            "edits": {"bypass": 120},
            "callback_us": {"p50": 4.0, "p99": 30.0, "p999": 36.0, "max": 150.0},
            "callback_load": {"p99": 0.02, "p999": 0.03, "max": 0.11},
        },
        "fuzz_zip": {"examples": 50, "outcomes": {"installed": 1}, "limits": {"max_entries": 64}},
    }
    md = "\n".join(
        report_evidence.compatibility(evidence)
        + report_evidence.soak(evidence)
        + report_evidence.other_figures(evidence)
    )
    assert "| gain | 3 | **no** | 2e-07 |" in md
    assert "| gain | 64 | 1 / 1 | 2 / 2 | 9 / 9 | 1.25 |" in md
    assert "| trap | not containable | contained: `trap` fault at block 2, stage bypassed |" in md
    assert "10.0 minutes" in md and "8-plugin chain" in md and "(120 bypass)" in md
    assert "| 450000 | 2 | 0 | 0 | 0 |" in md and "| µs | 4 | 30 | 36 | 150 |" in md
    assert "**fuzz_zip**: examples = 50, outcomes.installed = 1, limits.max_entries = 64" in md
    assert "stress_soak" not in md and "compat_" not in md


def test_every_test_a_row_cites_exists():
    """A renamed or deleted test would leave a row proved by nothing: collect them all."""
    refs = gates.all_row_tests()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *refs],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    for ref in refs:
        assert any(n == ref or n.startswith((ref + "::", ref + "[")) for n in collected), ref


def test_the_outcomes_plugin_records_each_test(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert False\n"
        "@pytest.mark.skip\ndef test_skip(): pass\n"
        "@pytest.fixture\ndef broken():\n    yield\n    raise RuntimeError\n"
        "def test_teardown_fails(broken): pass\n"
    )
    out = tmp_path / "outcomes.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "stbench.outcomes", "-p", "no:cacheprovider", "test_sample.py"],
        cwd=tmp_path,
        env={"STBENCH_OUTCOMES": str(out), "PYTHONPATH": str(REPO / "bench"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    got = json.loads(out.read_text())["outcomes"]
    assert got == {
        "test_sample.py::test_ok": "passed",
        "test_sample.py::test_bad": "failed",
        "test_sample.py::test_skip": "skipped",
        "test_sample.py::test_teardown_fails": "failed",
    }
