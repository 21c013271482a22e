"""Typed handles for the five capabilities; each call goes to a guest through its instance's lock.

Instance model: source, lyrics and the output sink's control calls (targets, negotiation) use one
long-lived *control instance* per capability, rebuilt only after a trap. Decoder sessions, DSP
processors and opened sink sessions each get their own instance, torn down when closed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Self, Union, cast

import numpy as np
import numpy.typing as npt
from wasmtime.component import ResourceAny, Variant

from ..abi import CoreModuleSpec
from ..errors import PluginContractError, PluginError, PluginErrorCode, StellatuneError
from ..host.stream import HostStream
from .active import ActivePlugin
from .boundary import MAX_CHANNELS, Boundary
from .descriptors import CapabilityInfo
from .imports import HOST_STREAM_TYPE
from .instance import GuestResource, PluginInstance
from .slot import ResourceSlot
from .values import (
    AudioSpec,
    ConfigUpdateMode,
    ConfigUpdatePlan,
    DecoderInfo,
    LyricCandidate,
    MediaMetadata,
    NegotiatedSpec,
    RuntimeStatus,
    core_module_spec_from,
    field_of,
)

__all__ = [
    "DecoderCapability",
    "DecoderSession",
    "PcmChunk",
    "SourceCapability",
    "OpenedStream",
    "ProcessedSourceStream",
    "LyricsCapability",
    "OutputSinkCapability",
    "OutputSinkSession",
    "DspCapability",
    "DspProcessor",
]

# `Any` below is a component value wasmtime-py returns untyped (a guest call's result, a record
# field) before the checks of .values/.boundary turn it into our types, or a parsed JSON value.

SOURCE_READ_CHUNK = 64 * 1024
#: Reads in a row that return no audio and no end: a decoder that never finishes is refused.
MAX_EMPTY_READS = 64


def _json_text(value: Union[str, dict[str, Any], list[Any]]) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Capability:
    """Common part: the plugin record and the ability's descriptor."""

    kind: ClassVar[str]
    interface: ClassVar[str]

    def __init__(self, plugin: ActivePlugin, descriptor: CapabilityInfo):
        self._plugin = plugin
        self.descriptor = descriptor
        self.plugin_id: str = plugin.plugin_id
        self.type_id: str = descriptor.type_id
        self.check = Boundary(plugin.plugin_id, self.kind)
        """The checks every value this plugin returns goes through (stellatune.executor.boundary)."""

    @property
    def default_config_json(self) -> str:
        return getattr(self.descriptor, "default_config_json", None) or "{}"

    def _spawn(self) -> PluginInstance:
        return self._plugin.spawn(self.descriptor.component_id)

    def _build(
        self,
        create: Callable[[PluginInstance], GuestResource],
        config_json: str,
        after: Optional[Callable[[GuestResource], None]] = None,
    ) -> GuestResource:
        """Spawn an instance, make the resource, apply the config; retire the instance on failure."""
        instance = self._spawn()
        try:
            res = create(instance)
            res.call("apply-config-update-json", config_json)
            if after is not None:
                after(res)
            return res
        except BaseException:
            self._plugin.retire(instance)
            raise


class _Configurable:
    """The config quartet of anything backed by a :class:`ResourceSlot`."""

    _slot: ResourceSlot

    @property
    def config_json(self) -> str:
        return self._slot.config_json

    def plan_config(self, new_config: Union[str, dict[str, Any]]) -> ConfigUpdatePlan:
        """Ask the plugin what applying ``new_config`` (JSON text or a dict) would take."""
        return self._slot.plan_config(_json_text(new_config))

    def apply_config(self, new_config: Union[str, dict[str, Any]]) -> None:
        """Apply without planning (the plugin may still refuse with an error)."""
        self._slot.apply_config(_json_text(new_config))

    def export_state(self) -> Optional[str]:
        return self._slot.export_state()

    def import_state(self, state_json: str) -> None:
        self._slot.import_state(state_json)

    def update_config(self, new_config: Union[str, dict[str, Any]]) -> ConfigUpdateMode:
        """Plan, then hot-apply / recreate with state carried over / reject (ConfigRejected)."""
        return self._slot.update_config(_json_text(new_config))

    def close(self) -> None:
        """Close the guest resource and tear its instance down."""
        self._slot.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- decoder --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PcmChunk:
    """Decoded audio: ``frames`` is float32 with shape (frame count, channels)."""

    frames: npt.NDArray[np.float32]
    eof: bool


