"""One benchmark run: every measurement, the targets judged, as one JSON-ready document.

The document's keys are a contract (bench/README.md, bench/schema.json): ``stellatune bench
--json`` prints it and ``bench/report.py`` renders it to bench/RESULTS.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Optional

from .kernels import CHANNELS, SAMPLE_RATE, Workspace
from .offline import (
    FULL,
    QUICK,
    measure_call_costs,
    measure_chain,
    measure_kernels,
    measure_nonfinite_check,
    measure_overhead,
)
from .player import measure_player
from .realtime import CHAIN16, RealtimeUnavailable, measure_realtime
from .stagebuild import measure_stage_build

SCHEMA_VERSION = 1
BLOCK_SIZES = (64, 128, 256, 1024)
REALTIME_FRAMES = (64, 128)
#: The block size the fixed-overhead target is judged at (the real-time callback size).
OVERHEAD_TARGET_FRAMES = 128
#: The worst-kernel wasm/native target leaves out smaller blocks, where the per-call cost dominates.
WORST_MIN_FRAMES = 128
#: The 16-plugin real-time run: its block size, and how long it plays (full, --quick, --soak).
REALTIME16_FRAMES = 32
REALTIME16_SECONDS, REALTIME16_QUICK_SECONDS, SOAK_SECONDS = 30.0, 3.0, 600.0
#: Timed stage builds (after the warm-up), full and --quick.
STAGE_BUILDS, STAGE_BUILDS_QUICK = 60, 20


def run(
    *,
    quick: bool = False,
    realtime: bool = True,
    soak_seconds: Optional[float] = None,
    cache_dir: Optional[Path] = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """Measure everything and return the results document.

    ``soak_seconds`` (``stellatune bench --soak``: :data:`SOAK_SECONDS`) plays the 16-plugin
    32-frame chain that long instead of the default run's 30 s (3 s with ``quick``).
    """
    budget = QUICK if quick else FULL
    started = datetime.datetime.now(datetime.UTC)
    with Workspace(cache_dir) as ws:
        progress("building kernels")
        for name in ("gain", "eq", "compressor", "delay", "empty"):
            ws.package(name)
        faults: list[dict] = []  # rounds lost to a stage fault (and taken again)
        kernels = measure_kernels(ws, BLOCK_SIZES, budget, faults, progress)
        overhead = measure_overhead(ws, BLOCK_SIZES, budget, faults, progress=progress)
        call_costs = measure_call_costs(ws, budget, OVERHEAD_TARGET_FRAMES, progress)
        nonfinite = measure_nonfinite_check(kernels, budget, progress=progress)
        chain = measure_chain(ws, budget, faults, progress=progress)
        stage_build = measure_stage_build(ws, STAGE_BUILDS_QUICK if quick else STAGE_BUILDS, progress)
        player = measure_player(ws, quick=quick, progress=progress)
        rt: list[dict] = []
        rt16: Optional[dict] = None
        rt_skipped = None
        if realtime:
            try:
                for frames in REALTIME_FRAMES:
                    progress(f"real time on the JACK dummy device @ {frames} frames")
                    rt.append(measure_realtime(ws, frames, 1.5 if quick else 10.0))
                soak = soak_seconds is not None
                seconds = REALTIME16_QUICK_SECONDS if quick else REALTIME16_SECONDS
                if soak_seconds is not None:
                    seconds = soak_seconds
                progress(
                    f"real time, {len(CHAIN16)} plugins @ {REALTIME16_FRAMES} frames for {seconds:g} s"
                    + (" (soak)" if soak else "")
                )
                rt16 = measure_realtime(ws, REALTIME16_FRAMES, seconds, CHAIN16)
                rt16["soak"] = soak
            except RealtimeUnavailable as e:
                rt, rt16, rt_skipped = [], None, str(e)
        else:
            rt_skipped = "not requested"
    doc = {
        "schema_version": SCHEMA_VERSION,
        "quick": quick,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": (datetime.datetime.now(datetime.UTC) - started).total_seconds(),
        "machine": machine(),
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "block_sizes": list(BLOCK_SIZES),
        "kernels": kernels,
        "overhead": overhead,
        "call_costs": call_costs,
        "nonfinite_check": nonfinite,
        "chain": chain,
        "stage_build": stage_build,
        "player": player,
        "realtime": rt,
        "realtime_16x32": rt16,
        "realtime_skipped": rt_skipped,
        "faults": faults,
    }
    doc["targets"] = targets(doc)
    return doc


def machine() -> dict:
    """What the figures were measured on."""

    def version(dist: str) -> Optional[str]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    # The first processor's fields: the figures differ by vendor and model (issue #12).
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(info.get("flags", "").split())

    def number(key: str) -> Optional[int]:
        return int(info[key]) if info.get(key, "").isdigit() else None

    return {
        "cpu": info.get("model name") or platform.processor(),
        "cpu_vendor": info.get("vendor_id"),
        "cpu_family": number("cpu family"),
        "cpu_model_number": number("model"),
        "avx2": "avx2" in flags if flags else None,
        "avx512f": "avx512f" in flags if flags else None,
        "kernel": platform.release(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "wasmtime": version("wasmtime"),
        "numpy": version("numpy"),
        "scipy": version("scipy"),
        "pedalboard": version("pedalboard"),
    }


def targets(doc: dict) -> list[dict]:
    """The issue's targets (ratios, not tests), each with the measured figure and whether met."""
    kernels, overhead, chain, rt = doc["kernels"], doc["overhead"], doc["chain"], doc["realtime"]
    at = {r["frames"]: r for r in overhead}
    worst = max((r for r in kernels if r["frames"] >= WORST_MIN_FRAMES), key=lambda r: r["wasm_vs_native"])
    out = [
        _target(
            "wasm_vs_native",
            "wasm ≤ 1.15× native per block (median over kernels and block sizes, watchdog on)",
            statistics.median(r["wasm_vs_native"] for r in kernels),
            "×",
            lambda v: v <= 1.15,
        ),
        _target(
            "wasm_vs_native_worst",
            f"wasm ≤ 1.3× native per block for the worst kernel at ≥ {WORST_MIN_FRAMES} frames"
            f" (max over kernels and block sizes ≥ {WORST_MIN_FRAMES}, watchdog on)",
            worst["wasm_vs_native"],
            "×",
            lambda v: v <= 1.3,
            detail=f"{worst['name']} @ {worst['frames']} frames",
        ),
        _target(
            "fixed_overhead_ns",
            f"fixed cost ≤ 50 ns per plugin per block (empty kernel, wasm, watchdog on, {OVERHEAD_TARGET_FRAMES}"
            " frames)",
            at[OVERHEAD_TARGET_FRAMES]["wasm_ns_per_plugin_per_block"],
            "ns",
            lambda v: v <= 50,
        ),
    ]
    build = doc.get("stage_build")
    if build:
        # Judged on the slowest plugin built: every stage of an edited chain has to be ready.
        slowest = max(build["kernels"], key=lambda r: r["median_ms"])
        out.append(
            _target(
                "stage_build_ms",
                "building a hot-path stage from a warm cache ≤ 1 ms, off the audio thread (build_dsp_stage,"
                f" median of {build['builds']} builds; the slowest of {', '.join(r['name'] for r in build['kernels'])})",
                slowest["median_ms"],
                "ms",
                lambda v: v <= 1,
                detail=f"{slowest['name']}; min {slowest['min_ms']:.2f} ms, p90 {slowest['p90_ms']:.2f} ms",
            )
        )
    out += [
        _target(
            "component_vs_hot_path",
            "hot path ≥ 50× faster than the component path (median over kernels and block sizes)",
            statistics.median(r["component_vs_wasm"] for r in kernels),
            "×",
            lambda v: v >= 50,
        ),
        _target(
            "chain_vs_pedalboard",
            "offline 4-effect chain ≥ 3× pedalboard's throughput",
            chain["speedup_vs_pedalboard"],
            "×",
            lambda v: v >= 3,
        ),
    ]
    check = doc.get("nonfinite_check")
    if check:
        out.append(
            _target(
                "nonfinite_check_overhead",
                f"non-finite/subnormal check ≤ 5 % of a wasm block on every example kernel (the worst,"
                f" {check['frames']} frames)",
                100.0 * check["max_overhead_fraction"],
                "%",
                lambda v: v <= 5,
            )
        )
    player = doc.get("player")
    if player:
        out += [
            _target(
                "edit_to_output_p99_ms",
                f"chain edit → first changed frame at the output ≤ 10 ms, p99 ({player['frames']} frames)",
                player["edit"]["p99_ms"],
                "ms",
                lambda v: v <= 10,
            ),
            _target(
                "seek_to_audio_p99_ms",
                "seek → first audio at the new position ≤ 50 ms, p99",
                player["seek"]["p99_ms"],
                "ms",
                lambda v: v <= 50,
            ),
            _target(
                "gapless_join_error_samples",
                "gapless joins: 0 samples inserted, dropped or altered (Player vs the chain over the concatenation)",
                player["gapless"]["join_error_samples"],
                "",
                lambda v: v == 0,
            ),
        ]
    if rt:
        out.append(
            _target(
                "ring_underruns",
                "0 ring underruns in the real-time runs",
                sum(r["ring_underruns"] for r in rt),
                "",
                lambda v: v == 0,
            )
        )
    rt16 = doc.get("realtime_16x32")
    if rt16:
        # Measured is the p99.9; met needs 0 xruns as well, and no stage bypassed (a bypassed
        # stage would make the chain look cheaper than the 16 plugins it is meant to be).
        clean = rt16["xruns"] == 0 and rt16["faults"] == 0
        out.append(
            _target(
                "realtime_16x32",
                f"{rt16['plugins']}-plugin wasm chain at {rt16['frames']} frames on the JACK dummy device, other"
                " core busy: 0 xruns and callback p99.9 < 25 % of the period (no stage bypassed)",
                100.0 * rt16["chain_p999_fraction"],
                "%",
                lambda v: clean and v < 25,
                detail=f"{rt16['xruns']} xruns, {rt16['ring_underruns']} ring underruns, {rt16['faults']} faults"
                f" over {rt16['seconds']:g} s{' (soak)' if rt16.get('soak') else ''}",
            )
        )
    return out


def _target(
    key: str, text: str, measured: float, unit: str, met: Callable[[float], bool], detail: Optional[str] = None
) -> dict:
    """One target record; ``detail`` says what the single measured figure leaves out (which
    kernel it is, the other condition of a two-part target)."""
    out = {"key": key, "target": text, "measured": measured, "unit": unit, "met": bool(met(measured))}
    if detail is not None:
        out["detail"] = detail
    return out
