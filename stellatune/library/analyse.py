"""One file → one catalog row: content hash, decode (decoder plugins, else soundfile), format,
tags (the decoder's, else mutagen's), loudness (pyloudnorm: BS.1770-4 / EBU R128) and lyrics.

An :class:`Analyser` holds one runtime and one executor for its whole life (a Dask worker makes
one at setup; the serial import makes one); :meth:`Analyser.analyse` never raises for a bad
file: every failure is a :class:`TrackResult` with ``status="failed"``, an error code and a
message. Results are plain picklable values, so they travel back to the client as they are.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import numpy.typing as npt

from ..errors import PluginError, PluginErrorCode, PluginTimeout, PluginTrap, StellatuneError, TrackFailure

if TYPE_CHECKING:
    from ..executor import ComponentExecutor
    from ..runtime import WasmPluginRuntime

__all__ = [
    "DECODER_MODES",
    "ERROR_CODES",
    "REPLAYGAIN_REFERENCE_LUFS",
    "WorkItem",
    "TrackResult",
    "Loudness",
    "Analyser",
    "content_hash",
    "measure_loudness",
    "album_loudness",
    "replaygain",
    "warm_up",
]

#: ``--decoder``: ``auto`` = plugins first, soundfile when none takes the file; ``builtin`` =
#: soundfile only; ``plugin`` = decoder plugins only.
DECODER_MODES = ("auto", "builtin", "plugin")
#: Error codes a failed track can carry (docs/library.md).
ERROR_CODES = (
    "io-error",
    "corrupt",
    "unsupported",
    "decoder-trap",
    "timeout",
    "decoder-error",
    "worker-died",
    "internal",
)
#: Internal code of a decoder plugin declining a file at open: not recorded, the next decoder is tried.
REFUSED = "refused"
#: ReplayGain 2.0 reference loudness.
REPLAYGAIN_REFERENCE_LUFS = -18.0
#: Frames per block read from a decoder plugin.
READ_FRAMES = 16384
#: Wall-clock budget for decoding one file (each plugin call also has the executor's deadline).
FILE_TIMEOUT_S = 300.0
#: Test hook: a worker whose file name contains this environment variable's value exits at once
#: (simulates a worker process dying mid-task; tests/library). Unset in normal use.
CRASH_MARKER_ENV = "STELLATUNE_LIBRARY_CRASH_MARKER"

_SOUNDFILE_FORMATS = {
    "wav": "WAV",
    "wave": "WAV",
    "flac": "FLAC",
    "ogg": "OGG",
    "oga": "OGG",
    "opus": "OGG",
    "mp3": "MP3",
    "aif": "AIFF",
    "aiff": "AIFF",
    "aifc": "AIFF",
    "caf": "CAF",
}
_PCM_CODECS = {"PCM_16": "pcm_s16", "PCM_24": "pcm_s24", "PCM_32": "pcm_s32", "PCM_U8": "pcm_u8", "PCM_S8": "pcm_s8"}
_PCM_CODECS |= {"FLOAT": "pcm_f32", "DOUBLE": "pcm_f64"}


@dataclass(frozen=True)
class WorkItem:
    """A file to analyse; ``known_hash`` is the catalog's hash when only the mtime changed (a
    file whose content hash still matches comes back ``unchanged``, not decoded again)."""

    path: str
    size: int
    mtime_ns: int
    known_hash: Optional[str] = None


@dataclass(frozen=True)
class Loudness:
    """BS.1770-4 figures of one track; ``blocks`` are pyloudnorm's 400 ms gating-block
    loudnesses (float32 LUFS), kept so album loudness can gate over a folder's blocks."""

    lufs: Optional[float]
    true_peak_dbtp: Optional[float]
    sample_peak: Optional[float]
    blocks: bytes = b""


@dataclass(frozen=True)
class TrackResult:
    """What the catalog stores for one path. ``status``: ``ok``, ``failed`` or ``unchanged``."""

    path: str
    size: int
    mtime_ns: int
    status: str
    content_hash: Optional[str] = None
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    attempts: int = 1
    decoder: Optional[str] = None
    codec: Optional[str] = None
    container: Optional[str] = None
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    frames: Optional[int] = None
    duration_s: Optional[float] = None
    tags: dict[str, Any] = field(default_factory=dict)
    tags_source: Optional[str] = None
    loudness: Optional[Loudness] = None
    lyrics: Optional[str] = None
    lyrics_source: Optional[str] = None

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)