class DecoderCapability(_Capability):
    """A decoder ability. Each :meth:`open` is a session with its own instance."""

    kind = "decoder"
    interface = "decoder"

    def open(
        self, stream: HostStream, ext_hint: Optional[str] = None, config_json: Optional[str] = None
    ) -> DecoderSession:
        """Open a session reading ``stream`` (the session owns and closes it).

        A session cannot be recreated for a config change (its stream is consumed): when the
        plugin plans ``recreate``, ``update_config`` raises and the caller opens a new session.
        """

        def build(config: str) -> GuestResource:
            def create(instance: PluginInstance) -> GuestResource:
                handle = instance.imports.insert(HOST_STREAM_TYPE, stream)
                raw = instance.call(self.interface, "open", handle, ext_hint)
                return instance.adopt(raw, self.interface, "session")

            return self._build(create, config)

        try:
            slot = ResourceSlot(
                self._plugin, build, config_json or self.default_config_json, lazy=False, recreatable=False
            )
        except BaseException:
            # The session owned the stream from the call on: if the instance never started, its
            # teardown did not close it (closing is idempotent when it did).
            stream.close()
            raise
        return DecoderSession(self, slot)


class DecoderSession(_Configurable):
    """An open decoder session."""

    def __init__(self, capability: DecoderCapability, slot: ResourceSlot):
        self.capability = capability
        self._slot = slot
        self._info: Optional[DecoderInfo] = None

    def info(self) -> DecoderInfo:
        self._info = DecoderInfo.from_wit(self._slot.call("info"), self.capability.check)
        return self._info

    def metadata(self) -> MediaMetadata:
        return MediaMetadata.from_wit(self._slot.call("metadata"), self.capability.check)

    def read_pcm_f32(self, max_frames: int = 1024) -> PcmChunk:
        """Up to ``max_frames`` frames; an empty chunk with ``eof`` ends the stream."""
        channels = (self._info or self.info()).channels
        chunk = self._slot.call("read-pcm-f32", max_frames)
        frames = self.capability.check.frames("pcm-chunk.frames", field_of(chunk, "frames"), max_frames)
        data = bytes(field_of(chunk, "interleaved_f32le"))
        if len(data) != frames * channels * 4:
            raise PluginContractError(
                "pcm-chunk.interleaved-f32le",
                f"holds {len(data)} bytes, not {frames} frames x {channels} channels",
                plugin_id=self.capability.plugin_id,
                capability="decoder",
            )
        pcm = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(frames, channels)
        return PcmChunk(pcm, bool(field_of(chunk, "eof")))

    def seek_ms(self, position_ms: int) -> None:
        self._slot.call("seek-ms", position_ms)

    def pcm_blocks(self, block_frames: int = 2048) -> Iterator[npt.NDArray[np.float32]]:
        """Every remaining frame, as float32 (frames, channels) blocks of at most ``block_frames``.

        The one decode loop (``stellatune decode``, plugin-decoded playback): it ends at the
        chunk that says ``eof``. An empty chunk without ``eof`` is allowed (a decoder may need
        several reads to produce audio), but :data:`MAX_EMPTY_READS` of them in a row is a
        decoder that never finishes: ``PluginContractError``.
        """
        empty = 0
        while True:
            chunk = self.read_pcm_f32(block_frames)
            if len(chunk.frames):
                empty = 0
                yield chunk.frames
            elif not chunk.eof:
                empty += 1
                if empty >= MAX_EMPTY_READS:
                    raise PluginContractError(
                        "read-pcm-f32",
                        f"returned no audio {empty} times without ending the stream",
                        plugin_id=self.capability.plugin_id,
                        capability="decoder",
                    )
            if chunk.eof:
                return


# --- source ---------------------------------------------------------------------------------


@dataclass
class OpenedStream:
    """What a source opened: ``stream`` reads the bytes either way."""

    stream: Union[HostStream, ProcessedSourceStream]
    passthrough: bool
    """True: a host stream handed over untouched; False: bytes read through the plugin."""
    ext_hint: Optional[str]
    metadata: Optional[MediaMetadata]


