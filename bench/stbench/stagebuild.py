"""Building a hot-path stage from a warm cache, off the audio thread: what a chain edit pays
before the new chain can be swapped in (``stellatune.compose.build_dsp_stage``), and its parts.

The parts are timed separately, each the way ``build_dsp_stage`` does it, in the same
interleaved rounds as the whole build so a burst of load hits all of them alike: the component
processor's ``create`` (the ``executor.dsp(...)`` lookup included), ``describe_hot_path`` on a
fresh processor, and the hot-path module's load (``HotPathStage.from_wasm`` through
``Workspace.stage``). What the median build has beyond the three medians is the glue: config
parsing, the plugin-directory checks, ``configure``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence

from stellatune.compose import build_dsp_stage, parse_config
from stellatune.executor import AudioSpec

from .kernels import CHANNELS, CONFIGS, SAMPLE_RATE, Workspace
from .timing import BenchmarkError, Case, interleaved_rounds

#: The example plugins built: the cheapest kernel, and the one with the most parameters.
STAGE_BUILD_KERNELS = ("gain", "eq")
#: Untimed rounds first: the compile caches, the executor's instance set-up and the engine's
#: per-module caches are warm after these, as they are for any edit after the first.
WARMUP_ROUNDS = 10
#: The parts of a build, in document order (keys of each row's ``breakdown``).
PARTS = ("create_ms", "describe_hot_path_ms", "load_ms")


def _elapsed_ms(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1e6


def _cases(ws: Workspace, name: str) -> dict[str, Case]:
    """One case per figure; each builds one thing, times it, closes it outside the clock."""
    runtime, executor = ws.runtime(), ws.executor()
    plugin_id = f"dev.stellatune.example.{name}"
    spec = AudioSpec(SAMPLE_RATE, CHANNELS)
    config = CONFIGS[name]
    # What build_dsp_stage hands the processor: the benchmark settings over the ability's defaults.
    defaults = parse_config(executor.dsp(plugin_id, name).default_config_json, f"{name} default config")
    config_json = json.dumps({**defaults, **config})

    def build() -> float:
        t0 = time.perf_counter_ns()
        stage = build_dsp_stage(runtime, executor, plugin_id, name, config, SAMPLE_RATE, CHANNELS)
        ms = _elapsed_ms(t0)
        route, reason = stage.route, stage.fallback_reason
        stage.close()
        if route != "hot-path":  # a component-path stage would time the wrong thing
            raise BenchmarkError(f"{name}: build_dsp_stage fell back to the component path: {reason}")
        return ms

    def create() -> float:
        t0 = time.perf_counter_ns()
        processor = executor.dsp(plugin_id, name).create(spec, config_json)
        ms = _elapsed_ms(t0)
        processor.close()
        return ms

    def describe() -> float:
        # A fresh processor each time, as build_dsp_stage asks a fresh one.
        processor = executor.dsp(plugin_id, name).create(spec, config_json)
        try:
            t0 = time.perf_counter_ns()
            described = processor.describe_hot_path(spec)
            ms = _elapsed_ms(t0)
        finally:
            processor.close()
        if described is None:
            raise BenchmarkError(f"{name}: the component offers no hot path")
        return ms

    def load() -> float:
        t0 = time.perf_counter_ns()
        stage = ws.stage(name)
        ms = _elapsed_ms(t0)
        stage.close()
        return ms

    return {"build": build, "create_ms": create, "describe_hot_path_ms": describe, "load_ms": load}


def _p90(values: Sequence[float]) -> float:
    # Inclusive: with 20 builds the exclusive method would extrapolate past the slowest one.
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def measure_stage_build(ws: Workspace, builds: int, progress: Callable[[str], None] = lambda _: None) -> dict:
    """``builds`` timed builds (after :data:`WARMUP_ROUNDS`) of each of :data:`STAGE_BUILD_KERNELS`."""
    rows = []
    for name in STAGE_BUILD_KERNELS:
        progress(f"stage build: {name} ({builds} builds)")
        cases = _cases(ws, name)
        interleaved_rounds(cases, WARMUP_ROUNDS)
        rounds = interleaved_rounds(cases, builds)
        total = rounds.pop("build")
        rows.append(
            {
                "name": name,
                "median_ms": statistics.median(total),
                "min_ms": min(total),
                "p90_ms": _p90(total),
                "breakdown": {part: statistics.median(rounds[part]) for part in PARTS},
            }
        )
    return {
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "warmup": WARMUP_ROUNDS,
        "builds": builds,
        "kernels": rows,
    }
