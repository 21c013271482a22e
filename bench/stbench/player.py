"""The Player (``stellatune.Player``) at 128 frames: how soon a chain edit and a seek are heard,
and whether a queue plays gaplessly.

Latencies are measured on the engine clock (the ``file:`` output in real time, no device): the
driver renders one block per period and writes each one it renders to the output ring, so an
output frame's index in the file is the driver's frame counter when it rendered it. Before each
edit the driver's counters are read (``frames_played`` + padded frames = the file index of the
next frame; ``callbacks`` minus written blocks = blocks it rendered as silence and did not write,
during a flush). After the run the file is searched for the first frame that reflects the edit;
latency = frames from the counter at the edit to that frame, plus the unwritten silent blocks in
between, over the sample rate (whole blocks: 0 means the very next block the driver rendered
reflects the edit). It includes everything a caller waits for: the control call
(planning, building, posting), the block boundary at which the driver takes the change, and for
a seek the fade-out (5 ms), the flush and the refill.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .kernels import CHANNELS, SAMPLE_RATE, Workspace, noise

FRAMES = 128
GAIN = "dev.stellatune.example.gain"
EDITS = 50  # in turn: config, insert, config, remove; the first (cold) one is reported apart
_KINDS = ("config", "insert", "config", "remove")


def measure_player(ws: Workspace, *, quick: bool, progress: Callable[[str], None] = lambda _: None) -> dict:
    runtime = ws.runtime()
    progress("player: chain edit -> first changed frame")
    edit = measure_edit_latency(runtime, EDITS)
    progress("player: seek -> first audio at the new position")
    seek = measure_seek_latency(runtime, 12 if quick else 40)
    progress("player: gapless joins")
    gapless = measure_gapless(runtime, 5 if quick else 12)
    return {"frames": FRAMES, "edit": edit, "seek": seek, "gapless": gapless}


def _percentiles(values_ms: list[float]) -> dict:
    ordered = sorted(values_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p99_ms": p99,
        "max_ms": ordered[-1],
    }


def _mark(player) -> tuple[int, int]:
    """(file index of the next frame the driver renders, blocks rendered as silence and not
    written), read until two reads agree (the counters are not read atomically)."""
    while True:
        a, b = player.counters(), player.counters()
        if a["callbacks"] == b["callbacks"] and a["frames_played"] == b["frames_played"]:
            written = b["frames_played"] + b["ring_underrun_frames"]
            return written, b["callbacks"] - written // FRAMES


def _player(runtime, out: Path, **kw):
    import stellatune

    return stellatune.Player(runtime=runtime, output=f"file:{out}", frames=FRAMES, **kw)


def measure_edit_latency(runtime, edits: int) -> dict:
    """Chain edits on a hot-path chain playing DC: a gain change (``update_config``, hot-applied)
    and a structural edit (``insert_stage``/``remove_stage``, a chain swap), in turn; each changes
    the output level, and the first frame at the new level is the one that reflects it."""
    rng = random.Random(5)
    level = np.float32(0.25)
    dc = np.full((int(SAMPLE_RATE * (1.5 + edits * 0.05)), CHANNELS), level, np.float32)
    marks: list[tuple[str, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="stbench-player-") as tmp:
        out = Path(tmp) / "edit.wav"
        with _player(runtime, out, ring_frames=1 << 16) as p:
            p.set_chain([f'{GAIN}:gain:{{"gain_db": -1}}'])
            p.enqueue((dc, SAMPLE_RATE))
            p.play()
            _wait(lambda: (p.position() or 0) > 0.3)
            for k in range(edits):
                kind = _KINDS[k % len(_KINDS)]
                time.sleep(0.02 + rng.random() * 0.01)  # the edit lands anywhere within a block
                at, silent = _mark(p)
                if kind == "config":
                    assert p.update_config(0, {"gain_db": -1.0 - (k // 2) % 2}) == "hot-apply"
                elif kind == "insert":
                    p.insert_stage(1, f'{GAIN}:gain:{{"gain_db": -3}}')
                else:
                    p.remove_stage(1)
                marks.append((kind, at, silent))
            time.sleep(0.1)
            _, silent_end = _mark(p)
            counters = p.counters()
        y = _read(out)[:, 0]
    latencies: dict[str, list[float]] = {"config": [], "insert": [], "remove": []}
    first_ms = 0.0
    for i, (kind, at, silent) in enumerate(marks):
        before = y[at - 1]
        changed = np.flatnonzero(np.abs(y[at:] - before) > 1e-6)
        if not len(changed):
            raise RuntimeError(f"edit {i} ({kind}) never reached the output")
        next_silent = marks[i + 1][2] if i + 1 < len(marks) else silent_end
        frames = int(changed[0]) + FRAMES * (next_silent - silent)
        if i == 0:  # the processor's first plan call instantiates its component
            first_ms = 1000.0 * frames / SAMPLE_RATE
        else:
            latencies[kind].append(1000.0 * frames / SAMPLE_RATE)
    every = [v for vs in latencies.values() for v in vs]
    return {
        **_percentiles(every),
        "config_update": _percentiles(latencies["config"]),
        "chain_swap": _percentiles(latencies["insert"] + latencies["remove"]),
        "first_edit_ms": first_ms,
        "ring_underruns": counters["ring_underruns"],
    }


def measure_seek_latency(runtime, seeks: int) -> dict:
    """Seeks in a 20 s item whose second channel over its first is the position: the first output
    frame at the new position is the first whose ratio is the target's (faded or not)."""
    rng = random.Random(11)
    n = 20 * SAMPLE_RATE
    ramp = np.stack([np.full(n, 0.5), 0.5 * np.arange(n) / n], axis=1).astype(np.float32)
    marks: list[tuple[float, int, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="stbench-player-") as tmp:
        out = Path(tmp) / "seek.wav"
        with _player(runtime, out, ring_frames=8192) as p:
            p.enqueue((ramp, SAMPLE_RATE))
            p.play()
            _wait(lambda: (p.position() or 0) > 0.2)
            for _ in range(seeks):
                pos = p.position() or 0.0
                target = rng.uniform(1.0, 18.0)
                while abs(target - pos) < 2.0:
                    target = rng.uniform(1.0, 18.0)
                at, silent = _mark(p)
                assert p.seek(target)
                time.sleep(0.12 + rng.random() * 0.02)
                _, silent_after = _mark(p)
                marks.append((target, at, silent, silent_after))
            counters = p.counters()
        y = _read(out)
    ms = []
    for target, at, silent, silent_after in marks:
        seg = y[at:]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(seg[:, 0] != 0, seg[:, 1] / seg[:, 0], -1.0)
        hit = np.flatnonzero(np.abs(ratio - target / 20.0) < 0.1 / 20.0)
        if not len(hit):
            raise RuntimeError(f"the seek to {target:.2f} s never reached the output")
        ms.append(1000.0 * (int(hit[0]) + FRAMES * (silent_after - silent)) / SAMPLE_RATE)
    return {**_percentiles(ms), "ring_underruns": counters["ring_underruns"]}


def measure_gapless(runtime, items: int) -> dict:
    """``items`` noise arrays of odd lengths through a gain stage, offline, against the chain run
    over their concatenation: any frame inserted, dropped or altered at a join is an error."""
    import stellatune

    rng = np.random.default_rng(3)
    spec = f'{GAIN}:gain:{{"gain_db": -6}}'
    parts = [noise(int(rng.integers(2000, 60000)), seed=100 + i) for i in range(items)]
    with tempfile.TemporaryDirectory(prefix="stbench-player-") as tmp:
        out = Path(tmp) / "gapless.wav"
        with _player(runtime, out, offline=True, ring_frames=1 << 16) as p:
            p.set_chain([spec])
            p.enqueue(*[(x, SAMPLE_RATE) for x in parts])
            p.play()
            if not p.wait(timeout=120):
                raise RuntimeError("the gapless render did not finish")
        y = _read(out)
    with stellatune.Pipeline([spec], runtime=runtime) as board:
        ref = board.process(np.concatenate(parts), SAMPLE_RATE)
    common = min(len(y), len(ref))
    differ = int(np.count_nonzero(y[:common] != ref[:common]))
    return {
        "items": items,
        "frames": len(ref),
        "length_error_frames": int(len(y) - len(ref)),
        "join_error_samples": differ + abs(len(y) - len(ref)) * CHANNELS,
        "max_abs_error": float(np.max(np.abs(y[:common] - ref[:common]))) if common else 0.0,
    }


def _read(path: Path) -> np.ndarray:
    import soundfile

    data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("the player did not start")
        time.sleep(0.005)
