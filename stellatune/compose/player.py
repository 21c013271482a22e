"""``stellatune.Player``: a long-lived player: a queue, transport, a live chain, events.

    with stellatune.Player(output="null") as player:
        player.set_chain(['dev.stellatune.example.gain:gain:{"gain_db": -6}'])
        player.enqueue("a.flac", "b.flac", (array, 48000))
        player.play()
        player.update_config(0, {"gain_db": -3})   # "hot-apply" | "recreate" | "reject"
        player.wait()

Threads (docs/player.md): control calls (any thread, serialised by one lock); the feeder
(decodes ahead, resamples, runs a component-path chain; seek/skip/stop run on it); the driver
(C: PortAudio callback or engine clock; pause, flush with fades, volume ramp and chain swaps
reach it through lock-free handoffs polled at block boundaries); a monitor thread (~20 ms:
track boundaries from the driver's frame counter, xruns, faults, disabled plugins) and the event
thread that runs callbacks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from ..engine import _core
from ..engine.playback import _pick_device
from ..errors import AudioDeviceError, EngineError, PluginError, RuntimeStateError, StellatuneError
from ..paths import default_plugins_dir
from . import checks
from .events import EventBus
from .livechain import Entry, LiveChain
from .outputs import FileWriter, OutputSpec, SinkOutput, negotiate_sink, open_sink, parse_output
from .pipeline import DspPlugin
from .queue import Feeder, item_label, open_item
from .stages import check_dsp

__all__ = ["Player"]

FADE_S = 0.005
VOLUME_TAU_S = 0.005
#: ``seek`` clamps here: past the end of any item (it ends the item), and safe as a frame count.
MAX_SEEK_S = 1e9
#: The loudest volume: +24 dB (x15.8) is already far past any sane gain; inf would be NaN.
MAX_VOLUME_DB = 24.0


class Player:
    """A long-lived player (see the module doc). ``output``: None (default PortAudio device),
    a device name or index, ``"null"``, ``"file:PATH.wav"``, ``"sink:ID:TYPE[:JSON]"`` (an
    output-sink plugin; docs/player.md); ``offline=True`` runs the engine
    clock of ``null``/``file:`` as fast as the feeder allows (deterministic output).
    ``sample_rate``: the output rate (default: the first item's); ``channels`` likewise
    (default: the first item's, at least 2). ``decoder``: ``auto``, ``builtin`` or ``plugin``.
    ``ring_frames`` (a power of two) is how far decoding runs ahead. ``crossfade_ms``: the
    equal-power fade of a recreated hot-path stage; ``drain_timeout_s``: how long the end of the
    queue waits for a sink's DRAINED."""

    def __init__(
        self,
        plugins_dir: Union[str, Path, None] = None,
        *,
        output: Union[str, int, None] = None,
        frames: int = 128,
        sample_rate: Optional[int] = None,
        runtime: Any = None,
        channels: Optional[int] = None,
        decoder: str = "auto",
        ring_frames: int = 8192,
        offline: bool = False,
        crossfade_ms: float = 10.0,
        drain_timeout_s: float = 2.0,
    ):
        self._out: OutputSpec = parse_output(output)
        if crossfade_ms < 0 or drain_timeout_s < 0:
            raise EngineError("crossfade_ms and drain_timeout_s must be >= 0")
        self.crossfade_ms, self.drain_timeout_s = float(crossfade_ms), float(drain_timeout_s)
        if offline and not self._out.uses_clock:
            raise EngineError("offline=True needs a null or file: output")
        frames = checks.positive_int(frames, "frames")
        ring_frames = checks.positive_int(ring_frames, "ring_frames")
        if ring_frames & (ring_frames - 1) or ring_frames < 4 * frames:
            raise EngineError(f"ring_frames must be a power of two >= {4 * frames}")
        self.frames, self.ring_frames, self.offline = frames, ring_frames, offline
        self._rate_opt = None if sample_rate is None else checks.sample_rate(sample_rate)
        self._channels_opt = None if channels is None else checks.channel_count(channels)
        self.decoder = checks.decoder_mode(decoder)
        self._owns_runtime = runtime is None
        if runtime is None:
            from ..executor import ComponentExecutor
            from ..runtime import WasmPluginRuntime

            runtime = WasmPluginRuntime(
                Path(plugins_dir) if plugins_dir else default_plugins_dir(), ComponentExecutor()
            )
            runtime.sync_plugins()
        self.runtime = runtime
        self._lock = threading.RLock()
        self._events = EventBus()
        self._items: list[Any] = []  # queued before the engine started
        self._specs: list[tuple[str, bool]] = []  # the chain before the engine started
        self._volume_db = 0.0
        self._state = "stopped"
        self._closed = False
        self.sample_rate: Optional[int] = None
        self.channels: Optional[int] = None
        self._core: Any = None
        self._feeder: Optional[Feeder] = None
        self._live: Optional[LiveChain] = None
        self._writer: Optional[FileWriter] = None
        self._driver = False
        self._uses_pa = False
        self._monitor: Optional[threading.Thread] = None
        self._stop_monitor = threading.Event()
        self._sink: Optional[SinkOutput] = None
        self._drain_lock = threading.Lock()
        self._drained_at = -1  # core.pushed when the sink last drained and flushed
        self._drain_since: Optional[float] = None
        self._drain_timeouts = 0
        # Reloads: the runtime says Rebuild when a plugin is activated again (new files, grants);
        # the callback only notes it (it runs on the syncing thread), the monitor swaps the stage.
        self._directive_subs: dict[str, Callable[[], None]] = {}
        self._rebuild_pending: set[str] = set()
        self._rebuild_lock = threading.Lock()

    # --- the queue --------------------------------------------------------------------------

    def enqueue(self, *items: Any) -> None:
        with self._lock:
            self._check_open()
            if self._feeder is None:
                self._items.extend(items)
                return
            with self._feeder.cond:
                self._feeder.items.extend(items)
                self._feeder.cond.notify_all()

    def clear_queue(self) -> None:
        with self._lock:
            self._items.clear()
            if self._feeder is not None:
                with self._feeder.cond:
                    self._feeder.items.clear()

    def queue(self) -> list[str]:
        with self._lock:
            items = list(self._feeder.items) if self._feeder is not None else list(self._items)
        return [item_label(i) for i in items]

    # --- transport --------------------------------------------------------------------------

    def play(self) -> None:
        """Start (or resume) playing the queue."""
        with self._lock:
            self._check_open()
            if self._feeder is None:
                self._start()
            assert self._feeder is not None
            with self._feeder.cond:
                self._feeder.playing = True
                self._feeder.cond.notify_all()
            self._core.pause(False)
            self._state = "playing"

    def pause(self) -> None:
        with self._lock:
            if self._core is not None and self._state == "playing":
                self._core.pause(True)  # the driver fades out, then plays silence
                self._state = "paused"

    def resume(self) -> None:
        with self._lock:
            if self._state == "paused":
                self._core.pause(False)
                self._state = "playing"

    def stop(self) -> None:
        """End the current item (the rest of the queue stays; ``play()`` goes on with it)."""
        with self._lock:
            if self._feeder is None or self._closed:
                return
            feeder = self._feeder

            def stop() -> None:
                feeder.playing = False
                feeder.end_current("stopped")

            feeder.call(stop)
            self._state = "stopped"

    def skip(self) -> None:
        """End the current item now; the next one plays."""
        with self._lock:
            if self._feeder is not None:
                feeder = self._feeder
                feeder.call(lambda: feeder.end_current("skipped"))

    def seek(self, seconds: float) -> bool:
        """Reposition the current item; False when nothing is playing. A position past the
        item's end ends it; ``ValueError`` for a NaN or infinite one."""
        seconds = float(seconds)
        if not math.isfinite(seconds):
            raise ValueError(f"cannot seek to {seconds}")
        seconds = min(max(0.0, seconds), MAX_SEEK_S)
        with self._lock:
            if self._feeder is None:
                return False
            feeder = self._feeder
            done = feeder.call(lambda: feeder.seek(seconds))
            if done:
                self._events.emit("seeked", position=float(seconds))
            return bool(done)

    def position(self) -> Optional[float]:
        """Seconds into the current item, from the frames the driver has taken."""
        seg = self._segment()
        if seg is None:
            return None
        consumed = self._core.consumed
        end = seg.end if seg.end is not None else consumed
        return (seg.offset + min(consumed, end) - seg.start) / self.sample_rate

    def current(self) -> Optional[str]:
        seg = self._segment()
        return None if seg is None else seg.label

    def _segment(self) -> Any:
        feeder = self._feeder
        return feeder.heard_segment() if feeder is not None else None

    @property
    def volume_db(self) -> float:
        return self._volume_db

    @volume_db.setter
    def volume_db(self, db: float) -> None:
        """Any finite level up to +24 dB (far below -120 dB is silence); ``ValueError`` else."""
        db = float(db)
        if not math.isfinite(db) or db > MAX_VOLUME_DB:
            raise ValueError(f"volume {db} dB: must be finite and at most {MAX_VOLUME_DB:g} dB")
        with self._lock:
            self._volume_db = db
            if self._core is not None:
                self._core.set_gain(10.0 ** (self._volume_db / 20.0))  # ramped per sample in C

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the queue has played out; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._played_out():
            if self._closed:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _played_out(self) -> bool:
        feeder = self._feeder
        if feeder is None:
            return not self._items
        with feeder.cond:
            idle = feeder.idle and not feeder.items and not feeder._commands
        return idle and self._core.consumed >= self._core.pushed and self._sink_settled()

    def _sink_settled(self) -> bool:
        """A sink: nothing kept, DRAINED reported (bounded by ``drain_timeout_s``) and flushed,
        once per end of the stream (keyed by the frames pushed so far)."""
        out = self._sink
        if out is None:
            return True
        with self._drain_lock:
            pushed = self._core.pushed
            if self._drained_at == pushed:
                return True
            if out.stage.route != "component":
                chain = self._core.chain
                if chain.sink_pending and out.stage.fault is None:
                    return False  # frames the sink still has to take (offered every tick)
                if not chain.sinks_drained:
                    now = time.monotonic()
                    if self._drain_since is None:
                        self._drain_since = now
                    if now - self._drain_since < self.drain_timeout_s:
                        return False
                    self._drain_timeouts += 1
            self._drain_since = None
            try:
                out.session.flush()
            except Exception as e:  # noqa: BLE001 (reported; the queue has still played out)
                self._events.emit("sink-error", error=f"flush: {type(e).__name__}: {e}")
            self._drained_at = pushed
            return True

    # --- the chain --------------------------------------------------------------------------

    def set_chain(self, specs: Iterable[Any]) -> None:
        with self._lock:
            self._check_open()
            specs = [s if isinstance(s, DspPlugin) else DspPlugin.parse(s) for s in specs]
            if self._live is None:
                for s in specs:  # refused now, not at the next play()
                    self._validate_stage(s.plugin_id, s.type_id, s.config)
                self._specs = [(_spec_text(s), False) for s in specs]
                return
            keep = list(self._live.entries)
            built = []
            try:
                for s in specs:
                    built.append(self._live.build(s))
                self._live.commit(built)
            except BaseException:
                for e in built:
                    e.stage.close()
                raise
            del keep

    def insert_stage(self, index: int, spec: Any) -> None:
        with self._lock:
            self._check_open()
            index = self._index(index, insert=True)
            if self._live is None:
                parsed = spec if isinstance(spec, DspPlugin) else DspPlugin.parse(spec)
                self._validate_stage(parsed.plugin_id, parsed.type_id, parsed.config)
                self._specs.insert(index, (_spec_text(parsed), False))
                return
            entry = self._live.build(spec)
            entries = list(self._live.entries)
            entries.insert(index, entry)
            try:
                self._live.commit(entries)
            except BaseException:
                entry.stage.close()
                raise

    def remove_stage(self, index: int) -> None:
        with self._lock:
            self._check_open()
            index = self._index(index)
            if self._live is None:
                del self._specs[index]
                return
            entries = list(self._live.entries)
            del entries[index]
            self._live.commit(entries)

    def move_stage(self, src: int, dst: int) -> None:
        with self._lock:
            self._check_open()
            src, dst = self._index(src), self._index(dst)
            seq: list[Any] = list(self._live.entries) if self._live is not None else self._specs
            seq.insert(dst, seq.pop(src))
            if self._live is not None:
                self._live.commit(seq)

    def bypass(self, index: int, on: bool = True) -> None:
        with self._lock:
            self._check_open()
            index = self._index(index)
            if self._live is None:
                self._specs[index] = (self._specs[index][0], bool(on))
                return
            e = self._live.entries[index]
            e.stage.bypass(bool(on))
            e.bypassed = bool(on)

    def chain(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._live is None:
                return [{"spec": s, "bypassed": b} for s, b in self._specs]
            return [_entry_status(e) for e in self._live.entries]

    def update_config(self, index: int, config: Any) -> str:
        """Follow the plugin's plan: ``"hot-apply"``, ``"recreate"`` or ``"reject"``."""
        from .stages import parse_config

        changes = parse_config(config, "config")
        with self._lock:
            self._check_open()
            index = self._index(index)
            if self._live is None:
                # Checked as a playing stage's plan would: a config the plugin refuses is a reject.
                p = DspPlugin.parse(self._specs[index][0])
                merged = {**p.config, **changes}
                try:
                    self._validate_stage(p.plugin_id, p.type_id, merged)
                except PluginError as e:
                    self._events.emit("config-rejected", index=index, spec=self._specs[index][0], reason=str(e))
                    return "reject"
                self._specs[index] = (_spec_text(DspPlugin(p.plugin_id, p.type_id, merged)), self._specs[index][1])
                return "recreate"
            return self._live.update_config(index, changes)

    # --- observing --------------------------------------------------------------------------

    def subscribe(
        self, callback: Callable[[dict[str, Any]], object], kinds: Optional[Iterable[str]] = None
    ) -> Callable[[], None]:
        return self._events.subscribe(callback, kinds)

    def status(self) -> dict[str, Any]:
        with self._lock:
            counters: dict[str, Any] = {"xruns": 0, "ring_underruns": 0, "frames_played": 0, "chain_swaps": 0}
            if self._core is not None:
                c = self._core.counters()
                counters = {
                    "xruns": c["device_underflows"],
                    "ring_underruns": c["ring_underruns"],
                    "frames_played": c["frames_played"],
                    "callbacks": c["callbacks"],
                    "chain_swaps": self._live.swaps if self._live else 0,
                    "output_dropped_frames": self._core.output_dropped,
                }
            queue_len = len(self._feeder.items) if self._feeder is not None else len(self._items)
            return {
                "state": self._state,
                "current": self.current(),
                "position": self.position(),
                "queue_length": queue_len,
                "sample_rate": self.sample_rate,
                "channels": self.channels,
                "output": self._out.kind,
                "volume_db": self._volume_db,
                "chain_thread": (("feeder" if self._live.on_feeder else "driver") if self._live else None),
                "chain": self.chain(),
                "counters": counters,
                "sink": self._sink_status(),
            }

    def _sink_status(self) -> Optional[dict[str, Any]]:
        out = self._sink
        if out is None:
            return None
        st = out.stage.stats()
        fault = out.stage.fault
        hot = out.stage.route != "component" and self._core is not None
        return {
            "plugin": f"{out.spec.plugin_id}/{out.spec.type_id}",
            "target": out.target,
            "route": out.stage.route,
            "fallback_reason": out.stage.fallback_reason,
            "sample_rate": out.sample_rate,
            "channels": out.channels,
            "chunk_frames": out.chunk_frames,
            "frames_taken": st.sink_frames,
            "frames_offered_again": st.short_frames,
            "frames_dropped": st.dropped_frames,
            "pending_frames": self._core.chain.sink_pending if hot else 0,
            "drained": bool(self._core.chain.sinks_drained) if hot else None,
            "drain_timeouts": self._drain_timeouts,
            "waits": self._core.sink_waits if self._core is not None else 0,
            "fault": None if fault is None else {"kind": fault.kind, "message": fault.message},
        }

    def stage_timings(self) -> list[dict[str, Any]]:
        """Each live chain stage's raw process-time counters: ``{index, spec, route, timing}``,
        ``timing`` as ``CoreStage.timing()`` returns it (calls, total_ns, min_ns, max_ns, the
        log-bucket histogram ``hist``, 4 buckets per octave of ns; see engine/stats.py). Read-only
        and cheap: a copy of the C counters, never a call into the audio thread. Empty before
        playback starts."""
        with self._lock:
            entries = list(self._live.entries) if self._live is not None else []
        out = []
        for i, e in enumerate(entries):
            timing = getattr(e.stage, "timing", None)
            if timing is None:
                continue
            out.append({"index": i, "spec": e.spec, "route": e.stage.route, "timing": timing()})
        return out

    def stage_memory(self) -> list[dict[str, Any]]:
        """The linear memory of each live stage: ``{index, plugin_id, spec, route,
        linear_memory_bytes, memory_limit_bytes}``, the chain's stages in order, then a ``sink:``
        output's stage (``index`` None). A hot-path wasm stage reports its own store exactly (the
        size ``init`` left, which cannot change while it runs: a ``memory.grow`` faults it); a
        native or component-path stage reports None for both (a component's memory is in its
        component instance, not readable from the host). Read from the stage objects, never
        from a store the audio thread runs. Empty before playback starts."""
        with self._lock:
            entries = list(self._live.entries) if self._live is not None else []
            sink = self._sink
        rows = [_memory_row(i, e.plugin_id, e.spec, e.stage) for i, e in enumerate(entries)]
        if sink is not None:
            rows.append(
                _memory_row(None, sink.spec.plugin_id, f"{sink.spec.plugin_id}:{sink.spec.type_id}", sink.stage)
            )
        return rows

    def counters(self) -> dict[str, Any]:
        """The driver's raw counters (callbacks, frames_played, ring_underruns, ...)."""
        return self._core.counters() if self._core is not None else {}

    # --- lifetime ---------------------------------------------------------------------------

    def _start(self) -> None:
        """Build the engine for the queue and start it. On failure everything built is closed
        and the player is as before (stopped, its queue kept), so a later ``play()`` starts
        afresh: a failed start never leaves a half-built player that says "playing"."""
        items = self._items
        if not items and self._rate_opt is None:
            raise EngineError("nothing to play: enqueue an item first (or give sample_rate)")
        rate, channels = self._rate_opt, self._channels_opt
        if items and (rate is None or channels is None):
            first = self._open_first_playable(items)
            first.close()
            rate = rate or first.rate
            channels = channels or max(2, first.channels)
        assert rate is not None  # an item gave one, or sample_rate did (checked above)
        queued = list(items)
        try:
            self._build(int(rate), int(channels or 2))
        except BaseException:
            try:
                self._shutdown()
            finally:
                self._core = self._feeder = self._live = self._sink = None
                self._writer, self._driver = None, False
                self._items = queued
                self._state = "stopped"
            raise

    def _open_first_playable(self, items: list[Any]) -> Any:
        """Open the first item that opens (for the stream's rate and channels). Items before it
        leave the queue with a ``track-error``, as the feeder drops one later in the queue; when
        none opens, the last error is raised with the queue now empty."""
        while True:
            try:
                return open_item(items[0], self.decoder, self.runtime)
            except Exception as e:  # any item's failure: reported, then the next one is tried
                bad = items.pop(0)
                self._events.emit("track-error", item=item_label(bad), error=f"{type(e).__name__}: {e}")
                if not items:
                    raise

    def _build(self, rate: int, channels: int) -> None:
        items = self._items
        chunk = 0
        if self._out.kind == "sink":
            # The original's order: targets, negotiate (the sink may want another rate or
            # chunk size: the feeder resamples to its rate, blocks never exceed its chunk), open.
            rate, channels, chunk = negotiate_sink(self.runtime, self._out, rate, channels)
            if 0 < chunk < self.frames:
                self.frames = chunk
        self.sample_rate, self.channels = rate, channels
        core = _core.Player(
            _core.Chain([], channels, self.frames), self.ring_frames, channels, self.frames, float(rate), True
        )
        out_frames = 1 << max(14, math.ceil(math.log2(rate))) if self._out.kind == "file" else 0
        core.setup_live(
            max(1, round(FADE_S * rate)),
            1.0 - math.exp(-1.0 / (VOLUME_TAU_S * rate)),
            0 if self.offline else min(self.ring_frames // 2, max(4 * self.frames, 4096)),
            self.offline,
            out_frames,
        )
        core.set_gain(10.0 ** (self._volume_db / 20.0), immediate=True)  # no ramp from unity
        self._core = core
        feeder = Feeder(
            core,
            rate,
            channels,
            decoder=self.decoder,
            runtime=self.runtime,
            driver_running=lambda: self._driver,
            emit=self._events.emit,
        )
        feeder.items.extend(items)
        self._items = []
        self._feeder = feeder
        live = LiveChain(
            self.runtime,
            core,
            feeder,
            rate,
            channels,
            self.frames,
            driver_running=lambda: self._driver,
            position=self.position,
            emit=self._events.emit,
        )
        feeder.reset_stages = live.reset
        live.crossfade_ms = self.crossfade_ms
        self._live = live
        entries: list[Entry] = []
        try:
            if self._out.kind == "sink":
                self._sink = open_sink(self.runtime, self._out, rate, channels, chunk)
                live.sink = self._sink.stage
                if self._sink.stage.route == "component":
                    self._sink.stage.offer_wait = self._sink_wait
                else:
                    core.ramp_first = True  # volume and fades reach the sink (last in the chain)
            for spec, bypassed in self._specs:
                entries.append(live.build(spec))
                if bypassed:
                    entries[-1].stage.bypass(True)
                    entries[-1].bypassed = True
            live.start(entries)
            self._start_driver()
        except BaseException:
            for e in entries:
                if e not in live.entries:
                    e.stage.close()
            raise  # _start shuts down the rest
        self._monitor = threading.Thread(target=self._watch, name="stellatune-player-monitor", daemon=True)
        self._monitor.start()

    def _sink_wait(self) -> bool:
        """Between offers of what a component-path sink did not take: one engine-clock period
        (offline: a short pause); False once the player closes (the rest is dropped)."""
        feeder = self._feeder
        if self._closed or feeder is None or feeder._closing:
            return False
        time.sleep(0.0005 if self.offline else self.frames / float(self.sample_rate or 48000))
        return True

    def _start_driver(self) -> None:
        core, out = self._core, self._out
        if out.kind == "device":
            _core.pa_initialize()  # PortAudioError is an AudioDeviceError
            self._uses_pa = True
            try:
                info = _pick_device(out.device, self.channels or 2)
                core.open_device(info["index"], -1, 0, 0, info["default_low_output_latency"])
            except _core.PortAudioError as e:
                raise AudioDeviceError(f"cannot open {out.device or 'the default device'}: {e}", e.code) from e
            self._prefill()
            core.start_device()
        else:
            if out.kind == "file":
                assert out.path is not None
                self._writer = FileWriter(out.path, self.sample_rate or 0, self.channels or 2, core.read_output)
            self._prefill()
            core.start_clock()
        self._driver = True

    def _prefill(self) -> None:
        """Let the feeder fill half the ring first, so the first blocks find audio (bounded: a
        slow decoder still starts; the feeder signals an empty queue as the end of the source)."""
        feeder, core = self._feeder, self._core
        assert feeder is not None
        with feeder.cond:
            feeder.playing = True
            feeder.idle = False
            feeder.cond.notify_all()
        deadline = time.monotonic() + 5.0
        while core.buffered < self.ring_frames // 2 and time.monotonic() < deadline:
            with feeder.cond:
                if feeder.idle:
                    break
            time.sleep(0.001)

    def _watch(self) -> None:
        """Every ~20 ms: track boundaries, queue-empty, xruns, stage faults, disabled plugins."""
        started = ended = 0
        empty_sent = True
        xruns = underruns = 0
        faults: set[int] = set()
        last = False
        while not last:
            last = self._stop_monitor.wait(0.02)  # one more pass after close() asked to stop
            feeder, core = self._feeder, self._core
            if feeder is None or core is None:
                continue
            consumed = core.consumed
            with feeder.cond:
                segs = list(feeder.segments)
            first_of: dict[int, Any] = {}
            last_of: dict[int, Any] = {}
            for seg in segs:
                first_of.setdefault(seg.item_no, seg)
                last_of[seg.item_no] = seg
            newest = segs[-1].item_no if segs else 0
            for no in sorted(first_of):  # in item order: started k, ended k, started k+1, ...
                first, final = first_of[no], last_of[no]
                if no > started and consumed >= first.start and first.end != first.start:
                    started = no
                    empty_sent = False
                    self._events.emit(
                        "track-started",
                        item=first.label,
                        item_no=no,
                        decoder=first.decoder,
                        source_rate=first.source_rate,
                        rate=self.sample_rate,
                    )
                if (
                    no > ended
                    and no <= started
                    and final.end is not None
                    and consumed >= final.end
                    and (no < newest or feeder._cur is None)
                ):
                    ended = no
                    self._events.emit("track-ended", item=final.label, item_no=no)
            if not empty_sent and ended == started and self._played_out():
                empty_sent = True
                self._events.emit("queue-empty")
            c = core.counters()
            if c["device_underflows"] > xruns or c["ring_underruns"] > underruns:
                xruns, underruns = c["device_underflows"], c["ring_underruns"]
                self._events.emit("xrun", device_underflows=xruns, ring_underruns=underruns)
            if not last:
                self._check_stages(faults)

    def _check_stages(self, faults: set[int]) -> None:
        live = self._live
        if live is None or not self._lock.acquire(timeout=0.05):
            return
        try:
            if self._closed:
                return
            live.finish_fades()  # a recreate's crossfade done: drop the old stage
            self._follow_reloads(live)
            gone = []
            seq = getattr(self.runtime, "operation_seq", 0)
            for i, e in enumerate(live.entries):
                fault = e.stage.fault
                if fault is not None and id(e.stage) not in faults:
                    faults.add(id(e.stage))
                    self._events.emit(
                        "stage-fault",
                        index=i,
                        spec=e.spec,
                        fault=fault.kind,
                        message=fault.message,
                        code=fault.code,
                        block=fault.block,
                    )
                if not self.runtime.is_active(e.plugin_id):
                    gone.append(e)
            if seq % 2 or getattr(self.runtime, "operation_seq", 0) != seq:
                # A runtime operation ran meanwhile: a sync reloading a plugin deactivates it for
                # a moment (its Rebuild directive follows). Only what is inactive outside any
                # operation is gone; the next pass looks again.
                gone = []
            if gone:  # disabled or unloaded underneath: drop the stage, keep playing
                live.commit([e for e in live.entries if e not in gone])
                for e in gone:
                    self._events.emit("stage-removed", spec=e.spec, reason="plugin is no longer active")
        finally:
            self._lock.release()

    def _follow_reloads(self, live: LiveChain) -> None:
        """Listen for the chain's plugins being rebuilt, and swap in a stage of the new version
        for each one that was (a hot-path stage otherwise keeps running the old module)."""
        for pid in {e.plugin_id for e in live.entries} - set(self._directive_subs):
            if hasattr(self.runtime, "subscribe_plugin"):
                self._directive_subs[pid] = self.runtime.subscribe_plugin(pid, self._on_directive)
        with self._rebuild_lock:
            pending, self._rebuild_pending = self._rebuild_pending, set()
        stale = [e for e in live.entries if e.plugin_id in pending and self.runtime.is_active(e.plugin_id)]
        if not stale:
            return
        fresh: dict[int, Any] = {}
        for e in stale:
            try:
                fresh[id(e)] = live.build(e.spec)
            except StellatuneError as err:  # the new version refuses: the old stage goes
                self._events.emit("stage-removed", spec=e.spec, reason=f"reloaded plugin failed: {err}")
        live.commit([fresh.get(id(e), e) for e in live.entries if e not in stale or id(e) in fresh])
        for e in stale:
            if id(e) in fresh:
                self._events.emit("stage-reloaded", spec=e.spec, route=fresh[id(e)].stage.route)

    def _on_directive(self, plugin_id: str, directive: Any) -> None:
        if getattr(directive.kind, "value", directive.kind) == "rebuild":
            with self._rebuild_lock:
                self._rebuild_pending.add(plugin_id)

    def close(self) -> None:
        """Stop everything and release the device, stages and (if opened here) the runtime.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop_monitor.set()
        if self._monitor is not None:
            self._monitor.join(timeout=10.0)
        for unsubscribe in self._directive_subs.values():
            unsubscribe()
        self._directive_subs.clear()
        with self._lock:
            self._shutdown()
            self._events.close()
            if self._owns_runtime:
                self.runtime.shutdown()

    def _shutdown(self) -> None:
        core = self._core
        if core is not None:
            core.request_stop()
        if self._feeder is not None:
            self._feeder.close()
        err = None
        if core is not None:
            try:
                core.close()
            except _core.PortAudioError as e:
                err = e
            self._driver = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._uses_pa:
            _core.pa_terminate()
            self._uses_pa = False
        if self._live is not None:
            self._live.close()
        self._state = "closed"
        if err is not None:
            raise AudioDeviceError(str(err), err.code) from err

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeStateError("the player is closed")

    def _validate_stage(self, plugin_id: str, type_id: str, config: Mapping[str, Any]) -> None:
        """A chain edit before playback: raise as building that stage would (``check_dsp``)."""
        check_dsp(self.runtime, self.runtime.host, plugin_id, type_id, dict(config))

    def _index(self, index: Any, *, insert: bool = False) -> int:
        """A stage index of the chain as it is: 0..n-1 (0..n to insert); no negative ones."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise EngineError(f"a stage index is an int, not {type(index).__name__}")
        n = len(self._live.entries) if self._live is not None else len(self._specs)
        if not 0 <= index <= (n if insert else n - 1):
            raise IndexError(f"stage index {index} out of range (the chain has {n} stage(s))")
        return index

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Player {self._out.kind} {self._state}>"


def _spec_text(p: DspPlugin) -> str:
    import json

    return f"{p.plugin_id}:{p.type_id}:{json.dumps(dict(p.config), sort_keys=True)}"


def _entry_status(e: Entry) -> dict[str, Any]:
    st = e.stage.stats()
    fault = e.stage.fault
    return {
        "spec": e.spec,
        "route": e.stage.route,
        "bypassed": e.bypassed,
        "fault": None if fault is None else {"kind": fault.kind, "message": fault.message},
        "p50_us": st.p50_us,
        "p99_us": st.p99_us,
        # Blocks skipped because a call overran its deadline without (yet) faulting the stage.
        "timeouts": st.timeouts,
        "linear_memory_bytes": getattr(e.stage, "memory_bytes", None),
    }


def _memory_row(index: Optional[int], plugin_id: str, spec: str, stage: Any) -> dict[str, Any]:
    return {
        "index": index,
        "plugin_id": plugin_id,
        "spec": spec,
        "route": stage.route,
        # Only HotPathStage has these; a ComponentStage's memory is its component instance's.
        "linear_memory_bytes": getattr(stage, "memory_bytes", None),
        "memory_limit_bytes": getattr(stage, "memory_limit_bytes", None),
    }
