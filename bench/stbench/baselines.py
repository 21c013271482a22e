"""What the hot path is compared with, per block: numpy/scipy versions of each kernel,
pedalboard's closest built-ins, and a plain wasmtime-py call of the same core module."""

from __future__ import annotations

import ctypes
import math
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import scipy.signal
import wasmtime

from stellatune import abi

from .kernels import CHANNELS, SAMPLE_RATE
from .timing import BenchmarkError

Process = Callable[[np.ndarray], object]


# --- numpy / scipy ---------------------------------------------------------------------------


def _rbj_biquad(kind: str, freq: float, gain_db: float, q: float = 1.0) -> np.ndarray:
    """One second-order section (b0 b1 b2 1 a1 a2) from the audio-EQ cookbook; shelves at S = 1."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / SAMPLE_RATE
    cw, sw = math.cos(w0), math.sin(w0)
    if kind == "peak":
        alpha = sw / (2.0 * q)
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        alpha = sw / 2.0 * math.sqrt(2.0)  # slope 1
        sq = 2.0 * math.sqrt(a) * alpha
        sign = 1.0 if kind == "low" else -1.0
        b = [
            a * ((a + 1) - sign * (a - 1) * cw + sq),
            sign * 2 * a * ((a - 1) - sign * (a + 1) * cw),
            a * ((a + 1) - sign * (a - 1) * cw - sq),
        ]
        den = [
            (a + 1) + sign * (a - 1) * cw + sq,
            -sign * 2 * ((a - 1) + sign * (a + 1) * cw),
            (a + 1) + sign * (a - 1) * cw - sq,
        ]
    return np.array(b + den) / den[0]


def _eq_sections(config: Mapping[str, float]) -> np.ndarray:
    bands = [
        ("low", "low_freq", "low_gain_db", None, 100.0),
        ("peak", "mid1_freq", "mid1_gain_db", "mid1_q", 500.0),
        ("peak", "mid2_freq", "mid2_gain_db", "mid2_q", 2500.0),
        ("high", "high_freq", "high_gain_db", None, 8000.0),
    ]
    sos = [
        _rbj_biquad(kind, config.get(f, default), config[g], config.get(q, 1.0) if q else 1.0)
        for kind, f, g, q, default in bands
        if config.get(g, 0.0) != 0.0
    ]
    return np.array(sos)


def numpy_kernel(name: str, config: Mapping[str, float]) -> Process:
    """A stateful block processor doing ``name``'s job with numpy/scipy, as a Python DSP author
    would write it: vectorised per block, state carried between blocks."""
    if name == "gain":
        g = np.float32(10.0 ** (config["gain_db"] / 20.0))
        return lambda block: np.multiply(block, g)
    if name == "eq":
        sos = _eq_sections(config)
        state = {"zi": np.zeros((len(sos), 2, CHANNELS))}

        def eq(block: np.ndarray) -> np.ndarray:
            y, state["zi"] = scipy.signal.sosfilt(sos, block, axis=0, zi=state["zi"])
            return y

        return eq
    if name == "compressor":
        # The envelope's attack/release switch is a per-sample branch numpy cannot vectorise;
        # the closest vectorised form is a one-pole follower at the attack time (lfilter).
        coef = math.exp(-1000.0 / (config["attack_ms"] * SAMPLE_RATE))
        threshold = 10.0 ** (config["threshold_db"] / 20.0)
        slope = 1.0 / config["ratio"] - 1.0
        state = {"zi": np.zeros(1)}

        def compressor(block: np.ndarray) -> np.ndarray:
            level = np.abs(block).max(axis=1)
            env, state["zi"] = scipy.signal.lfilter([1.0 - coef], [1.0, -coef], level, zi=state["zi"])
            gain = np.where(env > threshold, (np.maximum(env, threshold) / threshold) ** slope, 1.0)
            return block * gain[:, None].astype(np.float32)

        return compressor
    if name == "delay":
        delay = round(config["time_ms"] * SAMPLE_RATE / 1000.0)
        feedback, mix = np.float32(config["feedback"]), np.float32(config["mix"])
        line = np.zeros((delay, CHANNELS), dtype=np.float32)
        state = {"pos": 0}

        def delay_block(block: np.ndarray) -> np.ndarray:
            # Blocks are shorter than the delay, so each block's taps were written earlier.
            idx = (state["pos"] + np.arange(len(block))) % delay
            tap = line[idx]
            line[idx] = block + feedback * tap
            state["pos"] = (state["pos"] + len(block)) % delay
            return (1 - mix) * block + mix * tap

        return delay_block
    raise KeyError(name)


# --- pedalboard ------------------------------------------------------------------------------


def pedalboard_plugin(name: str, config: Mapping[str, float]):
    """pedalboard's closest built-in to ``name`` (a Pedalboard of filters for the 4-band EQ)."""
    import pedalboard as pb

    if name == "gain":
        return pb.Gain(gain_db=config["gain_db"])
    if name == "eq":
        filters = []
        if config.get("low_gain_db", 0.0):
            filters.append(
                pb.LowShelfFilter(cutoff_frequency_hz=config.get("low_freq", 100.0), gain_db=config["low_gain_db"])
            )
        for band, default in (("mid1", 500.0), ("mid2", 2500.0)):
            if config.get(f"{band}_gain_db", 0.0):
                filters.append(
                    pb.PeakFilter(
                        cutoff_frequency_hz=config.get(f"{band}_freq", default),
                        gain_db=config[f"{band}_gain_db"],
                        q=config.get(f"{band}_q", 1.0),
                    )
                )
        if config.get("high_gain_db", 0.0):
            filters.append(
                pb.HighShelfFilter(cutoff_frequency_hz=config.get("high_freq", 8000.0), gain_db=config["high_gain_db"])
            )
        return filters[0] if len(filters) == 1 else pb.Pedalboard(filters)
    if name == "compressor":
        return pb.Compressor(
            threshold_db=config["threshold_db"],
            ratio=config["ratio"],
            attack_ms=config["attack_ms"],
            release_ms=config["release_ms"],
        )
    if name == "delay":
        return pb.Delay(delay_seconds=config["time_ms"] / 1000.0, feedback=config["feedback"], mix=config["mix"])
    raise KeyError(name)


