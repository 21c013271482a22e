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
from .offline import FULL, QUICK, measure_chain, measure_kernels, measure_nonfinite_check, measure_overhead
from .player import measure_player
from .realtime import RealtimeUnavailable, measure_realtime

SCHEMA_VERSION = 1
BLOCK_SIZES = (64, 128, 256, 1024)
REALTIME_FRAMES = (64, 128)
#: The block size the fixed-overhead target is judged at (the real-time callback size).
OVERHEAD_TARGET_FRAMES = 128


def run(
    *,
    quick: bool = False,
    realtime: bool = True,
    cache_dir: Optional[Path] = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """Measure everything and return the results document."""
    budget = QUICK if quick else FULL
    started = datetime.datetime.now(datetime.UTC)
    with Workspace(cache_dir) as ws:
        progress("building kernels")
        for name in ("gain", "eq", "compressor", "delay", "empty"):
            ws.package(name)
        faults: list[dict] = []  # rounds lost to a stage fault (and taken again)
        kernels = measure_kernels(ws, BLOCK_SIZES, budget, faults, progress)
        overhead = measure_overhead(ws, BLOCK_SIZES, budget, faults, progress=progress)
        nonfinite = measure_nonfinite_check(kernels, budget, progress=progress)
        chain = measure_chain(ws, budget, faults, progress=progress)
        player = measure_player(ws, quick=quick, progress=progress)
        rt: list[dict] = []
        rt_skipped = None
        if realtime:
            try:
                for frames in REALTIME_FRAMES:
                    progress(f"real time on the JACK dummy device @ {frames} frames")
                    rt.append(measure_realtime(ws, frames, 1.5 if quick else 10.0))
            except RealtimeUnavailable as e:
                rt, rt_skipped = [], str(e)
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
        "nonfinite_check": nonfinite,
        "chain": chain,
        "player": player,
        "realtime": rt,
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

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
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
    out = [
        _target(
            "wasm_vs_native",
            "wasm ≤ 1.3× native per block (median over kernels and block sizes)",
            statistics.median(r["wasm_vs_native"] for r in kernels),
            "×",
            lambda v: v <= 1.3,
        ),
        _target(
            "fixed_overhead_ns",
            f"fixed overhead ≤ 100 ns per plugin per block (empty kernel, wasm, {OVERHEAD_TARGET_FRAMES} frames)",
            at[OVERHEAD_TARGET_FRAMES]["wasm_ns_per_plugin_per_block"],
            "ns",
            lambda v: v <= 100,
        ),
        _target(
            "component_vs_hot_path",
            "hot path ≥ 50× faster than the component path (median over kernels and block sizes)",
            statistics.median(r["component_vs_wasm"] for r in kernels),
            "×",
            lambda v: v >= 50,
        ),
        _target(
            "chain_vs_pedalboard",
            "offline 4-effect chain ≥ 2× pedalboard's throughput",
            chain["speedup_vs_pedalboard"],
            "×",
            lambda v: v >= 2,
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
    return out


def _target(key: str, text: str, measured: float, unit: str, met: Callable[[float], bool]) -> dict:
    return {"key": key, "target": text, "measured": measured, "unit": unit, "met": bool(met(measured))}
