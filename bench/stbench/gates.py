"""The replacement gates: what must be proven or measured before the Wasm runtime replaces the
native one, and the thresholds each is judged by (issue #13).

Two kinds of evidence:

- **Rows** (feature parity, operational readiness, migration readiness): a claim and the tests
  that prove it, by pytest node id (a file, or a file and a test). A row holds when every test it
  names ran and passed; a skipped test proves nothing, so it fails the row too.
- **Checks** (stability, performance): a measured figure against a threshold written here.
  Figures come from the benchmark document (``stbench.suite.run``) and from what the stress,
  compatibility and fuzz tests record through the ``evidence`` fixture (tests/conftest.py).

A gate passes when all its rows and checks pass. Nothing here is set by hand: :func:`evaluate`
computes every verdict from the outcomes and figures it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Row:
    claim: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class RowResult:
    claim: str
    tests: tuple[str, ...]
    counts: dict[str, int]  # outcome -> number of test cases that matched
    passed: bool


@dataclass(frozen=True)
class Check:
    """A figure against a threshold. ``figure`` reads it from the inputs (None: not measured,
    which fails the check); ``ok`` judges it."""

    claim: str
    threshold: str
    source: str
    figure: Callable[[Mapping[str, Any]], Optional[float]]
    ok: Callable[[float], bool]
    unit: str = ""


@dataclass(frozen=True)
class CheckResult:
    claim: str
    threshold: str
    source: str
    measured: Optional[float]
    unit: str
    passed: bool


@dataclass
class GateResult:
    number: int
    name: str
    question: str
    rows: list[RowResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows) and all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "question": self.question,
            "passed": self.passed,
            "rows": [asdict(r) for r in self.rows],
            "checks": [asdict(c) for c in self.checks],
        }


# --- 1. feature parity: the original's abilities and runtime API (reference §1-§6, §8) ---------

PARITY: tuple[Row, ...] = (
    Row(
        "decoder ability: decode, seek, metadata; ranked selection by extension with local-file fallback",
        (
            "tests/executor/test_capabilities.py::test_wav_decoder_decodes_every_pcm_format",
            "tests/executor/test_capabilities.py::test_wav_decoder_seeks_and_reports_metadata",
            "tests/executor/test_capabilities.py::test_decoder_selection_ranks_by_extension_and_falls_back_for_local_files",
        ),
    ),
    Row(
        "source ability: list items, open passthrough and processed streams",
        ("tests/executor/test_capabilities.py::test_folder_source_lists_and_opens_passthrough_and_processed_streams",),
    ),
    Row(
        "lyrics ability: search and fetch over the host's HTTP client",
        ("tests/executor/test_capabilities.py::test_lrc_lyrics_searches_and_fetches_over_the_hosts_http",),
    ),
    Row(
        "output-sink ability: targets, open, write with partial acceptance, sidecar-backed sink",
        (
            "tests/executor/test_capabilities.py::test_wav_sink_control_calls_share_one_instance_and_null_target_accepts_partially",
            "tests/executor/test_capabilities.py::test_wav_sink_records_a_file_through_its_sidecar",
        ),
    ),
    Row(
        "DSP ability: processor layouts and frame counts",
        ("tests/executor/test_capabilities.py::test_dsp_processor_describes_its_layouts_and_keeps_frame_count",),
    ),
    Row(
        "config plan / apply / export / import (hot-apply, recreate with state, reject)",
        ("tests/executor/test_capabilities.py::test_config_update_hot_applies_recreates_with_state_or_rejects",),
    ),
    Row("plugin.json schema 1 validation, field by field", ("tests/package/test_manifest_rules.py",)),
    Row(
        "install from a directory or a zip, with receipts",
        (
            "tests/package/test_install.py::test_directory_install_copies_the_package_and_writes_a_receipt",
            "tests/package/test_install.py::test_zip_install_takes_the_nested_package_root_only",
        ),
    ),
    Row("list and uninstall, with pending-uninstall markers", ("tests/package/test_store.py",)),
    Row("desired state: set, replace, persisted", ("tests/runtime/test_state.py",)),
    Row("sync from disk with a structured report", ("tests/runtime/test_sync.py",)),
    Row("capability index by (plugin_id, kind, type_id), decoder ranking", ("tests/runtime/test_registry.py",)),
    Row("lifecycle hooks", ("tests/runtime/test_lifecycle.py", "tests/executor/test_lifecycle.py")),
    Row("directives (destroy, rebuild, update_config) and subscribers", ("tests/runtime/test_directives.py",)),
    Row(
        "shutdown: every plugin deactivated, sidecars ended",
        (
            "tests/runtime/test_after_shutdown.py",
            "tests/host/test_sidecar_supervision.py::test_shutdown_leaves_no_process_and_no_file",
        ),
    ),
    Row("the five WIT worlds, checked against the WIT package", ("tests/executor/test_worlds.py",)),
    Row("host-stream import", ("tests/host/test_streams.py",)),
    Row("http-client import (real HTTP server on loopback)", ("tests/host_e2e/test_http_source.py",)),
    Row(
        "sidecar processes: transports, supervision, package-shared leases, locks",
        ("tests/host/test_sidecar_transports.py", "tests/host/test_sidecar_supervision.py"),
    ),
    Row("hot-path core-module ABI v1", ("tests/sdk/test_hotpath_abi.py",)),
    Row(
        "limits: call deadlines, hot-path memory cap, watchdog",
        ("tests/executor/test_host_deadlines.py", "tests/engine/test_memory_cap.py", "tests/engine/test_watchdog.py"),
    ),
    Row("the native runtime's kernels as a baseline (same source, .so)", ("tests/compat/test_wasm_vs_native.py",)),
    Row(
        "beyond the original: offline Pipeline, player, service, library import",
        (
            "tests/engine/test_top_level_pipeline.py",
            "tests/player/test_player.py",
            "tests/service/test_service.py",
            "tests/library/test_import.py",
        ),
    ),
)

# --- 4. operational readiness: diagnostics and recovery procedures ----------------------------

OPERATIONS: tuple[Row, ...] = (
    Row("`stellatune doctor` checks and explains the machine", ("tests/service/test_doctor.py",)),
    Row(
        "`stellatune status --json` agrees with the service",
        ("tests/service/test_service.py::test_status_json_agrees_with_player_status",),
    ),
    Row(
        "events: one schema, in causal order, logged as JSON lines",
        ("tests/service/test_events.py", "tests/service/test_service.py::test_events_log_is_json_lines"),
    ),
    Row(
        "metrics: Prometheus exposition parses, per-stage histograms",
        ("tests/service/test_service.py::test_prometheus_endpoint_parses", "tests/service/test_metrics_stages.py"),
    ),
    Row("one error taxonomy across exceptions, events, RPC and CLI", ("tests/service/test_taxonomy.py",)),
    Row(
        "recovery: a trapping, looping or NaN-producing stage is bypassed and playback goes on",
        ("tests/engine/test_chain_faults.py", "tests/engine/test_nonfinite.py", "tests/engine/test_watchdog.py"),
    ),
    Row(
        "recovery: a killed sidecar is restarted; a crash loop opens the breaker",
        (
            "tests/host/test_sidecar_supervision.py::test_sidecar_killed_mid_stream_is_restarted",
            "tests/host/test_sidecar_supervision.py::test_crash_loop_trips_the_breaker",
        ),
    ),
    Row(
        "recovery: a failed reload keeps the running version",
        (
            "tests/runtime/test_sync.py::test_failed_reload_keeps_previous_version_active_with_error",
            "tests/runtime/test_sync.py::test_failed_prepare_leaves_the_running_version_untouched",
        ),
    ),
    Row(
        "recovery: a failed uninstall is marked and retried",
        ("tests/package/test_store.py::test_a_failed_delete_is_marked_hidden_and_retried_until_it_succeeds",),
    ),
    Row(
        "the service survives bad input and stops cleanly",
        (
            "tests/service/test_service.py::test_bad_input_never_kills_it_and_playback_goes_on",
            "tests/service/test_service.py::test_sigterm_leaves_no_socket_and_no_child",
        ),
    ),
)

# --- 5. migration readiness -----------------------------------------------------------------------

MIGRATION: tuple[Row, ...] = (
    Row(
        "the original's three published manifests validate and their worlds serve their kinds",
        (
            "tests/executor/test_worlds.py::test_the_original_manifests_validate_and_their_worlds_serve_their_kinds",
            "tests/package/test_permissions_and_compat.py",
        ),
    ),
    Row(
        "WIT stellatune:plugin@0.1.0 is valid and matches what the executor checks",
        (
            "tests/executor/test_worlds.py::test_the_wit_package_is_valid",
            "tests/executor/test_worlds.py::test_the_world_signatures_the_executor_checks_against_match_the_wit",
        ),
    ),
    Row(
        "receipts written by the original runtime are read",
        ("tests/package/test_store.py::test_receipts_written_by_the_original_runtime_are_read",),
    ),
    Row(
        "directives keep the original's JSON",
        ("tests/runtime/test_directives.py::test_directive_kinds_and_their_json_are_the_originals",),
    ),
    Row(
        "the migration path of the three published plugins (docs/migration.md): each validates, its grants are accepted",
        ("tests/cli/test_migration_doc.py",),
    ),
)

#: Test trees the report runs besides the rows' tests: the stress, compatibility and fuzz evidence.
EVIDENCE_TREES: tuple[str, ...] = ("tests/stress", "tests/compat", "tests/fuzz")


def all_row_tests() -> list[str]:
    """Every node id the rows name, once, in order."""
    seen: dict[str, None] = {}
    for row in (*PARITY, *OPERATIONS, *MIGRATION):
        for test in row.tests:
            seen.setdefault(test, None)
    return list(seen)


def _matches(ref: str, nodeid: str) -> bool:
    """A node id belongs to ``ref``: the same test, a case of it (``[param]``), or a test in the
    file ``ref`` names."""
    return nodeid == ref or nodeid.startswith(ref + "::") or nodeid.startswith(ref + "[")


def _row(row: Row, outcomes: Mapping[str, str]) -> RowResult:
    counts: dict[str, int] = {}
    for ref in row.tests:
        matched = [o for nodeid, o in outcomes.items() if _matches(ref, nodeid)]
        if not matched:
            counts["missing"] = counts.get("missing", 0) + 1
        for outcome in matched:
            counts[outcome] = counts.get(outcome, 0) + 1
    passed = set(counts) == {"passed"}
    return RowResult(row.claim, row.tests, counts, passed)


def _tree_outcomes(outcomes: Mapping[str, str], tree: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for nodeid, outcome in outcomes.items():
        if nodeid.startswith(tree + "/"):
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _get(path: str) -> Callable[[Mapping[str, Any]], Optional[float]]:
    """A figure at a dotted path of the inputs (``evidence.churn.rss_growth_kb``)."""

    def read(inputs: Mapping[str, Any]) -> Optional[float]:
        node: Any = inputs
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        if isinstance(node, bool):
            return float(node)
        return float(node) if isinstance(node, (int, float)) else None

    return read


def _target(key: str) -> Callable[[Mapping[str, Any]], Optional[float]]:
    def read(inputs: Mapping[str, Any]) -> Optional[float]:
        for t in inputs.get("bench", {}).get("targets", []):
            if t["key"] == key:
                return float(t["measured"])
        return None

    return read


def _realtime_worst(field_name: str) -> Callable[[Mapping[str, Any]], Optional[float]]:
    def read(inputs: Mapping[str, Any]) -> Optional[float]:
        runs = inputs.get("bench", {}).get("realtime") or []
        return max((float(r[field_name]) for r in runs), default=None)

    return read


def _tree_failures(tree: str) -> Callable[[Mapping[str, Any]], Optional[float]]:
    """Failed (or errored) test cases in ``tree``; None when none ran at all."""

    def read(inputs: Mapping[str, Any]) -> Optional[float]:
        counts = _tree_outcomes(inputs.get("outcomes", {}), tree)
        if not counts.get("passed"):
            return None
        return float(counts.get("failed", 0) + counts.get("skipped", 0))

    return read


def _zero(value: float) -> bool:
    return value == 0


# Device xruns on the JACK dummy device of a shared 2-core VM are mostly the VM's: jackd's own
# timer thread wakes late (measured 0-1 per 5 s with nothing of ours running; one in a 20 s soak
# whose longest callback took 11 % of its period). So xruns are judged twice: the callback time
# proves the engine never overran a period, and the device's count must stay within that noise
# floor (12 a minute); on real hardware with an RT kernel both would be expected at 0.
NOISE_XRUNS_PER_MIN = 12


def _realtime_xruns_per_minute(inputs: Mapping[str, Any]) -> Optional[float]:
    runs = [r for r in inputs.get("bench", {}).get("realtime") or [] if r.get("seconds")]
    return max((60.0 * r["xruns"] / r["seconds"] for r in runs), default=None)


# --- 2. stability: no crash or leak under stress ------------------------------------------------

STABILITY: tuple[Check, ...] = (
    Check(
        "every stress test passed (reload churn, reload while playing, sidecar crash loops, concurrent sessions, soak)",
        "0 failed or skipped",
        "tests/stress",
        _tree_failures("tests/stress"),
        _zero,
    ),
    Check(
        "every fuzz test passed (hypothesis and atheris: manifests, zips, init args, return values, RPC, Wasm)",
        "0 failed or skipped",
        "tests/fuzz",
        _tree_failures("tests/fuzz"),
        _zero,
    ),
    Check(
        "churn: RSS growth over the hot-path install/enable/build/close cycles",
        "≤ 20 MiB",
        "tests/stress/test_churn.py",
        _get("evidence.stress_churn_hot_path.rss_growth_kb"),
        lambda v: v <= 20 * 1024,
        " KiB",
    ),
    Check(
        "churn: descriptors left open after the cycles",
        "≤ 3",
        "tests/stress/test_churn.py",
        _get("evidence.stress_churn_hot_path.fd_growth"),
        lambda v: v <= 3,
    ),
    Check(
        "reload while playing: RSS growth",
        "≤ 40 MiB",
        "tests/stress/test_reload_while_playing.py",
        _get("evidence.stress_reload_while_playing.rss_growth_kb"),
        lambda v: v <= 40 * 1024,
        " KiB",
    ),
    Check(
        "reload while playing: descriptors, threads and child processes left behind",
        "0 beyond a slack of 3 fds / 1 thread",
        "tests/stress/test_reload_while_playing.py",
        _get("evidence.stress_reload_while_playing.leaked"),
        _zero,
    ),
    Check(
        "sidecar crash loops: orphan processes left",
        "0",
        "tests/stress/test_sidecar_crash_loop.py",
        _get("evidence.stress_sidecar_crash_loop.orphans"),
        _zero,
    ),
    Check(
        "concurrent sessions: offline results that differ from running alone",
        "0",
        "tests/stress/test_concurrent_sessions.py",
        _get("evidence.stress_concurrent_sessions.mismatches"),
        _zero,
    ),
    Check(
        "soak: stage faults while edited every second",
        "0",
        "tests/stress/test_soak.py",
        _get("evidence.stress_soak.faults"),
        _zero,
    ),
    Check(
        "soak: longest callback as a fraction of the period (≥ 1 is an xrun the engine caused)",
        "< 1",
        "tests/stress/test_soak.py",
        _get("evidence.stress_soak.callback_load.max"),
        lambda v: v < 1,
    ),
    Check(
        "soak: device xruns per minute (8 plugins, 64 frames, other core busy)",
        f"≤ {NOISE_XRUNS_PER_MIN}",
        "tests/stress/test_soak.py",
        _get("evidence.stress_soak.xruns_per_minute"),
        lambda v: v <= NOISE_XRUNS_PER_MIN,
        "/min",
    ),
    Check(
        "soak: callback p99.9 as a fraction of the period",
        "≤ 0.5",
        "tests/stress/test_soak.py",
        _get("evidence.stress_soak.callback_load.p999"),
        lambda v: v <= 0.5,
    ),
)

# --- 3. performance: CPU, memory and latency budgets ---------------------------------------------
# The replacement budget is what the sandbox may cost over the unsandboxed native runtime and
# still serve the audio thread; issue #12's stricter targets are reported beside it by the
# benchmark (bench/RESULTS.md), not gated here.

PERFORMANCE: tuple[Check, ...] = (
    Check(
        "CPU: wasm hot path vs the same kernels native, median over kernels and block sizes",
        "≤ 1.3×",
        "bench: wasm_vs_native",
        _target("wasm_vs_native"),
        lambda v: v <= 1.3,
        "×",
    ),
    Check(
        "CPU: fixed cost per plugin per block (128 frames, watchdog on)",
        "≤ 100 ns",
        "bench: fixed_overhead_ns",
        _target("fixed_overhead_ns"),
        lambda v: v <= 100,
        " ns",
    ),
    Check(
        "CPU: offline 4-effect chain vs pedalboard's throughput",
        "≥ 2×",
        "bench: chain_vs_pedalboard",
        _target("chain_vs_pedalboard"),
        lambda v: v >= 2,
        "×",
    ),
    Check(
        "latency: 8-plugin chain on the JACK dummy device, other core busy (64 and 128 frames): "
        "longest callback as a fraction of the period (worst run; ≥ 1 is an xrun the engine caused)",
        "< 1",
        "bench: realtime[].render_max_fraction",
        _realtime_worst("render_max_fraction"),
        lambda v: v < 1,
    ),
    Check(
        "latency: the same runs, device xruns per minute (worst run)",
        f"≤ {NOISE_XRUNS_PER_MIN}",
        "bench: realtime[].xruns",
        _realtime_xruns_per_minute,
        lambda v: v <= NOISE_XRUNS_PER_MIN,
        "/min",
    ),
    Check(
        "latency: the same runs, callback p99.9 as a fraction of the period (worst run)",
        "≤ 0.5",
        "bench: realtime[].chain_p999_fraction",
        _realtime_worst("chain_p999_fraction"),
        lambda v: v <= 0.5,
    ),
    Check(
        "latency: chain edit heard at the output, p99",
        "≤ 10 ms",
        "bench: edit_to_output_p99_ms",
        _target("edit_to_output_p99_ms"),
        lambda v: v <= 10,
        " ms",
    ),
    Check(
        "latency: seek heard at the output, p99",
        "≤ 50 ms",
        "bench: seek_to_audio_p99_ms",
        _target("seek_to_audio_p99_ms"),
        lambda v: v <= 50,
        " ms",
    ),
    Check(
        "latency: building a stage from a warm cache (off the audio thread), median",
        "≤ 5 ms",
        "bench: stage_build_ms",
        _target("stage_build_ms"),
        lambda v: v <= 5,
        " ms",
    ),
    Check(
        "memory: resident memory per live hot-path stage",
        "≤ 2 MiB",
        "report: memory.rss_per_stage_kb",
        _get("memory.rss_per_stage_kb"),
        lambda v: v <= 2048,
        " KiB",
    ),
    Check(
        "compatibility: example DSPs whose wasm output differs from native beyond the stated tolerance",
        "0",
        "tests/compat",
        _tree_failures("tests/compat"),
        _zero,
    ),
)

GATES: tuple[tuple[str, str, tuple[Row, ...], tuple[Check, ...]], ...] = (
    ("Feature parity", "Does it do everything the original runtime did?", PARITY, ()),
    ("Stability", "Does it survive stress without crashing or leaking?", (), STABILITY),
    ("Performance", "Does it fit the CPU, memory and latency budgets?", (), PERFORMANCE),
    ("Operational readiness", "Can an operator see, diagnose and recover it?", OPERATIONS, ()),
    ("Migration readiness", "Do the original's plugins and interfaces carry over?", MIGRATION, ()),
)


def evaluate(inputs: Mapping[str, Any]) -> list[GateResult]:
    """Every gate's verdict from ``inputs``: ``outcomes`` (node id -> passed/failed/skipped),
    ``evidence`` (name -> figures the tests recorded), ``bench`` (the benchmark document) and
    ``memory`` (the report's own measurement)."""
    outcomes = inputs.get("outcomes", {})
    results = []
    for number, (name, question, rows, checks) in enumerate(GATES, start=1):
        gate = GateResult(number, name, question)
        gate.rows = [_row(r, outcomes) for r in rows]
        for check in checks:
            measured = check.figure(inputs)
            passed = measured is not None and check.ok(measured)
            gate.checks.append(CheckResult(check.claim, check.threshold, check.source, measured, check.unit, passed))
        results.append(gate)
    return results


def summary(gates: Iterable[GateResult]) -> str:
    return ", ".join(f"{g.name}: {'pass' if g.passed else 'FAIL'}" for g in gates)
