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

from ..errors import PluginError, PluginErrorCode
from ..sdk.abi import BufferLayout, CoreModuleSpec, Role, SampleFormat

__all__ = [
    "field_of", "record", "unwrap", "AudioSpec", "DecoderInfo", "AudioTags", "EncodedAudioFormat",
    "MediaMetadata", "ConfigUpdateMode", "ConfigUpdatePlan", "NegotiatedSpec", "RuntimeStatus",
    "LyricCandidate", "core_module_spec_from",
]

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
        raise PluginError(PluginErrorCode(value.tag), str(value.payload or ""),
                          plugin_id=plugin_id, capability=capability)
    return value


@dataclass(frozen=True)
class AudioSpec:
    """WIT ``audio-spec``."""

    sample_rate: int
    channels: int

    def to_wit(self) -> Record:
        return record(sample_rate=self.sample_rate, channels=self.channels)

    @classmethod
    def from_wit(cls, rec: Any) -> "AudioSpec":
        return cls(field_of(rec, "sample_rate"), field_of(rec, "channels"))


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
    def from_wit(cls, rec: Any) -> "DecoderInfo":
        return cls(*(field_of(rec, n) for n in (
            "sample_rate", "channels", "duration_ms", "seekable", "encoder_delay_frames",
            "encoder_padding_frames")))


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
    def from_wit(cls, rec: Any) -> "MediaMetadata":
        t = field_of(rec, "tags")
        tags = AudioTags(**{
            n: (tuple(v) if isinstance(v, list) else v)
            for n in AudioTags.__dataclass_fields__ for v in [field_of(t, n)]
        })
        f = field_of(rec, "format")
        fmt = EncodedAudioFormat(**{n: field_of(f, n) for n in EncodedAudioFormat.__dataclass_fields__})
        extras = {field_of(e, "key"): field_of(e, "value").payload for e in field_of(rec, "extras")}
        return cls(tags=tags, format=fmt, duration_ms=field_of(rec, "duration_ms"), extras=extras)


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
    def from_wit(cls, rec: Any) -> "ConfigUpdatePlan":
        return cls(ConfigUpdateMode(field_of(rec, "mode")), field_of(rec, "reason"))


@dataclass(frozen=True)
class NegotiatedSpec:
    """WIT ``output-sink.negotiated-spec``."""

    spec: AudioSpec
    preferred_chunk_frames: int
    prefer_track_rate: bool

    @classmethod
    def from_wit(cls, rec: Any) -> "NegotiatedSpec":
        return cls(AudioSpec.from_wit(field_of(rec, "spec")), field_of(rec, "preferred_chunk_frames"),
                   field_of(rec, "prefer_track_rate"))


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


def core_module_spec_from(rec: Any) -> CoreModuleSpec:
    """WIT ``core-module-spec`` → the shared :class:`stellatune.sdk.abi.CoreModuleSpec`."""
    b = field_of(rec, "buffer")
    buffer = BufferLayout(
        in_offset=field_of(b, "in_offset"), out_offset=field_of(b, "out_offset"),
        max_frames=field_of(b, "max_frames"), channels=field_of(b, "channels"),
        sample_format=SampleFormat[field_of(b, "sample_format").upper()],
        interleaved=field_of(b, "interleaved"),
    )
    return CoreModuleSpec(
        role=Role[field_of(rec, "role").upper().replace("-", "_")],
        wasm_rel_path=field_of(rec, "wasm_rel_path"), buffer=buffer,
        abi_version=field_of(rec, "abi_version"), memory_export=field_of(rec, "memory_export"),
        init_export=field_of(rec, "init_export"), process_export=field_of(rec, "process_export"),
        reset_export=field_of(rec, "reset_export"), drop_export=field_of(rec, "drop_export"),
    )
