"""Live playback: a feeder thread decodes into the ring, a C driver plays it.

The driver is a PortAudio stream whose callback is C (csrc/st_audio.c), or, for chains that end
in an output-sink stage and no device, the engine clock (a C thread sleeping to each block's
deadline). The chain runs inside the driver (design A, the lower latency: docs/engine.md)
unless it holds component-path stages: those are Python calls, so the chain then runs on the
feeder before the ring (design B), which ``chain_in_callback=False`` also selects.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Union

import numpy as np

from stellatune.abi import Role
from stellatune.engine import _core
from stellatune.engine.stats import PlaybackStats, StageStats, quantile_us
from stellatune.errors import AudioDeviceError, EngineError


class Playable(Protocol):
    """What playback needs of a chain of stages (:class:`stellatune.engine.Chain`). Named
    here, so this module, which the pipeline's ``play`` calls, never imports the pipeline."""

    sample_rate: int
    channels: int
    block_frames: int

    @property
    def stages(self) -> Sequence[Any]: ...

    @property
    def nonfinite_input_samples(self) -> int: ...

    def running(self, offline: bool = False) -> AbstractContextManager[Optional[_core.Chain]]: ...

    def render(self, buf: np.ndarray) -> None: ...

    def stats(self) -> list[StageStats]: ...


__all__ = [
    "ENGINE_CLOCK",
    "BlockSource",
    "PlaybackHandle",
    "file_source",
    "list_devices",
    "source_blocks",
    "start_playback",
]

#: ``device`` value that plays through the engine clock instead of a PortAudio device.
ENGINE_CLOCK = "engine-clock"
_FEED_FRAMES = 2048
# Every playback not yet stopped. Held strongly so a handle the caller dropped still plays to
# the end; stopped at interpreter exit, before finalisation frees the wasm stores the audio
# thread calls into.
_LIVE: set[PlaybackHandle] = set()


@atexit.register
def _stop_live_playbacks() -> None:
    for handle in list(_LIVE):
        try:
            handle.stop()
        except EngineError:
            pass


def list_devices() -> list[dict]:
    """Every PortAudio device (index, name, host API, channel counts, default latency).

    PortAudio looks for JACK servers only when it initialises, so start one first. Listed
    through pyaudio, on the very libportaudio the engine's own C stream plays through, so the
    indices are the ones ``play(device=...)`` takes.
    """
    _core.pa_initialize()  # raises PortAudioError, an AudioDeviceError
    try:
        return _enumerate_devices()[0]
    finally:
        _core.pa_terminate()


