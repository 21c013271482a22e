"""Typed Python forms of the WIT records, and the conversions to and from wasmtime-py values.

wasmtime-py hands records back as bags of kebab-case attributes and returns ``result<T, E>``
*untagged* (an ``err`` is a returned ``Variant``, not an exception). Everything that crosses the
component boundary goes through here, so the capability wrappers only see dataclasses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

from wasmtime.component import Record, Variant

from ..abi import BufferLayout, CoreModuleSpec, Role, SampleFormat
from ..errors import PluginError, PluginErrorCode
from .boundary import Boundary

__all__ = [
    "field_of",
    "record",
    "unwrap",
    "AudioSpec",
    "DecoderInfo",
    "AudioTags",
    "EncodedAudioFormat",
    "MediaMetadata",
    "ConfigUpdateMode",
    "ConfigUpdatePlan",
    "NegotiatedSpec",
    "RuntimeStatus",
    "LyricCandidate",
    "core_module_spec_from",
]

# `Any` here is a component value: wasmtime-py returns records as untyped attribute bags (and
# values of every other WIT type as plain Python values); the from_wit constructors check them.

_ERROR_CODES = {c.value for c in PluginErrorCode}


def field_of(rec: Any, name: str) -> Any:
    """Read a record field by its Python name (``sample_rate`` for WIT ``sample-rate``)."""
    return getattr(rec, name.replace("_", "-"))


def record(**fields: Any) -> Record:
    """Build a record value to pass in, from Python-style field names."""
    rec = Record()
    for name, value in fields.items():
        setattr(rec, name.replace("_", "-"), value)
    return rec


def unwrap(value: Any, *, plugin_id: Optional[str] = None, capability: Optional[str] = None) -> Any:
    """The ``ok`` payload of a ``result<_, plugin-error>``; raise :class:`PluginError` for ``err``."""
    # None of our ok types is a tagged variant, so a Variant with an error tag is always an err.
    if isinstance(value, Variant) and value.tag in _ERROR_CODES:
        raise PluginError(
            PluginErrorCode(value.tag), str(value.payload or ""), plugin_id=plugin_id, capability=capability
        )
    return value


@dataclass(frozen=True)
class AudioSpec:
    """WIT ``audio-spec``."""

    sample_rate: int
    channels: int

    def to_wit(self) -> Record:
        return record(sample_rate=self.sample_rate, channels=self.channels)

    @classmethod
    def from_wit(cls, rec: Any, check: Boundary = Boundary(), what: str = "audio-spec") -> AudioSpec:
        return cls(
            check.sample_rate(f"{what}.sample-rate", field_of(rec, "sample_rate")),
            check.channels(f"{what}.channels", field_of(rec, "channels")),
        )


@dataclass(frozen=True)
class DecoderInfo:
    """WIT ``decoder-info``: what a decoder session produces."""

    sample_rate: int
    channels: int
    duration_ms: Optional[int]
    seekable: bool
    encoder_delay_frames: int
    encoder_padding_frames: int

    @classmethod
    def from_wit(cls, rec: Any, check: Boundary = Boundary()) -> DecoderInfo:
        return cls(
            sample_rate=check.sample_rate("decoder-info.sample-rate", field_of(rec, "sample_rate")),
            channels=check.channels("decoder-info.channels", field_of(rec, "channels")),
            duration_ms=check.duration_ms("decoder-info.duration-ms", field_of(rec, "duration_ms")),
            seekable=bool(field_of(rec, "seekable")),
            encoder_delay_frames=check.frames(
                "decoder-info.encoder-delay-frames", field_of(rec, "encoder_delay_frames")
            ),
            encoder_padding_frames=check.frames(
                "decoder-info.encoder-padding-frames", field_of(rec, "encoder_padding_frames")
            ),
        )


@dataclass(frozen=True)
class AudioTags:
    """WIT ``audio-tags``."""

    title: Optional[str] = None
    album: Optional[str] = None
    artists: tuple[str, ...] = ()
    album_artists: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    track_number: Optional[int] = None
    track_total: Optional[int] = None
    disc_number: Optional[int] = None
    disc_total: Optional[int] = None
    year: Optional[int] = None
    comment: Optional[str] = None


@dataclass(frozen=True)
class EncodedAudioFormat:
    """WIT ``encoded-audio-format``."""

    codec: str
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    bitrate_kbps: Optional[int] = None
    container: Optional[str] = None


@dataclass(frozen=True)
class MediaMetadata:
    """WIT ``media-metadata``; ``extras`` maps each key to its plain Python value."""

    tags: AudioTags
    format: EncodedAudioFormat
    duration_ms: Optional[int] = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wit(cls, rec: Any, check: Boundary = Boundary()) -> MediaMetadata:
        t = field_of(rec, "tags")
        tags = AudioTags(**{n: _checked_tag(check, n, field_of(t, n)) for n in AudioTags.__dataclass_fields__})
        f = field_of(rec, "format")
        where = "media-metadata.format"
        fmt = EncodedAudioFormat(
            codec=check.text(f"{where}.codec", field_of(f, "codec")),
            sample_rate=None
            if field_of(f, "sample_rate") is None
            else check.sample_rate(f"{where}.sample-rate", field_of(f, "sample_rate")),
            channels=None
            if field_of(f, "channels") is None
            else check.channels(f"{where}.channels", field_of(f, "channels")),
            bitrate_kbps=field_of(f, "bitrate_kbps"),
            container=check.optional_text(f"{where}.container", field_of(f, "container")),
        )
        extras_in = field_of(rec, "extras")
        if len(extras_in) > _MAX_EXTRAS:
            check.integer("media-metadata.extras (count)", len(extras_in), 0, _MAX_EXTRAS)
        extras = {}
        for e in extras_in:
            key = check.text("media-metadata.extras.key", field_of(e, "key"))
            value = field_of(e, "value").payload
            extras[key] = check.text(f"media-metadata.extras[{key}]", value) if isinstance(value, str) else value
        return cls(
            tags=tags,
            format=fmt,
            duration_ms=check.duration_ms("media-metadata.duration-ms", field_of(rec, "duration_ms")),
            extras=extras,
        )


_MAX_EXTRAS = 1024
_MAX_TAG_VALUES = 256


def _checked_tag(check: Boundary, name: str, value: Any) -> Any:
    where = f"media-metadata.tags.{name.replace('_', '-')}"
    if isinstance(value, list):
        check.integer(f"{where} (count)", len(value), 0, _MAX_TAG_VALUES)
        return tuple(check.text(where, v) for v in value)
    if isinstance(value, str):
        return check.text(where, value)
    return value


class ConfigUpdateMode(str, enum.Enum):
    """WIT ``config-update-mode``."""

    HOT_APPLY = "hot-apply"
    RECREATE = "recreate"
    REJECT = "reject"


@dataclass(frozen=True)
class ConfigUpdatePlan:
    """WIT ``config-update-plan``: what a plugin says about a new config before it is applied."""

    mode: ConfigUpdateMode
    reason: Optional[str] = None

    @classmethod
    def from_wit(cls, rec: Any, check: Boundary = Boundary()) -> ConfigUpdatePlan:
        return cls(
            ConfigUpdateMode(field_of(rec, "mode")),
            check.optional_text("config-update-plan.reason", field_of(rec, "reason")),
        )


@dataclass(frozen=True)
class NegotiatedSpec:
    """WIT ``output-sink.negotiated-spec``."""

    spec: AudioSpec
    preferred_chunk_frames: int
    prefer_track_rate: bool

    @classmethod
    def from_wit(cls, rec: Any, check: Boundary = Boundary()) -> NegotiatedSpec:
        return cls(
            AudioSpec.from_wit(field_of(rec, "spec"), check, "negotiated-spec.spec"),
            check.frames("negotiated-spec.preferred-chunk-frames", field_of(rec, "preferred_chunk_frames")),
            bool(field_of(rec, "prefer_track_rate")),
        )


@dataclass(frozen=True)
class RuntimeStatus:
    """WIT ``output-sink.runtime-status``."""

    queued_samples: int
    running: bool


@dataclass(frozen=True)
class LyricCandidate:
    """WIT ``lyrics.lyric-candidate``."""

    id: str
    title: str
    artist: str


def core_module_spec_from(rec: Any, check: Boundary = Boundary()) -> CoreModuleSpec:
    """WIT ``core-module-spec`` → the shared :class:`stellatune.abi.CoreModuleSpec`.

    The numbers are range-checked here; whether the layout fits ABI v1 is
    :meth:`CoreModuleSpec.problems`, asked by the loader."""
    b = field_of(rec, "buffer")
    where = "core-module-spec"
    u32 = 0xFFFF_FFFF
    buffer = BufferLayout(
        in_offset=check.integer(f"{where}.buffer.in-offset", field_of(b, "in_offset"), 0, u32),
        out_offset=check.optional_integer(f"{where}.buffer.out-offset", field_of(b, "out_offset"), 0, u32),
        max_frames=check.frames(f"{where}.buffer.max-frames", field_of(b, "max_frames")),
        channels=check.channels(f"{where}.buffer.channels", field_of(b, "channels")),
        sample_format=SampleFormat[field_of(b, "sample_format").upper()],
        interleaved=bool(field_of(b, "interleaved")),
    )

    def export(name: str) -> Any:
        return check.optional_text(f"{where}.{name.replace('_', '-')}", field_of(rec, name), _MAX_EXPORT_NAME)

    return CoreModuleSpec(
        role=Role[field_of(rec, "role").upper().replace("-", "_")],
        wasm_rel_path=check.rel_path(f"{where}.wasm-rel-path", field_of(rec, "wasm_rel_path")),
        buffer=buffer,
        abi_version=check.integer(f"{where}.abi-version", field_of(rec, "abi_version"), 0, u32),
        memory_export=export("memory_export"),
        init_export=export("init_export"),
        process_export=export("process_export"),
        reset_export=export("reset_export"),
        drop_export=export("drop_export"),
    )


#: Export names are identifiers, not text: a generous bound still refuses megabyte names.
_MAX_EXPORT_NAME = 256