class ProcessedSourceStream:
    """A host-side stream over a guest ``source-stream`` (sequential: no seek, no size)."""

    def __init__(self, res: GuestResource, check: Boundary):
        self._res = res
        self._check = check
        self._pos = 0
        self._eof = False

    def read(self, max_bytes: int) -> bytes:
        if self._eof:
            return b""
        asked = min(max(1, max_bytes), SOURCE_READ_CHUNK)
        chunk = self._res.call("read", asked)
        data = bytes(field_of(chunk, "bytes"))
        self._check.integer("source-chunk.bytes (length)", len(data), 0, asked)
        self._eof = bool(field_of(chunk, "eof"))
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int) -> int:
        raise PluginError(PluginErrorCode.UNSUPPORTED, "a processed source stream cannot seek")

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        raise PluginError(PluginErrorCode.UNSUPPORTED, "a processed source stream has no known size")

    def close(self) -> None:
        self._res.close()


class SourceCapability(_Capability, _Configurable):
    """A source catalog on the plugin's long-lived control instance."""

    kind = "source"
    interface = "source"

    def __init__(self, plugin: ActivePlugin, descriptor: CapabilityInfo):
        super().__init__(plugin, descriptor)

        def build(config: str) -> GuestResource:
            return self._build(lambda i: i.adopt(i.call(self.interface, "create"), self.interface, "catalog"), config)

        self._slot = ResourceSlot(plugin, build, self.default_config_json, lazy=True)

    def list_items(self, request: Union[str, dict[str, Any]] = "{}") -> Any:
        """The catalog's answer to ``request``, parsed from JSON."""
        return self.check.json_value("list-items-json", self._slot.call("list-items-json", _json_text(request)))

    def open_stream(self, track: Union[str, dict[str, Any]]) -> OpenedStream:
        return self._opened(self._slot.call("open-stream-json", _json_text(track)))

    def open_uri(self, uri: str) -> OpenedStream:
        return self._opened(self._slot.call("open-uri", uri))

    def _opened(self, rec: Any) -> OpenedStream:
        handle: Variant = field_of(rec, "handle")
        res = self._slot.resource
        meta = field_of(rec, "metadata")
        metadata = MediaMetadata.from_wit(meta, self.check) if meta is not None else None
        ext_hint = self.check.optional_text("opened-stream.ext-hint", field_of(rec, "ext_hint"), 64)
        any_handle = cast(ResourceAny, handle.payload)  # both cases carry a resource
        if handle.tag == "passthrough":
            # Move the host stream out of the source's store: it now belongs to the caller.
            # (to_host takes the handle out of the store's table; nothing is left to drop.)
            instance = res.instance
            with instance.lock:
                rep = any_handle.to_host(instance.store).rep
                stream = cast(Optional[HostStream], instance.imports.take(HOST_STREAM_TYPE, rep))
            if stream is None:
                raise PluginError(
                    PluginErrorCode.INTERNAL,
                    "passthrough handle is not a live host stream",
                    plugin_id=self.plugin_id,
                    capability=self.kind,
                )
            return OpenedStream(stream, True, ext_hint, metadata)
        stream_res = res.instance.adopt(any_handle, self.interface, "source-stream")
        return OpenedStream(ProcessedSourceStream(stream_res, self.check), False, ext_hint, metadata)


# --- lyrics ---------------------------------------------------------------------------------


class LyricsCapability(_Capability, _Configurable):
    """A lyrics provider on the plugin's long-lived control instance."""

    kind = "lyrics"
    interface = "lyrics"

    def __init__(self, plugin: ActivePlugin, descriptor: CapabilityInfo):
        super().__init__(plugin, descriptor)

        def build(config: str) -> GuestResource:
            return self._build(lambda i: i.adopt(i.call(self.interface, "create"), self.interface, "provider"), config)

        self._slot = ResourceSlot(plugin, build, self.default_config_json, lazy=True)

    def search(self, keyword: str) -> list[LyricCandidate]:
        found = self._slot.call("search", keyword)
        self.check.integer("search (result count)", len(found), 0, _MAX_LYRIC_CANDIDATES)
        return [
            LyricCandidate(
                *(self.check.text(f"lyric-candidate.{n}", field_of(c, n)) for n in ("id", "title", "artist"))
            )
            for c in found
        ]

    def fetch(self, lyric_id: str) -> str:
        return self.check.json_text("fetch", self._slot.call("fetch", lyric_id))


