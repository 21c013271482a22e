"""The REPORT.md sections built from what the evidence tests recorded: compatibility with the
native runtime (output, latency envelope, faults), the soak, and every other figure."""

from __future__ import annotations

from typing import Any

from .render import _table as _str_table


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return _str_table(header, [[str(cell) for cell in row] for row in rows])


#: Evidence with a section of its own; the rest is listed under "Other figures".
_OWN_SECTION = ("compat_output", "compat_latency", "compat_fault_", "stress_soak")


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def compatibility(evidence: dict[str, Any]) -> list[str]:
    """Output correctness, latency envelope and fault containment, wasm against the native .so."""
    output = evidence.get("compat_output")
    latency = evidence.get("compat_latency")
    faults = {k.removeprefix("compat_fault_"): v for k, v in evidence.items() if k.startswith("compat_fault_")}
    if not (output or latency or faults):
        return []
    lines = ["## Compatibility with the native runtime", ""]
    if output:
        lines += [f"**Output**: {output.get('claim', '')}.", ""]
        lines += _table(
            ["DSP", "cases", "bit-exact", "largest difference"],
            [
                [name, p["cases"], "yes" if p["bit_exact"] else "**no**", _num(p["max_abs_error"])]
                for name, p in sorted(output.get("plugins", {}).items())
            ],
        )
        lines.append("")
    if latency:
        lines += [f"**Latency envelope** (µs per block; {latency.get('how', '')}):", ""]
        rows = []
        for name, by_frames in sorted(latency.get("envelope", {}).items()):
            for frames in sorted((f for f in by_frames if f.isdigit()), key=int):
                n, w = by_frames[frames]["native"], by_frames[frames]["wasm"]
                rows.append(
                    [name, frames]
                    + [f"{_num(n[q])} / {_num(w[q])}" for q in ("p50_us", "p99_us", "max_us")]
                    + [_num(w["median_round_ns_per_block"] / n["median_round_ns_per_block"])]
                )
        lines += _table(["DSP", "frames", "p50 native / wasm", "p99", "max", "wasm / native (median)"], rows)
        lines.append("")
    if faults:
        lines += ["**Faults** (the same fault in each build):", ""]
        lines += _table(
            ["fault", "native .so", "wasm"],
            [[kind, _outcome(f.get("native")), _outcome(f.get("wasm"))] for kind, f in sorted(faults.items())],
        )
        lines += [
            "",
            "A native kernel that traps or loops takes the process with it: only the wasm build can contain those.",
            "",
        ]
    return lines


def _outcome(value: Any) -> str:
    if isinstance(value, dict):
        return f"contained: `{value.get('kind')}` fault at block {value.get('block')}, stage bypassed"
    return str(value)


def soak(evidence: dict[str, Any]) -> list[str]:
    """The soak's underruns, xruns and callback-time distribution."""
    s = evidence.get("stress_soak")
    if not s:
        return []
    cb, load = s.get("callback_us", {}), s.get("callback_load", {})
    edits = ", ".join(f"{n} {kind}" for kind, n in sorted(s.get("edits", {}).items())) or "no edits recorded"
    minutes = f"{s['seconds'] / 60:.1f}" if "seconds" in s else "–"
    lines = [
        "## Soak",
        "",
        f"{minutes} minutes of real-time playback of an {len(s.get('chain', []))}-plugin chain at"
        f" {s.get('frames', '–')} frames on the JACK dummy device, the other core loaded, while a client edited"
        f" the chain and its config every second ({edits}).",
        "",
    ]
    counts = ("callbacks", "xruns", "ring_underruns", "faults", "seconds_without_progress")
    lines += _table(
        ["callbacks", "device xruns", "ring underruns", "stage faults", "seconds without progress"],
        [[_num(s.get(k)) for k in counts]],
    )
    lines += [""]
    lines += _table(
        ["callback time", "p50", "p99", "p99.9", "max"],
        [
            ["µs", *(_num(cb.get(q)) for q in ("p50", "p99", "p999", "max"))],
            ["fraction of the period", "–", *(_num(load.get(q)) for q in ("p99", "p999", "max"))],
        ],
    )
    return [*lines, ""]


def other_figures(evidence: dict[str, Any]) -> list[str]:
    """Every other recorded figure, one line per test, nested objects flattened one level."""
    rest = {k: v for k, v in evidence.items() if not k.startswith(_OWN_SECTION)}
    lines = ["## Other figures the stress and fuzz tests recorded", ""]
    if not rest:
        return [*lines, "None were recorded.", ""]
    for name, figures in sorted(rest.items()):
        lines.append(f"- **{name}**: {', '.join(_flat(figures))}")
    return [*lines, ""]


def _flat(figures: dict[str, Any]) -> list[str]:
    out = []
    for key, value in figures.items():
        if isinstance(value, dict):
            out += [f"{key}.{k} = {_num(v, 4)}" for k, v in value.items() if not isinstance(v, (dict, list))]
        elif isinstance(value, list):
            if value and all(not isinstance(v, (dict, list)) for v in value):
                out.append(f"{key} = {', '.join(map(str, value))}")
        else:
            out.append(f"{key} = {_num(value, 4)}")
    return out
