"""Pipeline: an ordered chain of hot-path stages, run offline or in live playback."""
from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from stellatune.engine import _core
from stellatune.engine.playback import PlaybackHandle, start_playback
from stellatune.engine.stages import HotPathStage
from stellatune.engine.stats import StageStats
from stellatune.errors import EngineError

__all__ = ["Pipeline"]


class Pipeline:
    """Stages applied in order to interleaved float32 audio, in blocks of ``block_frames``.

    ``process`` renders an array offline; ``play`` streams a file or array to a device. Both run
    the same C block loop. A faulting stage (trap, timeout, bad frame count, memory.grow, error
    code) is bypassed from then on, its fault recorded, and the rest of the chain keeps playing.
    """

    def __init__(self, stages: Sequence[HotPathStage], sample_rate: int, channels: int,
                 block_frames: int = 256):
        stages = list(stages)
        if block_frames <= 0:
            raise EngineError("block_frames must be > 0")
        if len({id(s) for s in stages}) != len(stages):
            raise EngineError("a stage can appear only once in a pipeline")
        for s in stages:
            if s.sample_rate != sample_rate or s.channels != channels:
                raise EngineError(
                    f"{s.name} was initialised for {s.sample_rate} Hz x {s.channels} ch,"
                    f" the pipeline runs {sample_rate} Hz x {channels} ch")
            if s.spec.buffer.max_frames < block_frames:
                raise EngineError(
                    f"{s.name} accepts at most {s.spec.buffer.max_frames} frames per block,"
                    f" block_frames is {block_frames}")
        self.stages = tuple(stages)
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_frames = block_frames
        self._chain = _core.Chain([s._core for s in stages], channels, block_frames)
        self._busy = threading.Lock()

    def process(self, array: np.ndarray) -> np.ndarray:
        """Render ``array`` (frames x channels, float) through the chain; returns a new
        float32 array of the same shape."""
        a = np.asarray(array)
        if a.ndim != 2 or a.shape[1] != self.channels:
            raise EngineError(f"expected an array of shape (frames, {self.channels}), got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise EngineError(f"expected float samples, got {a.dtype}")
        out = np.array(a, dtype=np.float32, order="C", copy=True)
        with self.running():
            self._chain.process(out)
        return out

    def play(self, source: Union[str, Path, np.ndarray], device: Union[str, int, None] = None,
             frames: int = 128, **options) -> PlaybackHandle:
        """Start playing ``source`` (an audio file soundfile reads, or a frames x channels
        array) and return at once. ``device`` is a PortAudio device name (substring) or index;
        None picks the JACK server's output if one runs, else the default output, or the engine
        clock when the chain ends in an output-sink stage. ``frames`` is the device block."""
        return start_playback(self, source, device=device, frames=frames, **options)

    def stats(self) -> list[StageStats]:
        """Per-stage process times and faults."""
        return [s.stats() for s in self.stages]

    @contextmanager
    def running(self) -> Iterator["_core.Chain"]:
        """Own the chain: route stage commands through its queue and keep epoch tickers on."""
        if not self._busy.acquire(blocking=False):
            raise EngineError("this pipeline is already processing or playing")
        try:
            with ExitStack() as stack:
                engines = {id(s._engine): s._engine for s in self.stages if s._engine is not None}
                for engine in engines.values():
                    stack.enter_context(engine.ticking())
                for index, stage in enumerate(self.stages):
                    stack.enter_context(_live(stage, self._chain, index))
                yield self._chain
        finally:
            self._busy.release()


@contextmanager
def _live(stage: HotPathStage, chain: "_core.Chain", index: int) -> Iterator[None]:
    with stage._lock:
        if stage._live is not None:
            raise EngineError(f"{stage.name} is already running in another pipeline")
        if stage._closed:
            raise EngineError(f"{stage.name} is closed")
        stage._live = (chain, index)
    try:
        yield
    finally:
        with stage._lock:
            stage._live = None

