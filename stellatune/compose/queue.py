"""The player's queue: items opened one after another into one continuous block stream.

An item is a file path, ``"source:PLUGIN_ID:TYPE_ID:TRACK_JSON"`` (a track from a source plugin,
decoded by the decoder plugins) or a ``(array, sample_rate)`` tuple. :class:`Feeder` is the
thread that decodes ahead: it opens the next item as soon as the current one is exhausted (so
consecutive items join sample-contiguously), resamples another rate to the output's (soxr, via
the engine's ``source_blocks``), pushes into the driver's ring without blocking, and records
where each item starts in the stream (:class:`Segment`). Seek, skip and stop run *on* this thread
(:meth:`Feeder.call`), so it alone owns decoders and the ring's producer side.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..engine import BlockSource
from ..engine.playback import source_blocks
from ..errors import EngineError
from .checks import decoder_mode, float_samples, sample_rate
from .stages import closer

__all__ = ["Feeder", "OpenedItem", "Segment", "item_label", "open_item"]

FEED_FRAMES = 2048


@dataclass
class Segment:
    """Stream frames from ``start`` on hold item number ``item_no`` from ``offset`` (output frames)."""

    start: int
    item_no: int
    label: str
    offset: int
    end: Optional[int] = None  # set when the item's last frame was pushed (or it was cut)
    decoder: str = ""  # "soundfile", "array" or the decoder plugin's "plugin_id/type_id"
    source_rate: int = 0  # the item's own rate (the feeder resamples it when it differs)
    item: Any = None  # the queue item itself, to open it again (seek back into it, skip past it)


class OpenedItem:
    """A decoder positioned in one item; ``raw(frame)`` yields its blocks from ``frame`` on."""

    def __init__(
        self,
        label: str,
        decoder: str,
        rate: int,
        channels: int,
        raw: Callable[[int], Iterator[np.ndarray]],
        close: Optional[Callable[[], None]] = None,
    ):
        self.label, self.decoder, self.rate, self.channels = label, decoder, rate, channels
        self._raw, self._close = raw, close
        self._pos = 0

    def seek(self, seconds: float) -> None:
        self._pos = max(0, round(seconds * self.rate))

    def blocks(self, rate: int, channels: int) -> Iterator[np.ndarray]:
        """Blocks at the output's rate and channels from the current position on."""
        return source_blocks(BlockSource(self._raw(self._pos), self.rate, self.channels), rate, channels)

    def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            close()


def item_label(item: Any) -> str:
    if isinstance(item, tuple):
        return "array"
    return str(item)


def open_item(item: Any, decoder: str, runtime: Any = None) -> OpenedItem:
    """Open ``item`` (see the module doc). ``decoder``: ``auto`` (a decoder plugin for the file's
    extension if one is active, else soundfile), ``builtin`` (soundfile) or ``plugin``."""
    if isinstance(item, tuple):
        if len(item) != 2:
            raise EngineError("an array item is (array, sample_rate)")
        data = float_samples(item[0], "an array item")
        if data.ndim not in (1, 2) or data.size == 0:
            raise EngineError(f"an array item is (frames,) or (frames, channels) audio, got shape {data.shape}")
        data = data.reshape(len(data), -1)
        rate = sample_rate(item[1], "an array item's sample rate")

        def arr(start: int) -> Iterator[np.ndarray]:
            for i in range(start, len(data), FEED_FRAMES):
                yield data[i : i + FEED_FRAMES]

        return OpenedItem("array", "array", rate, data.shape[1], arr)
    if isinstance(item, str) and item.startswith("source:"):
        return _open_source_track(item, runtime)
    path = Path(item)
    decoder_mode(decoder)
    ext = path.suffix.lstrip(".").lower() or None
    use_plugin = decoder == "plugin" or (
        decoder == "auto" and runtime is not None and ext is not None and list(runtime.decoder_candidates(ext))
    )
    if use_plugin:
        from ..executor import FileHostStream, decoder_candidates

        if runtime is None:
            raise EngineError("decoder='plugin' needs the player's runtime")
        return _open_with_plugin(
            str(path), runtime, decoder_candidates(runtime, ext, local_file=True), lambda: FileHostStream(path), ext
        )
    return _open_soundfile(path)


