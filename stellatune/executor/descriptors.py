"""What the executor reads of the runtime's descriptors, as protocols.

The runtime hands the executor its ``RuntimePluginInfo`` and ``CapabilityDescriptor`` objects
(stellatune.runtime.model) through the ``LifecycleHost`` protocol; the executor never imports the
runtime (docs/architecture.md), so it names here, read-only, the fields it uses. Any object with
them will do (the runtime's frozen dataclasses, or a test's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Optional, Protocol, Union

__all__ = ["PluginDescriptor", "CapabilityInfo", "DecoderRanking"]


class PluginDescriptor(Protocol):
    """A plugin to activate (``RuntimePluginInfo``). Its optional ``manifest`` and
    ``host_grants`` are read with ``getattr`` (:func:`~stellatune.executor.imports.manifest_with_host_grants`)."""

    @property
    def id(self) -> str: ...

    @property
    def root_dir(self) -> Union[str, PathLike[str]]: ...


class CapabilityInfo(Protocol):
    """One ability of a plugin (``CapabilityDescriptor``). ``kind`` is an ``AbilityKind`` (a
    ``str`` enum) or its text; ``default_config_json`` is read with ``getattr`` (``"{}"`` if absent)."""

    @property
    def plugin_id(self) -> str: ...

    @property
    def component_id(self) -> str: ...

    @property
    def component_rel_path(self) -> str: ...

    @property
    def world(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def type_id(self) -> str: ...


class DecoderRanking(Protocol):
    """What :func:`~stellatune.executor.selection.decoder_candidates` asks of the runtime."""

    def decoder_candidates(self, ext: Optional[str]) -> Sequence[CapabilityInfo]: ...

    def all_decoders(self) -> Sequence[CapabilityInfo]: ...
