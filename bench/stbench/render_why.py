"""For each unmet target, why: the run's own figures that bound it (issue 12, "if a target cannot
be reached, show why"). Every sentence is computed from the results document, so it holds for
the run it is printed with, on whatever CPU that was."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Optional


def why_lines(doc: dict) -> list[str]:
    """A section with one paragraph per unmet target that this run's figures explain."""
    unmet = {t["key"] for t in doc["targets"] if not t["met"]}
    paragraphs = [explain(doc) for key, explain in _EXPLAINERS.items() if key in unmet]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        return []
    lines = ["## Why the unmet targets are unmet (this run's figures)", ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    return lines  # ends with a blank line


def _call_gap(doc: dict) -> Optional[tuple[float, dict, dict]]:
    """What one wasm call costs over a native one in a hot loop, and the two parts dicts."""
    costs = doc.get("call_costs")
    if not costs:
        return None
    return costs["wasm"]["call"] - costs["native"]["call"], costs["wasm"], costs["native"]


def _fixed(doc: dict) -> Optional[str]:
    row = next((r for r in doc["overhead"] if r["frames"] == 128), None)
    gap = _call_gap(doc)
    if row is None or gap is None:
        return None
    added, w, n = gap
    native, wasm = row["native_ns_per_plugin_per_block"], row["wasm_ns_per_plugin_per_block"]
    room = (
        f"so wasm could add at most {50 - native:.0f} ns"
        if native < 50
        else "already over 50 ns before any sandbox cost"
    )
    return (
        f"**Fixed cost ≤ 50 ns.** Native code pays {native:.0f} ns per plugin per block at 128 frames"
        f" (one copy per stage boundary with the non-finite check, {n['timer']:.0f} ns of stage timer,"
        f" the loop's bookkeeping, {n['call']:.0f} ns of call), {room}. A wasm call costs {added:.0f} ns more than a native one when"
        f" looped alone: wasmtime's call entry {w['entry']:.0f} ns (the host-to-wasm transition:"
        f" its trap-handler and stack-limit set-up and the trampoline), the memory-grow check"
        f" {w['grow_check']:.0f} ns, the watchdog's deadline set {w['deadline']:.0f} ns; in the chain it"
        f" added {wasm - native:.0f} ns. The entry is wasmtime's, under its C API; the"
        " grow check and the watchdog stay on. Closest reached: the measured figure above."
    )


def _ratio_gap(doc: dict, rows: list[dict]) -> str:
    """How much of the wasm-native difference of ``rows`` the per-call cost explains."""
    row = next((r for r in doc["overhead"] if r["frames"] == 128), None)
    if row is None:
        return ""
    per_call = row["wasm_ns_per_plugin_per_block"] - row["native_ns_per_plugin_per_block"]
    out = []
    for r in rows:
        diff = r["wasm_ns_per_block"] - r["native_ns_per_block"]
        out.append(
            f"{r['name']} @ {r['frames']}: native {r['native_ns_per_block']:.0f} ns, wasm"
            f" {r['wasm_ns_per_block']:.0f} ns, {diff:.0f} ns apart; the empty kernel's wasm-native"
            f" difference (what every call pays) is {per_call:.0f} ns, and the other"
            f" {max(0.0, diff - per_call):.0f} ns are the kernel's own code as Cranelift compiles it"
            " from wasm SIMD (128-bit vectors, and a watchdog epoch check at every loop header, around"
            " which live vectors are spilled) against clang's native code."
        )
    return " ".join(out)


def _worst(doc: dict) -> Optional[str]:
    rows = [r for r in doc["kernels"] if r["frames"] >= 128]
    if not rows:
        return None
    worst = max(rows, key=lambda r: r["wasm_vs_native"])
    return (
        f"**Worst kernel ≤ 1.3×.** The worst is {worst['name']} at {worst['frames']} frames,"
        f" {worst['wasm_vs_native']:.2f}×. " + _ratio_gap(doc, [worst])
    )


def _median(doc: dict) -> Optional[str]:
    by_kernel: dict[str, list[float]] = {}
    for r in doc["kernels"]:
        by_kernel.setdefault(r["name"], []).append(r["wasm_vs_native"])
    spread = ", ".join(f"{name} {statistics.median(v):.2f}×" for name, v in by_kernel.items())
    cheap = [r for r in doc["kernels"] if r["frames"] == 128]
    cheapest = min(cheap, key=lambda r: r["native_ns_per_block"]) if cheap else None
    return f"**Median ≤ 1.15×.** Median ratio per kernel: {spread}. The cheapest kernel at 128 frames: " + (
        _ratio_gap(doc, [cheapest]) if cheapest else ""
    )


def _chain(doc: dict) -> Optional[str]:
    c = doc["chain"]
    native_ratio = c["pedalboard_ns_per_frame"] / c["native_ns_per_frame"]
    return (
        f"**4-effect chain ≥ 3× pedalboard.** The same kernels as native code run the chain at"
        f" {c['native_ns_per_frame']:.1f} ns per frame, {native_ratio:.2f}× pedalboard's"
        f" {c['pedalboard_ns_per_frame']:.1f}; wasm runs it at {c['wasm_ns_per_frame']:.1f}. The sandbox's"
        f" share is the wasm-native difference above; reaching 3× would take the kernels themselves"
        f" (already SIMD, IEEE-exact against native) to get faster on both paths."
    )


def _stage_build(doc: dict) -> Optional[str]:
    build = doc.get("stage_build")
    if not build or not build.get("kernels"):
        return None
    slowest = max(build["kernels"], key=lambda r: r["median_ms"])
    parts = ", ".join(f"{k.removesuffix('_ms').replace('_', ' ')} {v:.2f} ms" for k, v in slowest["breakdown"].items())
    return (
        f"**Stage build ≤ 1 ms.** {slowest['name']}: {slowest['median_ms']:.2f} ms median; its parts"
        f" (timed alone): {parts}. Each part is a wasmtime instantiation and component calls driven"
        " from Python."
    )


def _realtime(doc: dict) -> Optional[str]:
    rt = doc.get("realtime_16x32")
    if not rt or "late_renders" not in rt:
        return None
    steal = "" if rt["steal_seconds"] is None else f" The hypervisor took {rt['steal_seconds']:.2f} s of CPU meanwhile."
    return (
        f"**16 plugins at 32 frames: 0 xruns.** {rt['xruns']} xruns in {rt['seconds']:g} s. The chain"
        f" overran the period in {rt['late_renders']} callbacks; {rt['late_wakeups']} callbacks began"
        " more than 1.5 periods after the one before: the JACK dummy driver's thread (real-time"
        " priority) was run late, by this VM's scheduler or its host. The chain's own p99.9 is"
        f" {100 * rt['chain_p999_fraction']:.1f} % of the period." + steal
    )


_EXPLAINERS: dict[str, Callable[[dict], Optional[str]]] = {
    "wasm_vs_native": _median,
    "wasm_vs_native_worst": _worst,
    "fixed_overhead_ns": _fixed,
    "stage_build_ms": _stage_build,
    "chain_vs_pedalboard": _chain,
    "realtime_16x32": _realtime,
}
