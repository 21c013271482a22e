"""Component executor: runs plugin components under wasmtime and hands out typed capability handles.

:class:`ComponentExecutor` is the runtime's lifecycle host (``activate``/``deactivate``/``shutdown``)
and the entry point for calls: ``executor.decoder(plugin_id, type_id)``, ``.source``, ``.lyrics``,
``.output_sink``, ``.dsp``. See docs/executor.md.
"""

from ..errors import ConfigRejected
from .capabilities import (
    DecoderCapability,
    DecoderSession,
    DspCapability,
    DspProcessor,
    LyricsCapability,
    OpenedStream,
    OutputSinkCapability,
    OutputSinkSession,
    PcmChunk,
    ProcessedSourceStream,
    SourceCapability,
)
from .executor import ComponentExecutor
from .imports import (
    FileHostStream,
    GrantedHostServices,
    GrantedPluginImports,
    HostServices,
    PluginImports,
)
from .instance import InstanceLimits
from .selection import decoder_candidates, open_decoder
from .values import (
    AudioSpec,
    AudioTags,
    ConfigUpdateMode,
    ConfigUpdatePlan,
    DecoderInfo,
    EncodedAudioFormat,
    LyricCandidate,
    MediaMetadata,
    NegotiatedSpec,
    RuntimeStatus,
)

__all__ = [
    "ComponentExecutor",
    "InstanceLimits",
    "ConfigRejected",
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
    "HostServices",
    "PluginImports",
    "GrantedHostServices",
    "GrantedPluginImports",
    "FileHostStream",
    "decoder_candidates",
    "open_decoder",
    "AudioSpec",
    "AudioTags",
    "ConfigUpdateMode",
    "ConfigUpdatePlan",
    "DecoderInfo",
    "EncodedAudioFormat",
    "LyricCandidate",
    "MediaMetadata",
    "NegotiatedSpec",
    "RuntimeStatus",
]
