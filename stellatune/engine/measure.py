"""Measurements behind the engine's design choices (docs/engine.md), on a real device.

    scripts/virtual-audio start --frames 128 && export JACK_DEFAULT_SERVER=stellatune
    python -m stellatune.engine.measure

1. Control-to-output latency of the two playback designs, at the smallest ring that plays with
   zero ring underruns while Python threads hog the CPU: a ``set_param`` is sent during playback
   and the loopback recording shows when its effect reached the device.
2. Per-block cost of a wasm kernel with the epoch watchdog on and off.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import wasmtime

from stellatune.abi import BufferLayout, CoreModuleSpec, Role
from stellatune.engine.chain import Chain
from stellatune.engine.stages import HotPathStage

RATE = 48000
_IN, _OUT, _MAX_FRAMES = 1024, 1024 + 8192, 1024
# A scalar gain kernel in WAT, so the measurement needs no C toolchain.
_GAIN_WAT = f"""
(module
  (memory (export "memory") 2)
  (global $gain (mut f32) (f32.const 1))
  (global $ch (mut i32) (i32.const 2))
  (data (i32.const 16) "gain\\00\\00")
  (func (export "st_hot_init") (param $args i32) (param $out i32) (result i32)
    (global.set $ch (i32.load16_u offset=12 (local.get $args)))
    (i32.store (local.get $out) (i32.const 1))
    (i32.const 0))
  (func (export "st_hot_param_names") (result i32) (i32.const 16))
  (func (export "st_hot_set_param") (param i32 i32 f32) (result i32)
    (global.set $gain (local.get 2)) (i32.const 0))
  (func (export "st_hot_process") (param $ctx i32) (param $frames i32) (param $of i32) (param $fl i32)
        (result i32)
    (local $i i32) (local $n i32)
    (local.set $n (i32.mul (local.get $frames) (global.get $ch)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (f32.store offset={_OUT} (i32.shl (local.get $i) (i32.const 2))
        (f32.mul (f32.load offset={_IN} (i32.shl (local.get $i) (i32.const 2))) (global.get $gain)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (local.get $of) (local.get $frames))
    (i32.store (local.get $fl) (i32.const 0))
    (i32.const 0)))
"""
_SPEC = CoreModuleSpec(
    Role.DSP_TRANSFORM, "gain.wasm", BufferLayout(in_offset=_IN, out_offset=_OUT, max_frames=_MAX_FRAMES, channels=2)
)


def _gain_module(directory: Path) -> Path:
    path = directory / "gain.wasm"
    path.write_bytes(wasmtime.wat2wasm(_GAIN_WAT))
    return path


def _hog(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


def control_latency(
    module: Path, chain_in_callback: bool, ring_frames: int, frames: int = 128, seconds: float = 3.0, hogs: int = 2
) -> dict:
    """Play noise, halve the gain mid-way; return underruns and the measured latency (ms)."""
    stage = HotPathStage.from_wasm(module, _SPEC, RATE, 2, {"gain": 1.0})
    x = np.random.default_rng(5).random((int(seconds * RATE), 2), dtype=np.float32) - 0.5
    stop = threading.Event()
    threads = [threading.Thread(target=_hog, args=(stop,), daemon=True) for _ in range(hogs)]
    for t in threads:
        t.start()
    try:
        with Chain([stage], RATE, 2).play(
            x, frames=frames, ring_frames=ring_frames, capture_seconds=seconds + 1, chain_in_callback=chain_in_callback
        ) as handle:
            time.sleep(0.2)
            subprocess.run(["jack_disconnect", "system:capture_1", "PortAudio:in_0"], capture_output=True)
            subprocess.run(["jack_connect", "PortAudio:out_0", "PortAudio:in_0"], check=True)
            time.sleep(seconds / 2 - 0.2)
            stage.set_param("gain", 0.5)
            # Taken once the command is queued, so GIL waits of this thread do not count.
            captured = handle.captured()
            assert captured is not None  # capture_seconds was given
            sent_at = len(captured)
            handle.wait(timeout=seconds * 3)
            stats = handle.stats()
            captured = handle.captured()
            assert captured is not None
            rec = captured[:, 0]
    finally:
        stop.set()
        stage.close()
    latency = _first_halved(rec, x[:, 0], sent_at)
    return {
        "underruns": stats.ring_underruns,
        "xruns": stats.device_underflows,
        "latency_ms": None if latency is None else latency * 1000 / RATE,
        "ring_fill_ms": stats.mean_ring_fill_frames * 1000 / RATE,
        "device_ms": stats.output_latency_ms,
    }


def _first_halved(rec: np.ndarray, x: np.ndarray, sent_at: int) -> Optional[int]:
    """Frames from ``sent_at`` to the first recorded sample that is exactly x/2 (and not x)."""
    nz = np.flatnonzero(rec)
    if not len(nz):
        return None
    first = int(nz[0])
    probe = rec[first : first + 64]
    views = np.lib.stride_tricks.sliding_window_view(x, 64)
    hits = np.flatnonzero(np.all(views == probe, axis=1))
    if len(hits) != 1:
        return None
    n = min(len(rec) - first, len(x) - int(hits[0]))
    got, src = rec[first : first + n], x[int(hits[0]) : int(hits[0]) + n]
    halved = np.flatnonzero((got == src * np.float32(0.5)) & (got != src))
    return int(first + halved[0] - sent_at) if len(halved) else None


def epoch_cost(module: Path, seconds: float = 10.0, block_frames: int = 256) -> dict:
    """Mean/p50/p99 per-block time (us) of the kernel with the epoch watchdog on and off."""
    x = np.random.default_rng(1).random((int(seconds * RATE), 2), dtype=np.float32) - 0.5
    out = {}
    for on in (True, False):
        stage = HotPathStage.from_wasm(module, _SPEC, RATE, 2, {"gain": 0.5}, epoch_interruption=on)
        try:
            Chain([stage], RATE, 2, block_frames=block_frames).process(x)
            st = stage.stats()
        finally:
            stage.close()
        out["on" if on else "off"] = {"mean_us": st.mean_us, "p50_us": st.p50_us, "p99_us": st.p99_us}
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        module = _gain_module(Path(tmp))
        print("| design | ring (frames) | ring underruns | xruns | set_param → device (ms) | mean ring fill (ms) |")
        print("|---|---|---|---|---|---|")
        for chain_in_callback in (True, False):
            for ring in (512, 1024, 2048, 4096, 8192):
                r = control_latency(module, chain_in_callback, ring)
                lat = "n/a" if r["latency_ms"] is None else f"{r['latency_ms']:.1f}"
                name = "A: chain in callback" if chain_in_callback else "B: chain on feeder"
                print(
                    f"| {name} | {ring} | {r['underruns']} | {r['xruns']} | {lat} | {r['ring_fill_ms']:.1f} |",
                    flush=True,
                )
        for block in (128, 256):
            cost = epoch_cost(module, block_frames=block)
            print(f"epoch watchdog, {block}-frame blocks: on {cost['on']}, off {cost['off']}")


if __name__ == "__main__":
    main()