def _enumerate_devices() -> tuple[list[dict], int]:
    """(every device as a dict, the default output's index or -1), through pyaudio; PortAudio
    initialised. The engine's quiet ``Pa_Initialize`` (ALSA's probe noise off stderr) comes
    first, so pyaudio's own (reference counted) neither probes again nor prints."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        try:
            jack = pa.get_host_api_info_by_type(pyaudio.paJACK)["index"]
        except OSError:  # no JACK host API in this PortAudio
            jack = -1
        apis = [pa.get_host_api_info_by_index(i) for i in range(pa.get_host_api_count())]
        devices = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            api = apis[info["hostApi"]] if 0 <= info["hostApi"] < len(apis) else None
            name = info["name"]
            devices.append(
                {
                    "index": i,
                    "name": name.decode(errors="replace") if isinstance(name, bytes) else name,
                    "host_api": api["name"] if api is not None else "",
                    "is_jack": info["hostApi"] == jack,
                    "is_default_of_host_api": api is not None and api["defaultOutputDevice"] == i,
                    "max_input_channels": info["maxInputChannels"],
                    "max_output_channels": info["maxOutputChannels"],
                    "default_sample_rate": info["defaultSampleRate"],
                    "default_low_output_latency": info["defaultLowOutputLatency"],
                }
            )
        try:
            default = pa.get_default_output_device_info()["index"]
        except OSError:  # no default output device
            default = -1
        return devices, default
    finally:
        pa.terminate()


def _pick_device(device: Union[str, int, None], channels: int) -> dict:
    """Resolve ``device`` among PortAudio outputs (PortAudio initialised), in the listing
    ``list_devices`` gives."""
    devices, default = _enumerate_devices()
    outputs = [d for d in devices if d["max_output_channels"] >= channels]
    if not outputs:
        raise AudioDeviceError(
            f"no PortAudio output device with {channels} channels (no sound card?"
            " scripts/virtual-audio starts a JACK dummy device)"
        )
    if device is None:
        jack = [d for d in outputs if d["is_jack"]]
        if jack:
            return next((d for d in jack if d["is_default_of_host_api"]), jack[0])
        return next((d for d in outputs if d["index"] == default), outputs[0])
    if isinstance(device, int):
        found = [d for d in outputs if d["index"] == device]
    else:
        found = [d for d in outputs if d["name"] == device] or [
            d for d in outputs if device.lower() in d["name"].lower()
        ]
    if not found:
        names = ", ".join(repr(d["name"]) for d in outputs)
        raise AudioDeviceError(f"no output device matches {device!r} (have: {names})")
    return found[0]


@dataclass
class BlockSource:
    """Audio the caller decodes: ``blocks`` yields float32 (frames, ``channels``) arrays at
    ``sample_rate``. The feeder thread iterates it, so a decoder behind it runs off the audio
    thread. ``label`` names the decoder for reports; ``close`` (if any) runs once when playback
    stops or the source is exhausted (the engine calls it; so must an offline reader)."""

    blocks: Iterable[np.ndarray]
    sample_rate: int
    channels: int
    label: str = ""
    close: Optional[Callable[[], None]] = None


def file_source(path: Union[str, Path], block_frames: int = _FEED_FRAMES) -> BlockSource:
    """The file ``path`` decoded by soundfile (libsndfile), as a :class:`BlockSource`."""
    import soundfile

    try:
        f = soundfile.SoundFile(str(path))
    except (RuntimeError, soundfile.LibsndfileError, OSError) as e:
        raise EngineError(f"cannot open {path}: {e}") from e

    def read() -> Iterator[np.ndarray]:
        while True:
            block = f.read(block_frames, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield block

    return BlockSource(read(), f.samplerate, f.channels, label="soundfile", close=f.close)


def source_blocks(source: BlockSource, sample_rate: int, channels: int) -> Iterator[np.ndarray]:
    """``source`` as writable C-order float32 blocks of ``channels`` at ``sample_rate``: mono is
    copied to every channel, another rate is resampled (soxr, HQ). Validates now, so errors
    surface before playback starts."""
    if source.sample_rate <= 0:
        raise EngineError(f"the source reports {source.sample_rate} Hz")
    if source.channels not in (1, channels):
        raise EngineError(f"the source has {source.channels} channels, the pipeline runs {channels}")
    return _fitted(source, sample_rate, channels)


def _fitted(source: BlockSource, sample_rate: int, channels: int) -> Iterator[np.ndarray]:
    def checked() -> Iterator[np.ndarray]:
        for block in source.blocks:
            block = np.asarray(block)
            if block.ndim != 2 or block.shape[1] != source.channels:
                raise EngineError(f"a source block has shape {block.shape}, expected (frames, {source.channels})")
            if len(block):
                yield np.ascontiguousarray(block, dtype=np.float32)

    blocks = checked()
    if source.sample_rate != sample_rate:
        blocks = _resampled(blocks, source.sample_rate, sample_rate, source.channels)
    for block in blocks:
        if block.shape[1] != channels:  # mono source: same signal on every channel
            block = np.repeat(block, channels, axis=1)
        # A copy when shared: design B processes blocks in place, and the source's arrays are its own.
        yield block if block.flags.writeable and block.flags.owndata else block.copy()


def _resampled(blocks: Iterator[np.ndarray], from_rate: int, to_rate: int, channels: int) -> Iterator[np.ndarray]:
    """A streaming resampler: its filter state runs across blocks, so block edges leave no seams."""
    import soxr

    stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(block)
        if len(out):
            yield out
    tail = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)  # the filter's delay
    if len(tail):
        yield tail


def _as_source(source: Union[str, Path, np.ndarray, BlockSource], sample_rate: int) -> BlockSource:
    """A path or array as a :class:`BlockSource` (an array plays at the pipeline's rate)."""
    if isinstance(source, BlockSource):
        return source
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise EngineError(f"expected an array of shape (frames, channels), got {source.shape}")
        data = source
        blocks = (data[start : start + _FEED_FRAMES] for start in range(0, len(data), _FEED_FRAMES))
        return BlockSource(blocks, sample_rate, data.shape[1], label="array")
    return file_source(source)


class PlaybackHandle:
    """A running playback: ``stats()`` while it plays, ``wait()`` for the end, ``stop()``.

    The device and the pipeline stay in use until ``wait()`` returns True or ``stop()`` is called
    (or the interpreter exits), even if the handle is dropped.
    """

    def __init__(
        self,
        pipeline: Playable,
        player: _core.Player,
        running: AbstractContextManager,
        source: BlockSource,
        blocks: Iterator[np.ndarray],
        uses_portaudio: bool,
        python_render: bool,
        chain_thread: str,
        period_us: float,
    ):
        """Internal: use :meth:`Chain.play`."""
        self._pipeline = pipeline
        self._source = source
        self._player = player
        self._running = running
        self._uses_portaudio = uses_portaudio
        self._python_render = python_render  # component stages: the feeder runs Chain.render
        self._chain_thread = chain_thread
        self._period_us = period_us
        self._feeder_error: Optional[BaseException] = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._feeder = threading.Thread(target=self._feed, args=(blocks,), name="stellatune-feeder", daemon=True)
        _LIVE.add(self)

    def _feed(self, blocks: Iterator[np.ndarray]) -> None:
        try:
            for block in blocks:
                if self._player.stopping:
                    break
                if self._python_render:
                    self._pipeline.render(block)
                self._player.push(block)
        except BaseException as e:  # noqa: BLE001 (reported by wait(); the driver plays silence meanwhile)
            self._feeder_error = e
        finally:
            self._player.source_done()
            self._close_source()

    def _close_source(self) -> None:
        """Run the source's ``close`` (on the thread that read it, when the feeder ran)."""
        try:
            if self._source.close is not None:
                self._source.close()
        except BaseException as e:  # noqa: BLE001 (reported by wait(), after any feeder error)
            self._feeder_error = self._feeder_error or e

    @property
    def source_sample_rate(self) -> int:
        """The source's rate; when it differs from the pipeline's, the feeder resamples (soxr HQ)."""
        return self._source.sample_rate

    @property
    def decoder(self) -> str:
        """What decodes the source (``soundfile``, ``array``, or a decoder plugin's id/type)."""
        return self._source.label

    def stats(self) -> PlaybackStats:
        """A snapshot of the device, ring and per-stage counters."""
        c = self._player.counters()
        cb, hist = c["callbacks"], c["render_hist"]

        def q(p: float) -> float:
            return quantile_us(hist, cb, p, 0, c["render_max_ns"])

        return PlaybackStats(
            callbacks=c["callbacks"],
            device_underflows=c["device_underflows"],
            ring_underruns=c["ring_underruns"],
            ring_underrun_frames=c["ring_underrun_frames"],
            frames_played=c["frames_played"],
            output_latency_ms=c["output_latency_s"] * 1000.0,
            mean_ring_fill_frames=c["mean_ring_fill_frames"],
            render_max_us=c["render_max_ns"] / 1000.0,
            callback_p50_us=q(0.5),
            callback_p99_us=q(0.99),
            callback_p999_us=q(0.999),
            late_renders=c["late_renders"],
            late_wakeups=c["late_wakeups"],
            period_us=self._period_us,
            chain_thread=self._chain_thread,
            finished=self._player.finished,
            stages=self._pipeline.stats(),
            # With component stages the driver runs a chain of its own, which cleans again.
            nonfinite_input_samples=self._pipeline.nonfinite_input_samples
            + (self._player.chain.input_nonfinite if self._python_render else 0),
        )

    def captured(self) -> Optional[np.ndarray]:
        """Diagnostics: what the device input recorded (``capture_seconds`` in play), or None."""
        return self._player.captured()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the whole source has played (then release the device); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._player.finished and not self._closed:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        self.stop()
        return True

    def stop(self) -> None:
        """Stop at once and release the device (idempotent). Re-raises a feeder failure."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            _LIVE.discard(self)
            self._player.request_stop()
            if self._feeder.ident is not None:
                self._feeder.join()
            else:
                self._close_source()  # the feeder never ran, so it did not close the source
            try:
                self._player.close()  # a PortAudio failure is already an AudioDeviceError
            finally:
                if self._uses_portaudio:
                    _core.pa_terminate()
                self._running.__exit__(None, None, None)
        if self._feeder_error is not None:
            raise EngineError(f"decoding failed: {self._feeder_error}") from self._feeder_error

    def __enter__(self) -> PlaybackHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_playback(
    pipeline: Playable,
    source: Union[str, Path, np.ndarray, BlockSource],
    device: Union[str, int, None] = None,
    frames: int = 128,
    *,
    ring_frames: int = 8192,
    capture_seconds: float = 0.0,
    chain_in_callback: bool = True,
) -> PlaybackHandle:
    """Open the driver and start playing (see :meth:`Chain.play`).

    ``ring_frames`` (a power of two) sizes the decode ring; ``capture_seconds`` records the
    device input for loopback checks; ``chain_in_callback=False`` selects design B (a chain
    with component-path stages always runs there).
    """
    if frames <= 0 or frames > pipeline.block_frames:
        raise EngineError(f"frames must be in 1..{pipeline.block_frames} (the pipeline's block_frames)")
    if ring_frames & (ring_frames - 1) or ring_frames < 2 * frames:
        raise EngineError(f"ring_frames must be a power of two >= {2 * frames}, got {ring_frames}")
    source = _as_source(source, pipeline.sample_rate)
    try:
        blocks = source_blocks(source, pipeline.sample_rate, pipeline.channels)
    except EngineError:
        if source.close is not None:
            source.close()
        raise
    has_sink = any(s.role is Role.OUTPUT_SINK for s in pipeline.stages)
    use_clock = device == ENGINE_CLOCK or (device is None and has_sink)
    running = pipeline.running()
    chain = running.__enter__()
    python_render = chain is None
    chain_thread = "feeder" if python_render or not chain_in_callback else "callback"
    try:
        if python_render:
            # Component stages: the feeder renders the whole chain in Python (Chain.render);
            # the driver only moves audio, through a chain with no stages.
            chain, chain_in_callback = _core.Chain([], pipeline.channels, pipeline.block_frames), True
        assert chain is not None  # the pipeline's own C chain, or the empty one just made
        player = _core.Player(
            chain, ring_frames, pipeline.channels, frames, float(pipeline.sample_rate), chain_in_callback
        )
        if not use_clock:
            _core.pa_initialize()  # raises PortAudioError, an AudioDeviceError
    except BaseException:
        running.__exit__(None, None, None)  # the pipeline is free again for the next play()
        if source.close is not None:
            source.close()
        raise
    handle = PlaybackHandle(
        pipeline,
        player,
        running,
        source,
        blocks,
        uses_portaudio=not use_clock,
        python_render=python_render,
        chain_thread=chain_thread,
        period_us=frames / pipeline.sample_rate * 1e6,
    )
    try:
        if not use_clock:
            info = _pick_device(device, pipeline.channels)
            in_channels = min(pipeline.channels, info["max_input_channels"]) if capture_seconds else 0
            player.open_device(
                info["index"],
                info["index"] if in_channels else -1,
                in_channels,
                int(capture_seconds * pipeline.sample_rate),
                info["default_low_output_latency"],
            )
        handle._feeder.start()
        # Prefill half the ring before the driver starts, so the first blocks find audio.
        while player.buffered < ring_frames // 2 and handle._feeder.is_alive():
            time.sleep(0.001)
        if use_clock:
            player.start_clock()
        else:
            player.start_device()
    except BaseException as e:
        try:
            handle.stop()
        except EngineError:
            pass
        if isinstance(e, _core.PortAudioError):
            where = device or "the default device"
            raise AudioDeviceError(f"cannot play on {where}: {e.what}: {e.text}", e.code) from e
        raise
    return handle
