"""The checks every entry point of compose makes on what a caller hands it: audio formats,
sample arrays, sizes. One place, so ``Pipeline``, ``Player`` and queue items refuse the same
things with the same words (an ``EngineError`` naming the argument), before anything is built."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

from ..errors import EngineError
from ..executor.boundary import MAX_CHANNELS, MAX_SAMPLE_RATE

__all__ = ["DECODER_MODES", "sample_rate", "channel_count", "positive_int", "float_samples", "decoder_mode"]

DECODER_MODES = ("auto", "builtin", "plugin")


def _integral(value: Any, name: str) -> int:
    """``value`` as an int when it is one (an integral float too); bools and fractions are not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise EngineError(f"{name} must be an integer, not {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return operator.index(value)
    f = float(value)
    if not math.isfinite(f) or f != int(f):
        raise EngineError(f"{name} must be an integer, not {value!r}")
    return int(f)


def sample_rate(value: Any, name: str = "sample_rate") -> int:
    """A sample rate in 1..768000 Hz (what the plugin contract allows)."""
    rate = _integral(value, name)
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        raise EngineError(f"{name} {rate} is outside 1..{MAX_SAMPLE_RATE} Hz")
    return rate


def channel_count(value: Any, name: str = "channels") -> int:
    """A channel count in 1..32."""
    n = _integral(value, name)
    if not 1 <= n <= MAX_CHANNELS:
        raise EngineError(f"{name} {n} is outside 1..{MAX_CHANNELS}")
    return n


def positive_int(value: Any, name: str) -> int:
    n = _integral(value, name)
    if n < 1:
        raise EngineError(f"{name} must be >= 1, not {n}")
    return n


def float_samples(audio: Any, name: str = "audio") -> np.ndarray:
    """``audio`` as float32, refusing what is not float samples: integer PCM would come out
    thousands of times too loud (divide int16 by 32768 first), and complex, bool or object
    arrays are not audio."""
    data = np.asarray(audio)
    if data.dtype.kind != "f":
        raise EngineError(
            f"{name} must hold float samples in [-1, 1], not {data.dtype}"
            + (" (scale integer PCM first: int16 / 32768)" if data.dtype.kind in "iu" else "")
        )
    return data.astype(np.float32, copy=False)


def decoder_mode(value: Any) -> str:
    if value not in DECODER_MODES:
        raise EngineError(f"decoder must be one of {', '.join(DECODER_MODES)}, not {value!r}")
    return str(value)
