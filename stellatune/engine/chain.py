"""Chain: an ordered chain of stages, run offline or in live playback."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Optional, Union, cast

import numpy as np

from stellatune.engine import _core
from stellatune.engine.component import ComponentStage
from stellatune.engine.playback import BlockSource, PlaybackHandle, start_playback
from stellatune.engine.stage import Stage
from stellatune.engine.stages import HotPathStage
from stellatune.engine.stats import StageStats
from stellatune.errors import EngineError, RuntimeStateError

__all__ = ["Chain", "Stage"]

#: Per-call budget offline: long enough that a descheduled thread never hits it on a loaded
#: machine, short enough that a looping module still ends.
DEFAULT_OFFLINE_DEADLINE_MS = 1000.0


class Chain:
    """Stages applied in order to interleaved float32 audio, in blocks of ``block_frames``.

    ``process`` renders an array offline; ``play`` streams a file or array to a device. Hot-path
    stages run in the C block loop; component-path stages (Python calls) run between its
    segments, which moves the chain off the audio callback onto the feeder thread in playback.
    A stage that traps, fails or overruns its deadline ``timeout_limit`` times in a row is
    bypassed from then on, its fault recorded, and the rest of the chain keeps playing; a single
    overrun only skips that block.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        sample_rate: int,
        channels: int,
        block_frames: int = 256,
        *,
        offline_deadline_ms: float = DEFAULT_OFFLINE_DEADLINE_MS,
    ):
        stages = list(stages)
        if block_frames <= 0:
            raise EngineError("block_frames must be > 0")
        if offline_deadline_ms <= 0:
            raise EngineError("offline_deadline_ms must be > 0")
        if len({id(s) for s in stages}) != len(stages):
            raise EngineError("a stage can appear only once in a pipeline")
        for s in stages:
            if not isinstance(s, (HotPathStage, ComponentStage)):
                raise EngineError(f"{s!r}: the engine runs HotPathStage and ComponentStage stages only")
            if s.closed:
                raise RuntimeStateError(f"{s.name}: cannot run in a pipeline: the stage is closed")
            if s.sample_rate != sample_rate or s.channels != channels:
                raise EngineError(
                    f"{s.name} was initialised for {s.sample_rate} Hz x {s.channels} ch,"
                    f" the pipeline runs {sample_rate} Hz x {channels} ch"
                )
            if s.max_frames < block_frames:
                raise EngineError(
                    f"{s.name} accepts at most {s.max_frames} frames per block, block_frames is {block_frames}"
                )
        self.stages = tuple(stages)
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_frames = block_frames
        self.offline_deadline_ms = offline_deadline_ms
        # Runs of consecutive hot-path stages share one C chain; each component stage stands alone.
        self._segments: list[Union[_core.Chain, ComponentStage]] = []
        self._places: dict[int, tuple[_core.Chain, int]] = {}
        run: list[HotPathStage] = []
        for item in [*stages, None]:
            if isinstance(item, HotPathStage):
                run.append(item)
                continue
            if run:
                chain = _core.Chain([h._core for h in run], channels, block_frames)
                self._segments.append(chain)
                self._places.update({id(h): (chain, i) for i, h in enumerate(run)})
                run = []
            if isinstance(item, ComponentStage):  # (None ends the list)
                self._segments.append(item)
        if not self._segments:  # no stages: playback still wants a (trivial) chain to drive
            self._segments.append(_core.Chain([], channels, block_frames))
        self._busy = threading.Lock()
        self._input_nonfinite = 0  # counted by render() when a component stage comes first

    @property
    def nonfinite_input_samples(self) -> int:
        """Samples of the chain's input (the audio given to ``process``, or the decoded source
        in playback) that were NaN or infinite and were replaced by 0 before the first stage.
        Subnormals in the input are flushed to zero too, uncounted."""
        first = self._segments[0]
        return self._input_nonfinite + (first.input_nonfinite if isinstance(first, _core.Chain) else 0)

    @property
    def has_component_stages(self) -> bool:
        """True when some stage runs on the component path (Python, so never in a callback)."""
        return any(isinstance(s, ComponentStage) for s in self.stages)

    def process(self, array: np.ndarray) -> np.ndarray:
        """Render ``array`` (frames x channels, float) through the chain; returns a new
        float32 array of the same shape."""
        a = np.asarray(array)
        if a.ndim != 2 or a.shape[1] != self.channels:
            raise EngineError(f"expected an array of shape (frames, {self.channels}), got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise EngineError(f"expected float samples, got {a.dtype}")
        out = np.array(a, dtype=np.float32, order="C", copy=True)
        with self.running(offline=True):
            self.render(out)
            self._offer_kept()
        return out

    def _offer_kept(self, tries: int = 4096) -> None:
        """Offer hot-path sinks the frames they did not take again, while they take some
        (back-pressure offline: nothing is dropped; a sink that takes nothing keeps them for
        the next call)."""
        for seg in self._segments:
            if not isinstance(seg, _core.Chain):
                continue
            for _ in range(tries):
                before = seg.sink_pending
                if not before:
                    break
                seg.offer_pending()
                if seg.sink_pending >= before:
                    break

    def render(self, buf: np.ndarray) -> None:
        """Process ``buf`` (float32, C order, frames x channels) in place; the caller owns the
        chain (:meth:`running`). The feeder thread calls this in design B."""
        if len(self._segments) == 1 and isinstance(self._segments[0], _core.Chain):
            self._segments[0].process(buf)  # one C call for the whole buffer
            return
        # A C segment cleans its own input (NaN/Inf -> 0, counted); a component stage first in
        # line gets the same treatment here, so no stage ever sees a non-finite input sample.
        clean_first = isinstance(self._segments[0], ComponentStage)
        for start in range(0, len(buf), self.block_frames):
            block = buf[start : start + self.block_frames]
            if clean_first:
                self._input_nonfinite += _core.sanitize_samples(block)
            for segment in self._segments:
                if isinstance(segment, ComponentStage):
                    segment.run(block)
                else:
                    segment.process(block)

    def play(
        self,
        source: Union[str, Path, np.ndarray, BlockSource],
        device: Union[str, int, None] = None,
        frames: int = 128,
        **options,
    ) -> PlaybackHandle:
        """Start playing ``source`` and return at once: an audio file soundfile reads, a frames x
        channels array (at the pipeline's rate), or a :class:`BlockSource` (blocks from a decoder
        plugin, say). The feeder thread resamples a source at another rate (soxr, HQ; see
        ``handle.source_sample_rate``) and copies mono to every channel. ``device`` is a PortAudio device name (substring) or index;
        None picks the JACK server's output if one runs, else the default output, or the engine
        clock when the chain ends in an output-sink stage. ``frames`` is the device block.
        With component-path stages the chain runs on the feeder thread (``stats().chain_thread``)."""
        return start_playback(self, source, device=device, frames=frames, **options)

    def time_blocks(self, block: np.ndarray, iterations: int) -> float:
        """Nanoseconds per pass of ``block`` (frames x channels) through the chain, mean of
        ``iterations`` passes looped in C without the GIL (what the timing benchmarks use; a
        one-stage pipeline times one stage). The stages' statistics count these calls too.
        Hot-path stages only: a component stage is a Python call per block."""
        a = np.ascontiguousarray(block, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.channels or not len(a) or len(a) > self.block_frames:
            raise EngineError(f"expected a block of shape (1..{self.block_frames}, {self.channels}), got {a.shape}")
        if iterations <= 0:
            raise EngineError("iterations must be > 0")
        if self.has_component_stages:
            raise EngineError("time_blocks times hot-path stages in C; this chain has component stages")
        with self.running(offline=False) as chain:
            assert chain is not None  # hot-path stages only (checked above): one C chain
            return chain.time_blocks(a, iterations)

    def reset(self) -> None:
        """Reset every stage's signal history (seek, restart); queued between blocks while playing.
        Stages bypassed after a fault are skipped: they no longer process anything."""
        for s in self.stages:
            if s.fault is None:
                s.reset()

    def stats(self) -> list[StageStats]:
        """Per-stage process times and faults."""
        return [s.stats() for s in self.stages]

    def _c_chain(self) -> Optional[_core.Chain]:
        """The single C chain the audio callback can run (None with component-path stages)."""
        return None if self.has_component_stages else cast(_core.Chain, self._segments[0])

    @contextmanager
    def running(self, offline: bool = False) -> Iterator[Optional[_core.Chain]]:
        """Own the chain: route stage commands through its queues, keep epoch tickers on and
        give each call the offline or the live deadline. Yields the single C chain the callback
        can run, or None when component-path stages split it."""
        if not self._busy.acquire(blocking=False):
            raise EngineError("this pipeline is already processing or playing")
        try:
            with ExitStack() as stack:
                engines = {id(s._engine): s._engine for s in self.stages if s._engine is not None}
                for engine in engines.values():
                    stack.enter_context(engine.ticking())
                for stage in self.stages:
                    stack.enter_context(_live(stage, self._places.get(id(stage), self)))
                ticks = {id(e): e.deadline_ticks(self.offline_deadline_ms / 1000.0) for e in engines.values()}
                for stage in self.stages:
                    stage._use_deadline(ticks.get(id(stage._engine)) if offline else None)
                stack.callback(self._clear_deadlines)
                yield self._c_chain()
        finally:
            self._busy.release()

    def _clear_deadlines(self) -> None:
        for stage in self.stages:
            stage._use_deadline(None)


@contextmanager
def _live(stage: Stage, place: object) -> Iterator[None]:
    stage._claim(place)  # RuntimeStateError once the stage is closed
    try:
        yield
    finally:
        # The driver has stopped: commands it did not reach are applied now (under the stage's
        # lock), before any idle-time change could be overwritten by them at the next run.
        stage._unclaim(place[0].apply_commands if isinstance(place, tuple) else None)
