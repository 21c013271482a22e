"""Real-time runs: a wasm chain (8 plugins at 64 and 128 frames; 16 at 32 frames) playing on a
JACK dummy device while the other core is kept busy, counting callbacks, xruns and ring
underruns, and how much of each block's deadline the chain used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Optional

import numpy as np

from stellatune.engine import BlockSource, Chain

from .kernels import CHANNELS, REPO, SAMPLE_RATE, Workspace, noise

VIRTUAL_AUDIO = REPO / "scripts" / "virtual-audio"
CHAIN8 = ("gain", "eq", "compressor", "delay") * 2
CHAIN16 = ("gain", "eq", "compressor", "delay") * 4
#: The noise is looped past this length: a 10-minute soak would otherwise hold 230 MB of it.
_LOOP_SECONDS = 10.0
_FEED_FRAMES = 2048
_QUANTILES = ("p50", "p99", "p999")


class RealtimeUnavailable(Exception):
    """No JACK server could be started; the report says why instead of giving figures."""


@contextmanager
def jack_dummy(frames: int) -> Iterator[str]:
    """A private JACK dummy server at ``frames`` per period; the process env points at it."""
    if shutil.which("jackd") is None:
        raise RealtimeUnavailable("jackd not found (Debian package jackd2)")
    name = f"stbench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="stbench-jack-") as xdg:
        env = dict(os.environ, XDG_RUNTIME_DIR=xdg)
        started = subprocess.run(
            [str(VIRTUAL_AUDIO), "start", "--name", name, "--frames", str(frames), "--rate", str(SAMPLE_RATE)],
            env=env,
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            raise RealtimeUnavailable(f"virtual-audio start failed: {started.stderr.strip()[-300:]}")
        saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
        os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        try:
            yield name
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            subprocess.run([str(VIRTUAL_AUDIO), "stop", "--name", name], env=env, capture_output=True)


@contextmanager
def busy_core() -> Iterator[None]:
    """A process spinning on the CPU for the duration (the 'other core loaded' condition)."""
    # It spins until told to stop, or until its parent is gone (so a killed run leaves no hog).
    spin = "import os, sys\nwhile os.getppid() == int(sys.argv[1]):\n    for _ in range(200000): pass\n"
    hog = subprocess.Popen([sys.executable, "-c", spin, str(os.getpid())])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def looped_noise(seconds: float) -> BlockSource:
    """``seconds`` of the benchmark noise, its first :data:`_LOOP_SECONDS` repeated."""
    loop = noise(int(min(seconds, _LOOP_SECONDS) * SAMPLE_RATE), seed=7)
    total = int(seconds * SAMPLE_RATE)

    def blocks() -> Iterator[np.ndarray]:
        done = 0
        while done < total:
            start = done % len(loop)
            count = min(_FEED_FRAMES, len(loop) - start, total - done)
            # A copy, so nothing downstream can write into the loop it will play again.
            yield loop[start : start + count].copy()
            done += count

    return BlockSource(blocks(), SAMPLE_RATE, CHANNELS, label="looped noise")


def steal_seconds() -> Optional[float]:
    """CPU time the hypervisor has taken from this VM's vCPUs so far (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measure_realtime(ws: Workspace, frames: int, seconds: float, chain: Sequence[str] = CHAIN8) -> dict:
    """Play ``seconds`` of noise through ``chain`` (wasm stages) at ``frames`` per callback."""
    deadline_us = frames / SAMPLE_RATE * 1e6
    stages = [ws.stage(name) for name in chain]
    source = looped_noise(seconds)
    try:
        with jack_dummy(frames), busy_core():
            pipeline = Chain(stages, SAMPLE_RATE, 2, block_frames=frames)
            handle = pipeline.play(source, frames=frames)
            try:
                # The callback rate is taken inside the run, away from start-up and the tail.
                time.sleep(min(0.25, seconds / 8))
                steal_before = steal_seconds()
                t1, first = time.monotonic(), handle.stats().callbacks
                time.sleep(seconds * 3 / 4)
                t2, second = time.monotonic(), handle.stats().callbacks
                handle.wait(timeout=seconds * 3 + 5)
                stats = handle.stats()
                steal_after = steal_seconds()
            finally:
                handle.stop()
    finally:
        for stage in stages:
            stage.close()
    # The engine times every callback (ring pop + chain) into a histogram of its own.
    chain_us = {key: getattr(stats, f"callback_{key}_us") for key in _QUANTILES}
    return {
        "frames": frames,
        "plugins": len(stages),
        "seconds": seconds,
        "deadline_us": deadline_us,
        "callbacks": stats.callbacks,
        "callbacks_per_s": (second - first) / (t2 - t1),
        "expected_callbacks_per_s": SAMPLE_RATE / frames,
        "xruns": stats.device_underflows,
        "ring_underruns": stats.ring_underruns,
        "faults": sum(1 for s in stats.stages if s.fault is not None),
        # Whose xruns: callbacks that overran the period (ours) against callbacks the device began
        # late (its thread was not scheduled in time), and the CPU the hypervisor took meanwhile.
        "late_renders": stats.late_renders,
        "late_wakeups": stats.late_wakeups,
        "steal_seconds": None if steal_before is None or steal_after is None else steal_after - steal_before,
        **{f"chain_{key}_fraction": value / deadline_us for key, value in chain_us.items()},
        "render_max_fraction": stats.render_max_us / deadline_us,
    }