def _open_soundfile(path: Path) -> OpenedItem:
    import soundfile

    try:
        f = soundfile.SoundFile(str(path))
    except (RuntimeError, soundfile.LibsndfileError, OSError) as e:
        raise EngineError(f"cannot open {path}: {e}") from e

    def raw(start: int) -> Iterator[np.ndarray]:
        f.seek(start)
        while True:
            block = f.read(FEED_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield block

    return OpenedItem(str(path), "soundfile", f.samplerate, f.channels, raw, f.close)


def _open_with_plugin(
    label: str, runtime: Any, candidates: Any, open_stream: Callable[[], Any], ext: Optional[str]
) -> OpenedItem:
    from ..executor import open_decoder

    session, chosen = open_decoder(runtime.host, candidates, open_stream, ext)
    try:
        info = session.info()
    except BaseException:
        closer(session)()
        raise

    def raw(start: int) -> Iterator[np.ndarray]:
        if start:
            session.seek_ms(round(start * 1000 / info.sample_rate))
        return session.pcm_blocks(FEED_FRAMES)

    return OpenedItem(
        label, f"{chosen.plugin_id}/{chosen.type_id}", info.sample_rate, info.channels, raw, closer(session)
    )


def _open_source_track(item: str, runtime: Any) -> OpenedItem:
    from ..executor import decoder_candidates

    parts = item[len("source:") :].split(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise EngineError(f"{item!r}: expected source:PLUGIN_ID:TYPE_ID:TRACK_JSON")
    if runtime is None:
        raise EngineError("a source item needs the player's runtime")
    try:
        track = json.loads(parts[2])
    except ValueError as e:
        raise EngineError(f"{item!r}: track is not valid JSON: {e}") from e
    source = runtime.host.source(parts[0], parts[1])
    first = source.open_stream(track)
    opened = [first]

    def open_stream() -> Any:  # each decoder candidate gets a fresh stream
        return (opened.pop() if opened else source.open_stream(track)).stream

    ext = first.ext_hint
    candidates = decoder_candidates(runtime, ext, local_file=False) or list(runtime.all_decoders())
    return _open_with_plugin(item, runtime, candidates, open_stream, ext)


class Feeder:
    """The decode-ahead thread (see the module doc). ``render`` (a callable or None, read per
    piece) runs a chain on the feeder when the chain has component-path stages."""

    def __init__(
        self,
        core: Any,
        rate: int,
        channels: int,
        *,
        decoder: str,
        runtime: Any,
        driver_running: Callable[[], bool],
        emit: Callable[..., None],
    ):
        self.core, self.rate, self.channels = core, rate, channels
        self.decoder, self.runtime = decoder, runtime
        self._driver_running = driver_running
        self._emit = emit
        self.render: Optional[Callable[[np.ndarray], None]] = None
        self.reset_stages: Optional[Callable[[], None]] = None
        self.cond = threading.Condition()
        self.items: collections.deque[Any] = collections.deque()
        self.segments: list[Segment] = []
        self.playing = False
        self.idle = True  # no current item and nothing left to push
        self._cur: Optional[OpenedItem] = None
        self._cur_item: Any = None  # the queue item _cur was opened from
        self._iter: Optional[Iterator[np.ndarray]] = None
        self._block: Optional[np.ndarray] = None
        self._off = 0
        self._item_no = 0
        self._done_signalled = False
        self._commands: collections.deque[tuple[Callable[[], Any], dict[str, Any]]] = collections.deque()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="stellatune-player-feeder", daemon=True)
        self._thread.start()

    # --- control (any thread) ---------------------------------------------------------------

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the feeder thread between pushes; returns its result or raises its error."""
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return fn()
        box: dict[str, Any] = {"done": threading.Event()}
        with self.cond:
            self._commands.append((fn, box))
            self.cond.notify_all()
        if not box["done"].wait(timeout):
            raise EngineError("the player's feeder did not answer in time")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def close(self) -> None:
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30.0)
        self._close_current()

    # --- on the feeder thread ---------------------------------------------------------------

    def flush(self) -> None:
        """Fade out, drop what the ring holds and the piece in hand (driver acknowledges)."""
        gen = self.core.request_flush()
        if self._driver_running():
            deadline = time.monotonic() + 5.0
            while not self.core.flush_acked(gen):
                if time.monotonic() > deadline:
                    raise EngineError("the driver did not acknowledge a flush within 5 s")
                time.sleep(0.0005)
        else:
            self.core.flush_now()
        self._block = None

    def heard_segment(self) -> Optional[Segment]:
        """The segment the driver is playing now (None between items). The feeder may already be
        decoding a later item: the ring holds up to ``ring_frames`` ahead of what is heard."""
        consumed = self.core.consumed
        with self.cond:
            for seg in reversed(self.segments):
                if seg.start <= consumed:
                    if seg.end is not None and consumed >= seg.end and seg.end > seg.start:
                        return None  # between items: the last one has played out
                    return seg if seg.end != seg.start else None
        return None

    def _rewind_to(self, heard: Segment, *, reopen: bool) -> None:
        """After a flush: put the items decoded ahead of ``heard`` back at the front of the queue,
        and (``reopen``) open ``heard``'s item again; they keep their item numbers."""
        ahead: dict[int, Any] = {}
        with self.cond:
            for seg in self.segments:
                if heard.item_no < seg.item_no <= self._item_no and seg.item_no not in ahead:
                    ahead[seg.item_no] = seg.item
            self.items.extendleft(reversed([ahead[n] for n in sorted(ahead)]))
            # Never heard, all flushed: their segments go, so no event fires for them twice.
            self.segments = [seg for seg in self.segments if seg.item_no <= heard.item_no]
            if reopen and self.segments and self.segments[-1].end is None:
                self.segments[-1].end = self.core.pushed
        self._close_current()
        self._item_no = heard.item_no
        if reopen:
            self._cur = open_item(heard.item, self.decoder, self.runtime)
            self._cur_item = heard.item
            self._iter = self._cur.blocks(self.rate, self.channels)

    def _is_ahead(self, heard: Optional[Segment]) -> bool:
        return heard is not None and (heard.item_no != self._item_no or self._cur is None)

    def seek(self, seconds: float) -> bool:
        heard = self.heard_segment()
        if heard is None and self._cur is None:
            return False
        self.flush()
        if heard is not None and self._is_ahead(heard):
            self._rewind_to(heard, reopen=True)
        self._reopen_at(seconds)
        if self.reset_stages is not None:
            self.reset_stages()
        return True

    def _reopen_at(self, seconds: float) -> None:
        assert self._cur is not None
        self._cur.seek(seconds)
        self._iter = self._cur.blocks(self.rate, self.channels)
        with self.cond:
            if self.segments and self.segments[-1].end is None:
                self.segments[-1].end = self.core.pushed
            self.segments.append(
                Segment(
                    self.core.pushed,
                    self._item_no,
                    self._cur.label,
                    round(seconds * self.rate),
                    decoder=self._cur.decoder,
                    source_rate=self._cur.rate,
                    item=self._cur_item,
                )
            )

    def reposition(self, position: Callable[[], Optional[float]], between: Callable[[], None]) -> None:
        """Flush, run ``between`` (a chain swap) with no audio in flight, then decode on from
        where playback was: the same audio again, through the new chain."""
        at = position()
        heard = self.heard_segment()
        self.flush()
        between()
        if heard is not None and at is not None and self._is_ahead(heard):
            self._rewind_to(heard, reopen=True)
        if self._cur is not None and at is not None:
            self._reopen_at(at)

    def end_current(self, reason: str) -> None:
        """Skip/stop: flush and close the item being heard (the items decoded ahead of it go
        back to the queue)."""
        heard = self.heard_segment()
        self.flush()
        with self.cond:
            if self.segments and self.segments[-1].end is None:
                self.segments[-1].end = self.core.pushed
        if heard is not None and self._is_ahead(heard):
            self._rewind_to(heard, reopen=False)
        self._close_current()

    def _close_current(self) -> None:
        cur, self._cur, self._iter = self._cur, None, None
        if cur is not None:
            cur.close()

    def _run(self) -> None:
        while True:
            with self.cond:
                if self._closing:
                    return
                commands = list(self._commands)
                self._commands.clear()
            for fn, box in commands:
                try:
                    box["result"] = fn()
                except BaseException as e:  # noqa: BLE001 (re-raised by call())
                    box["error"] = e
                box["done"].set()
            if commands:
                continue
            if self._block is None and self.playing:
                got = self._next_block()
                if got is None:
                    continue  # an item ended: the next one opens at once (gapless)
            if not self.playing or self._block is None:
                self._starve()
                continue
            block = self._block
            assert block is not None
            n = self.core.try_push(block[self._off :])
            self._off += n
            if n and self._done_signalled:
                self.core.source_more()
                self._done_signalled = False
            if self._off >= len(block):
                self._block = None
            elif n == 0:
                with self.cond:
                    if not self._commands and not self._closing:
                        self.cond.wait(0.002)

    def _starve(self) -> None:
        """Nothing to push now: tell the driver (no underruns) and wait for work."""
        with self.cond:
            self.idle = self._cur is None and self._block is None
            if self.idle and not self._done_signalled:
                self.core.source_done()
                self._done_signalled = True
            if not self._commands and not self._closing:
                self.cond.wait(0.01)

    def _next_block(self) -> Optional[bool]:
        """Decode the next piece: True, False (nothing queued) or None (an item just ended)."""
        while self._cur is None:
            with self.cond:
                if not self.items:
                    return False
                item = self.items.popleft()
                self.idle = False
            try:
                self._cur = open_item(item, self.decoder, self.runtime)
                self._cur_item = item
                self._iter = self._cur.blocks(self.rate, self.channels)
            except Exception as e:  # noqa: BLE001 (a bad item is skipped, with an event)
                self._cur = None
                self._emit("track-error", item=item_label(item), error=f"{type(e).__name__}: {e}")
                continue
            self._item_no += 1
            with self.cond:
                self.segments.append(
                    Segment(
                        self.core.pushed,
                        self._item_no,
                        self._cur.label,
                        0,
                        decoder=self._cur.decoder,
                        source_rate=self._cur.rate,
                        item=item,
                    )
                )
        try:
            assert self._iter is not None
            block = next(self._iter)
        except StopIteration:
            block = None
        except Exception as e:  # noqa: BLE001 (a decode error ends the item, with an event)
            self._emit("track-error", item=self._cur.label, error=f"{type(e).__name__}: {e}")
            block = None
        if block is None:
            with self.cond:
                self.segments[-1].end = self.core.pushed
            self._close_current()
            return None
        if self.render is not None:
            self.render(block)
        self._block, self._off = block, 0
        return True