_MAX_LYRIC_CANDIDATES = 1000


# --- output sink ----------------------------------------------------------------------------


def _interleaved_bytes(frames: np.ndarray) -> tuple[int, bytes]:
    block = np.asarray(frames, dtype="<f4")
    if block.ndim != 2:
        raise PluginError(PluginErrorCode.INVALID_ARG, f"expected (frames, channels) audio, got shape {block.shape}")
    return block.shape[1], np.ascontiguousarray(block).tobytes()


def _hot_path(value: Any, check: Boundary) -> Optional[CoreModuleSpec]:
    return core_module_spec_from(value, check) if value is not None else None


class OutputSinkCapability(_Capability, _Configurable):
    """An output sink. Targets, negotiation and hot-path description use the control instance;
    :meth:`open` makes a playing session with its own instance."""

    kind = "output_sink"
    interface = "output-sink"

    def __init__(self, plugin: ActivePlugin, descriptor: CapabilityInfo):
        super().__init__(plugin, descriptor)
        self._slot = ResourceSlot(plugin, self._session_builder(None), self.default_config_json, lazy=True)

    def _session_builder(self, opened: Optional[tuple[str, AudioSpec]]) -> Callable[[str], GuestResource]:
        def create(i: PluginInstance) -> GuestResource:
            return i.adopt(i.call(self.interface, "create"), self.interface, "session")

        def open_(res: GuestResource) -> None:
            if opened is not None:
                res.call("open-json", opened[0], opened[1].to_wit())

        return lambda config: self._build(create, config, open_)

    def list_targets(self) -> Any:
        return self.check.json_value("list-targets-json", self._slot.call("list-targets-json"))

    def negotiate_spec(self, target: Union[str, dict[str, Any]], desired: AudioSpec) -> NegotiatedSpec:
        return NegotiatedSpec.from_wit(
            self._slot.call("negotiate-spec-json", _json_text(target), desired.to_wit()), self.check
        )

    def describe_hot_path(self, spec: AudioSpec) -> Optional[CoreModuleSpec]:
        return _hot_path(self._slot.call("describe-hot-path", spec.to_wit()), self.check)

    def open(
        self, target: Union[str, dict[str, Any]], spec: AudioSpec, config_json: Optional[str] = None
    ) -> OutputSinkSession:
        """A session opened on ``target`` with ``spec`` (``config_json`` defaults to the control one)."""
        builder = self._session_builder((_json_text(target), spec))
        slot = ResourceSlot(self._plugin, builder, config_json or self._slot.config_json, lazy=False)
        return OutputSinkSession(self, slot, spec)


class OutputSinkSession(_Configurable):
    """An opened output-sink session."""

    def __init__(self, capability: OutputSinkCapability, slot: ResourceSlot, spec: AudioSpec):
        self.capability = capability
        self.spec = spec
        self._slot = slot

    def write(self, frames: np.ndarray) -> int:
        """Offer (frames, channels) float32 audio; returns how many frames the sink accepted."""
        channels, data = _interleaved_bytes(frames)
        accepted = self._slot.call("write-interleaved-f32", channels, data)
        return self.capability.check.frames("write-interleaved-f32 (accepted frames)", accepted, len(frames))

    def query_status(self) -> RuntimeStatus:
        st = self._slot.call("query-status")
        queued = self.capability.check.integer(
            "runtime-status.queued-samples", field_of(st, "queued_samples"), 0, 2**64 - 1
        )
        return RuntimeStatus(queued, bool(field_of(st, "running")))

    def flush(self) -> None:
        self._slot.call("flush")

    def reset(self) -> None:
        self._slot.call("reset")

    def describe_hot_path(self, spec: Optional[AudioSpec] = None) -> Optional[CoreModuleSpec]:
        return _hot_path(self._slot.call("describe-hot-path", (spec or self.spec).to_wit()), self.capability.check)


# --- dsp ------------------------------------------------------------------------------------