def pedalboard_block(plugin) -> Process:
    """Per-block processing with pedalboard, state kept across calls (blocks are channels-first)."""
    return lambda block: plugin.process(block, SAMPLE_RATE, buffer_size=block.shape[1], reset=False)


# --- one wasmtime-py call per block ----------------------------------------------------------


class WasmtimePyKernel:
    """The hot-path core module driven from Python through wasmtime-py, one ``Func`` call per
    block: what a host written in pure Python would pay."""

    def __init__(self, path: Path, config: Mapping[str, float]):
        engine = wasmtime.Engine(_simd_config())
        self._store = wasmtime.Store(engine)
        instance = wasmtime.Instance(self._store, wasmtime.Module.from_file(engine, str(path)), [])
        exports = instance.exports(self._store)
        self._memory = exports["memory"]
        self._process = exports[abi.DEFAULT_PROCESS_EXPORT]
        scratch = abi.SDK_IN_OFFSET - abi.HOST_SCRATCH_SIZE
        self._out_frames = scratch + abi.SCRATCH_OUT_FRAMES
        self._out_flags = scratch + abi.SCRATCH_OUT_FLAGS
        args = abi.pack_init_args(
            abi.Role.DSP_TRANSFORM, SAMPLE_RATE, CHANNELS, abi.SDK_MAX_FRAMES, abi.SDK_IN_OFFSET, abi.SDK_OUT_OFFSET
        )
        self._memory.write(self._store, args, scratch)
        if exports[abi.DEFAULT_INIT_EXPORT](self._store, scratch, scratch + abi.SCRATCH_OUT_CTX) != 0:
            raise BenchmarkError(f"{path}: st_hot_init failed")
        raw = self._memory.read(self._store, scratch + abi.SCRATCH_OUT_CTX, scratch + abi.SCRATCH_OUT_CTX + 4)
        self._ctx = struct.unpack("<I", raw)[0]
        names_at = exports[abi.PARAM_NAMES_EXPORT](self._store)
        names = bytes(self._memory.read(self._store, names_at, names_at + 1024)).split(b"\0")
        for key, value in config.items():
            exports[abi.SET_PARAM_EXPORT](self._store, self._ctx, names.index(key.encode()), value)
        # A numpy view of linear memory (no memory.grow after init, so the base stays put).
        base = ctypes.cast(self._memory.data_ptr(self._store), ctypes.c_void_p).value
        size = self._memory.data_len(self._store)
        self._view = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(base))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Copy the block in, call ``st_hot_process``, copy the output out."""
        nbytes = block.nbytes
        self._view[abi.SDK_IN_OFFSET : abi.SDK_IN_OFFSET + nbytes] = block.reshape(-1).view(np.uint8)
        self._process(self._store, self._ctx, len(block), self._out_frames, self._out_flags)
        return self._view[abi.SDK_OUT_OFFSET : abi.SDK_OUT_OFFSET + nbytes].view(np.float32).reshape(block.shape).copy()


def _simd_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.wasm_simd = True
    return config
