"""A generated music library for the library-import tests and benchmark (tests/library,
bench/library_bench.py): nested folders of short WAV, FLAC and OGG files written by soundfile,
with tags, a few corrupt files and a few byte-identical duplicates. Deterministic for a seed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["GeneratedLibrary", "generate_library", "TRAP_MARKER"]

#: What tests/fixtures/plugins/trap-decoder looks for in a file's bytes (the title of trap files).
TRAP_MARKER = "STELLATUNE-TRAP"

_FORMATS = (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"))


@dataclass
class GeneratedLibrary:
    root: Path
    good: list[Path] = field(default_factory=list)
    corrupt: list[Path] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    trap: list[Path] = field(default_factory=list)
    audio_seconds: float = 0.0

    @property
    def files(self) -> list[Path]:
        return self.good + self.corrupt + [d for _, d in self.duplicates] + self.trap


def _signal(rng: np.random.Generator, frames: int, rate: int, channels: int) -> np.ndarray:
    t = np.arange(frames) / rate
    amp = 10 ** (rng.uniform(-30, -3) / 20)
    freq = rng.uniform(80, 4000)
    cols = [
        amp * np.sin(2 * np.pi * freq * (1 + 0.01 * c) * t) + amp * 0.05 * rng.standard_normal(frames)
        for c in range(channels)
    ]
    return np.clip(np.stack(cols, axis=1), -1, 1).astype(np.float32)


#: Frames per ``SoundFile.write`` call: libsndfile 1.2.2 crashes on one multi-minute Vorbis write.
_WRITE_FRAMES = 1 << 16


def _write(out: sf.SoundFile, audio: np.ndarray) -> None:
    # Files shorter than one block (every file of the tests' library) are written in one call,
    # as before, so their bytes do not change.
    for start in range(0, len(audio), _WRITE_FRAMES):
        out.write(audio[start : start + _WRITE_FRAMES])


def generate_library(
    root: Path,
    *,
    folders: int = 10,
    per_folder: int = 18,
    corrupt: int = 10,
    duplicates: int = 10,
    trap: int = 0,
    seconds: tuple[float, float] = (0.5, 1.0),
    seed: int = 1234,
) -> GeneratedLibrary:
    """Write the library under ``root`` (``folders × per_folder`` good files, then ``corrupt``
    broken ones, ``duplicates`` copies of good files in other folders, ``trap`` WAV files named
    ``trap-*.wav`` carrying :data:`TRAP_MARKER`)."""
    rng = np.random.default_rng(seed)
    lib = GeneratedLibrary(Path(root))
    for f in range(folders):
        folder = lib.root / f"artist-{f % 3}" / f"album-{f:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            ext, fmt, subtype = _FORMATS[(f + i) % len(_FORMATS)]
            rate = (44100, 48000, 22050)[(f * 7 + i) % 3]
            channels = 1 + (i % 2)
            frames = int(rng.uniform(*seconds) * rate)
            path = folder / f"{i + 1:02d} track.{ext}"
            with sf.SoundFile(path, "w", rate, channels, subtype=subtype, format=fmt) as out:
                if i % 3 != 2:  # a third of the files carry no tags: mutagen finds none either
                    out.title = f"Track {i + 1}"
                    out.artist = f"Artist {f % 3}"
                    out.album = f"Album {f:02d}"
                _write(out, _signal(rng, frames, rate, channels))
            lib.good.append(path)
            lib.audio_seconds += frames / rate
    broken = lib.root / "broken"
    broken.mkdir(exist_ok=True)
    for i in range(corrupt):
        ext = _FORMATS[i % 3][0]
        path = broken / f"corrupt-{i:02d}.{ext}"
        if i % 2 == 0:
            path.write_bytes(rng.bytes(2000 + 100 * i))  # noise with an audio name
        else:
            source = lib.good[i * 3 % len(lib.good)]
            path.write_bytes(source.read_bytes()[:40])  # truncated inside the header
        lib.corrupt.append(path)
    for i in range(duplicates):
        source = lib.good[(i * 17) % len(lib.good)]
        target = lib.root / "copies" / f"dup-{i:02d}" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        lib.duplicates.append((source, target))
    if trap:
        traps = lib.root / "traps"
        traps.mkdir(exist_ok=True)
        for i in range(trap):
            path = traps / f"trap-{i:02d}.wav"
            with sf.SoundFile(path, "w", 48000, 2, subtype="FLOAT", format="WAV") as out:
                out.title = TRAP_MARKER
                out.write(_signal(rng, 24000, 48000, 2))
            lib.trap.append(path)
    return lib