class DspCapability(_Capability):
    """A DSP ability; each :meth:`create` is a processor with its own instance."""

    kind = "dsp"
    interface = "dsp"

    def create(self, spec: AudioSpec, config_json: Optional[str] = None) -> DspProcessor:
        def build(config: str) -> GuestResource:
            def create(i: PluginInstance) -> GuestResource:
                return i.adopt(i.call(self.interface, "create", spec.to_wit()), self.interface, "processor")

            return self._build(create, config)

        return DspProcessor(
            self, ResourceSlot(self._plugin, build, config_json or self.default_config_json, lazy=False), spec
        )


class DspProcessor(_Configurable):
    """A DSP processor on the component path (control rate; the audio thread uses the hot path)."""

    def __init__(self, capability: DspCapability, slot: ResourceSlot, spec: AudioSpec):
        self.capability = capability
        self.spec = spec
        self._slot = slot
        self._out_channels: Optional[int] = None
        # After a crossfaded recreate: (the replaced resource, fade length, frames faded so far).
        self._fade: Optional[tuple[GuestResource, int, int]] = None

    def process(self, frames: np.ndarray) -> npt.NDArray[np.float32]:
        """Process (frames, channels) float32 audio; the output has the same frame count."""
        channels, data = _interleaved_bytes(frames)
        if self._out_channels is None:
            self._out_channels = self.output_channels()
        result = self._output(self._slot.call("process-interleaved-f32", channels, data), len(frames), channels)
        if self._fade is not None:
            result = self._crossfade(result, channels, data)
        return result

    def _output(self, out: Any, frames: int, channels: int) -> npt.NDArray[np.float32]:
        out_channels = self._out_channels or channels
        result = np.frombuffer(bytes(out), dtype="<f4").astype(np.float32)
        if result.size != frames * out_channels:
            raise PluginContractError(
                "process-interleaved-f32",
                f"returned {result.size} samples for {frames} frames x {out_channels} channels",
                plugin_id=self.capability.plugin_id,
                capability="dsp",
            )
        return result.reshape(frames, out_channels)

    def _crossfade(self, new: npt.NDArray[np.float32], channels: int, data: bytes) -> npt.NDArray[np.float32]:
        """Mix the replaced processor's output out and the new one's in, with equal-power gains
        (cos/sin: constant power for uncorrelated signals), then close the replaced one."""
        assert self._fade is not None
        old_res, total, done = self._fade
        try:
            old = self._output(old_res.call("process-interleaved-f32", channels, data), len(new), channels)
        except StellatuneError:  # the old one failed mid-fade: cut over now
            old, done = new, total
        t = np.minimum((done + np.arange(len(new), dtype=np.float64)) / total, 1.0)[:, None]
        mixed = (old * np.cos(t * np.pi / 2) + new * np.sin(t * np.pi / 2)).astype(np.float32)
        if done + len(new) >= total:
            self._end_fade()
        else:
            self._fade = (old_res, total, done + len(new))
        return mixed

    def _end_fade(self) -> None:
        fade, self._fade = self._fade, None
        if fade is not None:
            self._slot.retire_resource(fade[0])

    def update_config(self, new_config: Union[str, dict[str, Any]], *, crossfade_frames: int = 0) -> ConfigUpdateMode:
        """As for every capability; a recreate with ``crossfade_frames`` keeps the replaced
        processor running beside the new one for that many frames of :meth:`process`, fading
        from its output to the new one's (the state was carried over first)."""

        def keep(old: GuestResource) -> None:
            self._end_fade()  # a fade still running from an earlier recreate ends now
            self._fade = (old, crossfade_frames, 0)

        mode = self._slot.update_config(_json_text(new_config), keep_replaced=keep if crossfade_frames > 0 else None)
        self._out_channels = None  # a recreated processor may answer differently
        return mode

    def close(self) -> None:
        self._end_fade()
        super().close()

    def supported_layouts(self) -> int:
        """Bitmask: mono 1, stereo 2, 5.1 4, 7.1 8; all bits set means any."""
        return self._slot.call("supported-layouts")

    def output_channels(self) -> int:
        """0 means the same as the input."""
        return self.capability.check.integer("output-channels", self._slot.call("output-channels"), 0, MAX_CHANNELS)

    def describe_hot_path(self, spec: Optional[AudioSpec] = None) -> Optional[CoreModuleSpec]:
        return _hot_path(self._slot.call("describe-hot-path", (spec or self.spec).to_wit()), self.capability.check)
