"""A short synthetic stereo track, so the README's commands need no download."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

__all__ = ["write_demo_track"]

# A I-V-vi-IV progression in C major (MIDI notes), one chord per bar of 4 beats at 120 bpm.
_CHORDS = [(60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)]
_BASS = [36, 31, 33, 29]
_BEAT_S = 0.5


def _hz(note: int) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _pluck(t: np.ndarray, freq: float, decay_s: float) -> np.ndarray:
    """A few decaying harmonics: a soft plucked tone."""
    env = np.exp(-t / decay_s) * np.minimum(1.0, t / 0.005)
    return env * sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in (1, 2, 3, 4))


def write_demo_track(path: Union[str, Path], seconds: float = 8.0, sample_rate: int = 48000) -> Path:
    """Write ``seconds`` of a stereo arpeggio, bass and hi-hat as a 32-bit float WAV."""
    import soundfile

    frames = int(seconds * sample_rate)
    out = np.zeros((frames, 2))
    rng = np.random.default_rng(7)
    eighth = _BEAT_S / 2
    for step in range(int(seconds / eighth)):
        start = int(step * eighth * sample_rate)
        bar = (step // 8) % len(_CHORDS)
        # Arpeggio: one chord tone per eighth, panned across the stereo field.
        note = _CHORDS[bar][step % 3] + (12 if step % 8 >= 4 else 0)
        n = min(frames - start, int(1.2 * sample_rate))
        t = np.arange(n) / sample_rate
        tone = 0.18 * _pluck(t, _hz(note), 0.35)
        pan = 0.5 + 0.4 * np.sin(step * 0.7)
        out[start : start + n, 0] += tone * (1 - pan)
        out[start : start + n, 1] += tone * pan
        # Hi-hat: a short burst of noise on every off-beat.
        if step % 2:
            h = min(frames - start, int(0.04 * sample_rate))
            hat = 0.05 * rng.standard_normal(h) * np.exp(-np.arange(h) / (0.008 * sample_rate))
            out[start : start + h] += hat[:, None]
        # Bass on every beat.
        if step % 2 == 0:
            b = min(frames - start, int(0.45 * sample_rate))
            tb = np.arange(b) / sample_rate
            out[start : start + b] += (0.25 * _pluck(tb, _hz(_BASS[bar]), 0.2))[:, None]
    fade = min(frames, int(0.5 * sample_rate))
    out[frames - fade :] *= np.linspace(1, 0, fade)[:, None]
    out *= 0.9 / max(1e-9, np.abs(out).max())
    path = Path(path)
    soundfile.write(str(path), out.astype(np.float32), sample_rate, subtype="FLOAT")
    return path