@dataclass
class _Decoded:
    audio: npt.NDArray[np.float32]
    sample_rate: int
    decoder: str
    codec: Optional[str] = None
    container: Optional[str] = None
    tags: dict[str, Any] = field(default_factory=dict)


def content_hash(path: str) -> str:
    """``sha256:<hex>`` of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class Analyser:
    """Analyses files with one runtime and executor (``None`` for both: soundfile only).

    ``decoder_mode`` is one of :data:`DECODER_MODES`; lyrics come from ``lyrics`` (pairs of
    ``plugin_id, type_id`` of granted, active lyrics plugins).
    """

    def __init__(
        self,
        runtime: Optional[WasmPluginRuntime] = None,
        executor: Optional[ComponentExecutor] = None,
        *,
        decoder_mode: str = "auto",
        lyrics: Sequence[tuple[str, str]] = (),
    ):
        if decoder_mode not in DECODER_MODES:
            raise ValueError(f"decoder mode must be one of {DECODER_MODES}, not {decoder_mode!r}")
        self.runtime = runtime
        self.executor = executor
        self.decoder_mode = decoder_mode
        self.lyrics = tuple(lyrics) if executor is not None else ()

    def analyse(self, item: WorkItem) -> TrackResult:
        """The row for ``item``; never raises for a bad file (KeyboardInterrupt passes)."""
        marker = os.environ.get(CRASH_MARKER_ENV)
        if marker and marker in os.path.basename(item.path):
            os._exit(70)
        base = TrackResult(item.path, item.size, item.mtime_ns, "failed")
        try:
            digest = content_hash(item.path)
        except OSError as exc:
            return replace(base, error_code="io-error", error_message=f"cannot read: {exc}")
        base = replace(base, content_hash=digest)
        if item.known_hash is not None and item.known_hash == digest:
            return replace(base, status="unchanged")
        try:
            decoded = self._decode(item.path)
            return self._describe(base, decoded)
        except TrackFailure as f:
            return replace(base, error_code=f.code, error_message=f.message)
        except MemoryError as exc:
            return replace(base, error_code="internal", error_message=f"out of memory: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug on one file must not abort the run; recorded
            return replace(base, error_code="internal", error_message=f"{type(exc).__name__}: {exc}")

    # --- decoding ---------------------------------------------------------------------------

    def _decode(self, path: str) -> _Decoded:
        ext = Path(path).suffix.lstrip(".").lower() or None
        if self.decoder_mode == "builtin" or self.executor is None or self.runtime is None:
            if self.decoder_mode == "plugin":
                raise TrackFailure("unsupported", "no decoder plugin is active (--decoder plugin)")
            return _soundfile_decode(path, ext)
        from ..executor import decoder_candidates

        candidates = decoder_candidates(self.runtime, ext, local_file=self.decoder_mode == "plugin")
        refusals: list[str] = []
        for descriptor in candidates:
            label = f"{descriptor.plugin_id}/{descriptor.type_id}"
            try:
                return self._plugin_decode(path, ext, descriptor.plugin_id, descriptor.type_id, label)
            except TrackFailure as r:
                if r.code != REFUSED:
                    raise
                refusals.append(f"{label}: {r}")
        if self.decoder_mode == "plugin":
            detail = "; ".join(refusals) or "no decoder plugin is active for it"
            raise TrackFailure("unsupported", f"no decoder plugin could open the file ({detail})")
        return _soundfile_decode(path, ext)

    def _plugin_decode(self, path: str, ext: Optional[str], plugin_id: str, type_id: str, label: str) -> _Decoded:
        from ..executor import FileHostStream

        assert self.executor is not None
        started = time.monotonic()
        try:
            session = self.executor.decoder(plugin_id, type_id).open(FileHostStream(Path(path)), ext)
        except (PluginTrap, PluginTimeout) as exc:
            raise _plugin_failure(label, exc) from exc
        except StellatuneError as exc:
            raise _refused(str(exc)) from exc  # the plugin declined the file: the next one may take it
        with session:
            try:
                info = session.info()
                if info.sample_rate <= 0 or info.channels <= 0:
                    raise _refused(f"reported {info.sample_rate} Hz, {info.channels} channels")
                try:
                    meta = session.metadata()
                except (PluginTrap, PluginTimeout):
                    raise
                except StellatuneError:
                    meta = None
                blocks = []
                for block in session.pcm_blocks(READ_FRAMES):
                    blocks.append(block)
                    if time.monotonic() - started > FILE_TIMEOUT_S:
                        raise TrackFailure("timeout", f"{label}: decoding took more than {FILE_TIMEOUT_S:.0f} s")
            except (PluginTrap, PluginTimeout, PluginError) as exc:
                raise _plugin_failure(label, exc) from exc
        audio = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.float32)
        decoded = _Decoded(audio.astype(np.float32, copy=False), info.sample_rate, label)
        if meta is not None:
            decoded.codec = meta.format.codec or None
            decoded.container = meta.format.container
            t = meta.tags
            tags: dict[str, Any] = {
                "title": t.title,
                "artist": "; ".join(t.artists) or None,
                "album": t.album,
                "album_artist": "; ".join(t.album_artists) or None,
                "genre": "; ".join(t.genres) or None,
                "track_number": t.track_number,
                "disc_number": t.disc_number,
                "year": t.year,
            }
            decoded.tags = {k: v for k, v in tags.items() if v not in (None, "")}
        return decoded

    # --- everything but decoding ------------------------------------------------------------

    def _describe(self, base: TrackResult, d: _Decoded) -> TrackResult:
        frames, channels = d.audio.shape
        tags = d.tags or _mutagen_tags(base.path)
        tags_source: Optional[str] = ("decoder" if d.tags else "mutagen") if tags else None
        lyrics, lyrics_source = self._lyrics(tags)
        return replace(
            base,
            status="ok",
            decoder=d.decoder,
            codec=d.codec,
            container=d.container,
            sample_rate=d.sample_rate,
            channels=channels,
            frames=frames,
            duration_s=frames / d.sample_rate,
            tags=tags,
            tags_source=tags_source,
            loudness=measure_loudness(d.audio, d.sample_rate),
            lyrics=lyrics,
            lyrics_source=lyrics_source,
        )

    def _lyrics(self, tags: dict[str, Any]) -> tuple[Optional[str], Optional[str]]:
        title = tags.get("title")
        if not title or not self.lyrics or self.executor is None:
            return None, None
        keyword = f"{tags.get('artist') or ''} {title}".strip()
        for plugin_id, type_id in self.lyrics:
            try:
                provider = self.executor.lyrics(plugin_id, type_id)
                found = provider.search(keyword)
                if found:
                    return provider.fetch(found[0].id), f"{plugin_id}/{type_id}"
            except StellatuneError:
                continue  # lyrics are optional: a failing provider costs only its lyrics
        return None, None


def _refused(message: str) -> TrackFailure:
    """A decoder plugin declined a file at open (not a trap): the next one may take it."""
    return TrackFailure(REFUSED, message)


def _plugin_failure(label: str, exc: Exception) -> TrackFailure:
    if isinstance(exc, PluginTrap):
        return TrackFailure("decoder-trap", f"{label}: {exc}")
    if isinstance(exc, PluginTimeout):
        return TrackFailure("timeout", f"{label}: {exc}")
    if isinstance(exc, PluginError) and exc.code == PluginErrorCode.UNSUPPORTED:
        return TrackFailure("unsupported", f"{label}: {exc}")
    return TrackFailure("decoder-error", f"{label}: {exc}")


def _soundfile_decode(path: str, ext: Optional[str]) -> _Decoded:
    import soundfile as sf

    try:
        # Opened here, not by name: libsndfile takes a name as UTF-8, and a name on disk may
        # not be (Python holds its odd bytes as surrogate escapes; open() gives them back).
        with open(path, "rb") as raw, sf.SoundFile(raw) as f:
            audio = f.read(dtype="float32", always_2d=True)
            fmt, subtype, rate = f.format, f.subtype, f.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as exc:
        known = _SOUNDFILE_FORMATS.get(ext or "")
        if known is not None and known in sf.available_formats():
            raise TrackFailure("corrupt", f"soundfile cannot decode it: {exc}") from exc
        raise TrackFailure("unsupported", f"no decoder for .{ext or '?'} files: {exc}") from exc
    except OSError as exc:
        raise TrackFailure("io-error", f"cannot read: {exc}") from exc
    if fmt == "FLAC":
        codec = "flac"
    elif fmt in ("OGG", "MP3"):
        codec = subtype.lower()
    else:
        codec = _PCM_CODECS.get(subtype, subtype.lower())
    return _Decoded(audio, rate, "soundfile", codec=codec, container=fmt.lower())


_MUTAGEN_KEYS = {
    "title": "title",
    "artist": "artist",
    "album": "album",
    "albumartist": "album_artist",
    "genre": "genre",
    "tracknumber": "track_number",
    "discnumber": "disc_number",
    "date": "year",
}


def _mutagen_tags(path: str) -> dict[str, Any]:
    """Tags read by mutagen (easy interface), empty when it has none or cannot read the file."""
    try:
        import mutagen

        f = mutagen.File(path, easy=True)
    except Exception:  # noqa: BLE001 - mutagen raises many types for odd files; tags are optional
        return {}
    if f is None or not f.tags:
        return {}
    out: dict[str, Any] = {}
    for key, name in _MUTAGEN_KEYS.items():
        try:
            values = f.tags.get(key)
        except Exception:  # noqa: BLE001 - see above
            values = None
        if not values:
            continue
        value = "; ".join(str(v) for v in values) if isinstance(values, list) else str(values)
        if name in ("track_number", "disc_number", "year"):
            digits = value.split("/")[0].strip()[:4] if name == "year" else value.split("/")[0].strip()
            out[name] = int(digits) if digits.isdigit() else None
            if out[name] is None:
                del out[name]
        else:
            out[name] = value
    return out


# --- loudness -------------------------------------------------------------------------------


def warm_up() -> None:
    """Import soundfile, mutagen, pyloudnorm and scipy.signal and run the meter once, so the
    first file an analyser sees does not pay ~0.5 s of imports and first calls (on a Dask
    worker that cost would land inside its first task, after the run's clock started)."""
    import mutagen  # noqa: F401 - imported for its side effect: the module is loaded
    import soundfile  # noqa: F401 - same

    rate = 8000
    tone = np.sin(np.linspace(0.0, 440.0 * 2 * np.pi, rate, dtype=np.float32))[:, None] * 0.1
    measure_loudness(tone.astype(np.float32), rate)


def measure_loudness(audio: npt.NDArray[np.float32], rate: int) -> Loudness:
    """Integrated loudness (pyloudnorm's BS.1770-4 meter), true peak (4× oversampled, as
    BS.1770-4 Annex 2 describes) and sample peak of ``audio`` ``(frames, channels)``.

    Shorter than one 400 ms gating block, or more than 5 channels (the meter's weights stop
    there): no integrated loudness. Digital silence: ``lufs`` is ``None`` too.
    """
    import pyloudnorm
    from scipy.signal import resample_poly

    if audio.size == 0:
        return Loudness(None, None, None)
    data = audio.astype(np.float64)
    sample_peak = float(np.max(np.abs(data)))
    over = resample_poly(data, 4, 1, axis=0)
    true_peak = float(max(np.max(np.abs(over)), sample_peak))
    true_peak_db = 20.0 * float(np.log10(true_peak)) if true_peak > 0 else None
    lufs: Optional[float] = None
    blocks = b""
    if data.shape[0] >= int(0.4 * rate) + 1 and data.shape[1] <= 5:
        meter = pyloudnorm.Meter(rate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(meter.integrated_loudness(data))
        lufs = value if np.isfinite(value) else None
        blocks = np.asarray(meter.blockwise_loudness, dtype=np.float32).tobytes()
    return Loudness(lufs, true_peak_db, sample_peak, blocks)


def album_loudness(tracks_blocks: Sequence[bytes]) -> Optional[float]:
    """BS.1770-4 integrated loudness of the tracks played back to back, from their gating-block
    loudnesses (what pyloudnorm measured per track): the absolute (-70 LUFS) and relative (-10 LU)
    gates applied over all blocks at once, as a meter fed the whole album would. ``None`` when
    no block passes."""
    parts = [np.frombuffer(b, dtype=np.float32) for b in tracks_blocks if b]
    if not parts:
        return None
    loud = np.concatenate(parts).astype(np.float64)
    loud = loud[np.isfinite(loud)]
    power = 10.0 ** ((loud + 0.691) / 10.0)
    gated = loud >= -70.0
    if not gated.any():
        return None
    relative = -0.691 + 10.0 * np.log10(power[gated].mean()) - 10.0
    gated &= loud > relative
    if not gated.any():
        return None
    return float(-0.691 + 10.0 * np.log10(power[gated].mean()))


def replaygain(lufs: Optional[float]) -> Optional[float]:
    """ReplayGain 2.0 gain in dB for a loudness: ``-18 LUFS - lufs``."""
    return None if lufs is None else REPLAYGAIN_REFERENCE_LUFS - lufs
