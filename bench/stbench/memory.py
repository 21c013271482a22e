"""Memory per live hot-path stage: resident memory added by many live stages of the example
kernels, divided by their number, and the linear memory each stage reserved."""

from __future__ import annotations

import ctypes
import gc
import statistics

from .kernels import Workspace

KERNELS = ("gain", "eq", "compressor", "delay")


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError("no VmRSS in /proc/self/status")


def _settle() -> int:
    """RSS after a collection, with freed heap returned to the kernel (glibc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return _rss_kb()


def measure_memory(ws: Workspace, per_kernel: int = 32) -> dict:
    """RSS per stage over ``per_kernel`` live stages of each example kernel (one stage of each
    is built first, so the compiled modules are not counted: they are shared)."""
    for name in KERNELS:
        ws.stage(name).close()
    before = _settle()
    stages = [ws.stage(name) for name in KERNELS for _ in range(per_kernel)]
    try:
        after = _settle()
        linear = [s.memory_bytes for s in stages if s.memory_bytes is not None]
    finally:
        for stage in stages:
            stage.close()
    return {
        "stages": len(stages),
        "rss_growth_kb": after - before,
        "rss_per_stage_kb": (after - before) / len(stages),
        "linear_memory_median_kb": statistics.median(linear) / 1024 if linear else None,
        "linear_memory_max_kb": max(linear) / 1024 if linear else None,
    }
