"""Offline measurements: per-kernel block cost on every path, the engine's fixed cost per plugin,
the epoch watchdog's cost, and the 4-effect chain's throughput against pedalboard."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .baselines import WasmtimePyKernel, numpy_kernel, pedalboard_block, pedalboard_plugin
from .kernels import CONFIGS, EQ_ONE_PEAK, KERNELS, SAMPLE_RATE, Workspace, noise
from .timing import (
    ChainCase,
    interleaved_medians,
    interleaved_rounds,
    paired_difference,
    paired_ratio,
    per_call_case,
    split_blocks,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """How hard to measure: rounds of the interleaved cases and how much audio each round runs."""

    hot_rounds: int
    hot_frames: int
    """Frames per round of a hot-path case (the engine's C loop splits them into blocks)."""
    slow_rounds: int
    slow_blocks: int
    """Blocks per round of the Python-driven cases (numpy, pedalboard, wasmtime-py)."""
    component_blocks: int
    """Blocks per round on the component path (about a millisecond each)."""
    chain_seconds: float
    chain_rounds: int


FULL = Budget(
    hot_rounds=61,
    hot_frames=32768,
    slow_rounds=15,
    slow_blocks=32,
    component_blocks=8,
    chain_seconds=5.0,
    chain_rounds=21,
)
QUICK = Budget(
    hot_rounds=5, hot_frames=8192, slow_rounds=3, slow_blocks=8, component_blocks=2, chain_seconds=1.0, chain_rounds=3
)


#: How each hot-path variant is built: (native, epoch_interruption).
_VARIANTS = {"wasm": (False, True), "native": (True, True), "wasm_no_watchdog": (False, False)}


def _hot_cases(
    ws: Workspace, name: str, count: int, frames: int, source: np.ndarray, faults: list[dict]
) -> dict[str, ChainCase]:
    """A chain of ``count`` ``name`` stages per variant (wasm, native, wasm without watchdog)."""

    def factory(native: bool, epoch: bool) -> Callable[[], list]:
        return lambda: [ws.stage(name, native=native, epoch_interruption=epoch) for _ in range(count)]

    return {
        variant: ChainCase(factory(native, epoch), frames, source, f"{name} {variant} @ {frames}", faults)
        for variant, (native, epoch) in _VARIANTS.items()
    }


def _close(cases: dict) -> None:
    for case in cases.values():
        if isinstance(case, ChainCase):
            case.close()


def measure_kernels(
    ws: Workspace, block_sizes: Sequence[int], budget: Budget, faults: list[dict], progress: Progress = lambda _: None
) -> list[dict]:
    """One row per kernel and block size: ns per block on every path."""
    source = noise(max(budget.hot_frames, max(block_sizes) * budget.slow_blocks))
    rows = []
    for name in KERNELS:
        config = CONFIGS[name]
        py_call = WasmtimePyKernel(ws.wasm_path(name), config)
        component = ws.component_processor(name)
        for frames in block_sizes:
            progress(f"{name} @ {frames} frames")
            cases = _hot_cases(ws, name, 1, frames, source[: budget.hot_frames], faults)
            rounds = interleaved_rounds(cases, budget.hot_rounds)
            _close(cases)
            hot = {variant: statistics.median(values) for variant, values in rounds.items()}
            blocks = split_blocks(source, frames, budget.slow_blocks)
            slow = interleaved_medians(
                {
                    "wasmtime_py": per_call_case(py_call.process, blocks),
                    "numpy": per_call_case(numpy_kernel(name, config), blocks),
                    "pedalboard": per_call_case(
                        pedalboard_block(pedalboard_plugin(name, config)),
                        split_blocks(source, frames, budget.slow_blocks, planar=True),
                    ),
                    "component": per_call_case(component.process, blocks[: budget.component_blocks]),
                },
                budget.slow_rounds,
            )
            rows.append(
                {
                    "name": name,
                    "frames": frames,
                    "wasm_ns_per_block": hot["wasm"],
                    "native_ns_per_block": hot["native"],
                    "component_ns_per_block": slow["component"],
                    "wasm_vs_native": paired_ratio(rounds["wasm"], rounds["native"]),
                    "wasm_no_watchdog_ns_per_block": hot["wasm_no_watchdog"],
                    "wasm_no_watchdog_vs_native": paired_ratio(rounds["wasm_no_watchdog"], rounds["native"]),
                    "wasmtime_py_ns_per_block": slow["wasmtime_py"],
                    "numpy_ns_per_block": slow["numpy"],
                    "pedalboard_ns_per_block": slow["pedalboard"],
                    "component_vs_wasm": slow["component"] / hot["wasm"],
                }
            )
        component.close()
    return rows


def measure_overhead(
    ws: Workspace,
    block_sizes: Sequence[int],
    budget: Budget,
    faults: list[dict],
    plugins: int = 8,
    progress: Progress = lambda _: None,
) -> list[dict]:
    """The engine's fixed cost per plugin per block: a chain of ``plugins`` empty kernels minus an
    empty chain, divided by ``plugins``. Wasm with and without the watchdog, and native."""
    source = noise(budget.hot_frames)
    rows = []
    for frames in block_sizes:
        progress(f"fixed overhead @ {frames} frames")
        cases: dict = _hot_cases(ws, "empty", plugins, frames, source, faults)
        cases["none"] = ChainCase(list, frames, source, f"empty chain @ {frames}", faults)
        # One plugin alone, for comparison: a longer chain spreads over more memories and caches.
        cases["wasm_alone"] = ChainCase(
            lambda: [ws.stage("empty")], frames, source, f"empty wasm x1 @ {frames}", faults
        )
        rounds = interleaved_rounds(cases, budget.hot_rounds)
        _close(cases)
        rows.append(
            {
                "frames": frames,
                "plugins": plugins,
                **{
                    f"{variant}_ns_per_plugin_per_block": paired_difference(rounds[variant], rounds["none"]) / plugins
                    for variant in _VARIANTS
                },
                "wasm_alone_ns_per_block": paired_difference(rounds["wasm_alone"], rounds["none"]),
                "empty_chain_ns_per_block": statistics.median(rounds["none"]),
            }
        )
    return rows


#: Calls per timed loop of :func:`measure_call_costs` (a few ms each).
_CALL_ITERATIONS = 100_000


def measure_call_costs(ws: Workspace, budget: Budget, frames: int = 128, progress: Progress = lambda _: None) -> dict:
    """Where the fixed cost per plugin goes: the parts of one process call of the empty kernel,
    each looped alone in C (``HotPathStage.time_calls``), wasm (watchdog on) and native, median
    over rounds. Hot loops: a part's cost inside a chain, between copies that evict its cache
    lines or overlap with it, can differ; the parts show what the wasm call adds over native."""
    progress(f"call costs @ {frames} frames")
    stages = {"wasm": ws.stage("empty"), "native": ws.stage("empty", native=True)}
    try:
        rounds: dict[str, dict[str, list[float]]] = {variant: {} for variant in stages}
        for _ in range(max(3, budget.hot_rounds // 4)):
            for variant, stage in stages.items():
                for part, ns in stage.time_calls(frames, _CALL_ITERATIONS).items():
                    rounds[variant].setdefault(part, []).append(ns)
    finally:
        for stage in stages.values():
            stage.close()
    return {
        "frames": frames,
        **{variant: {part: statistics.median(v) for part, v in parts.items()} for variant, parts in rounds.items()},
    }


#: The block size the non-finite check's cost is judged at (the real-time callback size).
CHECK_FRAMES = 128


def measure_nonfinite_check(
    kernels: Sequence[dict], budget: Budget, frames: int = CHECK_FRAMES, progress: Progress = lambda _: None
) -> dict:
    """What the engine's non-finite/subnormal check costs per block, against each example
    kernel's whole wasm block at ``frames`` (from ``kernels``), judged on the worst kernel.

    The check is fused into the copies the block loop makes anyway (the chain's input into the
    stage, each output into the next stage or back to the buffer), so it is timed as what it
    adds to them: ``_core.time_check`` runs a one-stage chain's copies with the check and with
    plain ``memcpy`` over a block of finite noise (the common case) in a nogil C loop, and
    reports the difference; median of ``hot_rounds`` rounds. One stage is the worst case: its
    output's fallback is the buffer it is copied back into, so it is tested before that copy
    (a read-only pass) instead of during it."""
    from stellatune.engine import _core

    progress(f"non-finite check @ {frames} frames")
    block = noise(frames)
    iterations = max(1000, budget.hot_frames)
    check_ns = statistics.median(_core.time_check(block, iterations) for _ in range(budget.hot_rounds))
    # The kernel's block already includes the check (the engine runs it), so compare against
    # the block without it.
    rows = [
        {
            "name": r["name"],
            "wasm_ns_per_block": r["wasm_ns_per_block"],
            "overhead_fraction": check_ns / max(r["wasm_ns_per_block"] - check_ns, 1.0),
        }
        for r in kernels
        if r["frames"] == frames
    ]
    fractions = [r["overhead_fraction"] for r in rows]
    return {
        "frames": frames,
        "check_ns_per_block": check_ns,
        "kernels": rows,
        "median_overhead_fraction": statistics.median(fractions),
        "max_overhead_fraction": max(fractions),
    }


CHAIN = ("gain", "eq", "compressor", "delay")


def measure_chain(
    ws: Workspace, budget: Budget, faults: list[dict], frames: int = 256, progress: Progress = lambda _: None
) -> dict:
    """gain → peak EQ → compressor → delay over the same audio: our engine (wasm and native) in
    blocks of ``frames`` against pedalboard rendering the whole buffer, and per call of ``frames``."""
    import pedalboard as pb

    progress(f"4-effect chain vs pedalboard @ {frames} frames")
    configs = {name: (EQ_ONE_PEAK if name == "eq" else CONFIGS[name]) for name in CHAIN}
    source = noise(int(budget.chain_seconds * SAMPLE_RATE) // frames * frames, seed=99)
    n = len(source)

    def chain(native: bool) -> Callable[[], list]:
        return lambda: [ws.stage(name, native=native, config=configs[name]) for name in CHAIN]

    wasm = ChainCase(chain(False), frames, source, f"4-effect chain wasm @ {frames}", faults)
    native = ChainCase(chain(True), frames, source, f"4-effect chain native @ {frames}", faults)
    board = pb.Pedalboard([pedalboard_plugin(name, configs[name]) for name in CHAIN])
    planar = np.ascontiguousarray(source.T)
    calls = split_blocks(source, frames, n // frames, planar=True)

    def offline_render() -> float:
        board.reset()
        return _ns(lambda: board.process(planar, SAMPLE_RATE)) / n

    rounds = interleaved_rounds(
        {
            "wasm": lambda: wasm() / frames,
            "native": lambda: native() / frames,
            "pedalboard": offline_render,
            "pedalboard_per_call": per_call_case(pedalboard_block(board), calls),
        },
        budget.chain_rounds,
    )
    t = {case: statistics.median(values) for case, values in rounds.items()}
    wasm.close()
    native.close()
    return {
        "stages": list(CHAIN),
        "frames": frames,
        "seconds_of_audio": n / SAMPLE_RATE,
        "wasm_ns_per_frame": t["wasm"],
        "native_ns_per_frame": t["native"],
        "pedalboard_ns_per_frame": t["pedalboard"],
        "pedalboard_us_per_call": t["pedalboard_per_call"] / 1000.0,
        "wasm_us_per_call": t["wasm"] * frames / 1000.0,
        "speedup_vs_pedalboard": paired_ratio(rounds["pedalboard"], rounds["wasm"]),
    }


def _ns(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return float(time.perf_counter_ns() - t0)
