"""The validated ``plugin.json`` as frozen values: what every other plane reads.

Only :mod:`stellatune.manifest.parser` builds these from untrusted JSON, so code holding a
:class:`Manifest` can rely on every rule of docs/manifest.md having passed. ``to_json`` is the
inverse of parsing (install receipts store it), which is why it lives beside the model.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from .policy import world_name_of

__all__ = [
    "SCHEMA_VERSION",
    "API_VERSION",
    "MANIFEST_FILE_NAME",
    "MAX_HOT_PATH_MEMORY_MIB",
    "PERMISSION_KEYS",
    "LIMIT_KEYS",
    "WORLD_NAMES",
    "AbilityKind",
    "ExtScore",
    "DecoderRules",
    "Ability",
    "Component",
    "Permissions",
    "Limits",
    "Manifest",
]

SCHEMA_VERSION = 1
API_VERSION = 1
MANIFEST_FILE_NAME = "plugin.json"

#: The largest ``limits.hot_path_memory_mib`` a manifest may ask for (4 GiB: all a wasm32
#: memory can address).
MAX_HOT_PATH_MEMORY_MIB = 4096

#: The keys of the ``permissions`` block, in the order they are read and written.
PERMISSION_KEYS = ("files", "http", "tcp", "sidecars", "env")

#: The keys the ``limits`` block accepts (any other is refused, see the parser).
LIMIT_KEYS = ("hot_path_memory_mib",)


class AbilityKind(str, enum.Enum):
    """What an ability provides; each kind lives in exactly one WIT world."""

    DECODER = "decoder"
    SOURCE = "source"
    LYRICS = "lyrics"
    OUTPUT_SINK = "output_sink"
    DSP = "dsp"

    @property
    def world_name(self) -> str:
        """The WIT world a component must target to export this kind, e.g. ``output-sink-plugin``."""
        return self.value.replace("_", "-") + "-plugin"

    @classmethod
    def parse(cls, text: str) -> AbilityKind:
        """Read a kind as written in ``plugin.json``; ``output-sink`` is accepted for ``output_sink``
        because the original project's docs spell it that way. Raises ``ValueError`` otherwise."""
        return cls(text.replace("-", "_"))


#: Bare world name (``dsp-plugin``) → the one kind a component of that world may export.
WORLD_NAMES: dict[str, AbilityKind] = {kind.world_name: kind for kind in AbilityKind}


@dataclass(frozen=True)
class ExtScore:
    """How much a decoder wants files with one extension (higher wins, 0 = not at all)."""

    ext: str
    """Normalised: trimmed, no leading dot, lower case."""
    score: int
    """0..65535."""


@dataclass(frozen=True)
class DecoderRules:
    """Which files a decoder ability offers to open."""

    ext_scores: tuple[ExtScore, ...] = ()
    wildcard_score: Optional[int] = None
    """Score for any extension without its own rule; ``None`` when not given."""


@dataclass(frozen=True)
class Ability:
    """One capability a component exports, addressed by ``(kind, type_id)``."""

    kind: AbilityKind
    type_id: str
    """Trimmed."""
    display_name: Optional[str] = None
    config_schema_json: Optional[str] = None
    """A JSON Schema for the ability's config, as a JSON string."""
    default_config_json: Optional[str] = None
    """The default config, as a JSON string; valid against ``config_schema_json``."""
    decoder: Optional[DecoderRules] = None
    """Present only on decoder abilities."""


@dataclass(frozen=True)
class Component:
    """One ``.wasm`` component of a package."""

    id: str
    path: str
    """Relative to the plugin root, forward slashes."""
    world: str
    """The full world name, e.g. ``stellatune:plugin/decoder-plugin@0.1.0``."""
    abilities: tuple[Ability, ...]

    @property
    def world_name(self) -> str:
        """The bare world name (``decoder-plugin``): last path segment, version stripped."""
        return world_name_of(self.world)


@dataclass(frozen=True)
class Permissions:
    """What a plugin may reach beyond its own sandbox; everything absent is denied."""

    files: tuple[str, ...] = ()
    """Readable roots, relative to the plugin root."""
    http: tuple[str, ...] = ()
    """``host[:port]`` allow-list for HTTP(S); ``*.`` may lead the host; no port = the scheme's."""
    tcp: tuple[str, ...] = ()
    """``host:port`` endpoints for raw TCP streams."""
    sidecars: tuple[str, ...] = ()
    """Executables the plugin may launch, relative to (and inside) the plugin root."""
    env: tuple[str, ...] = ()
    """Environment variables passed through to sidecars; all others are cleared."""

    def is_empty(self) -> bool:
        return not (self.files or self.http or self.tcp or self.sidecars or self.env)

    def to_json(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in PERMISSION_KEYS if getattr(self, name)}


@dataclass(frozen=True)
class Limits:
    """Resource limits the plugin asks for instead of the host's defaults (docs/manifest.md)."""

    hot_path_memory_mib: Optional[int] = None
    """Linear memory its hot-path core modules may use, in MiB (None: the engine's 64 MiB).
    A host's own ``memory_limit_bytes`` wins over it."""

    def is_empty(self) -> bool:
        return self.hot_path_memory_mib is None

    def to_json(self) -> dict[str, int]:
        return {} if self.hot_path_memory_mib is None else {"hot_path_memory_mib": self.hot_path_memory_mib}


@dataclass(frozen=True)
class Manifest:
    """A validated ``plugin.json``."""

    schema_version: int
    id: str
    """Safe as a single directory name: ``[A-Za-z0-9._-]+``, not starting with ``.``."""
    name: str
    version: str
    """Free text, never parsed as semver."""
    api_version: int
    components: tuple[Component, ...]
    permissions: Permissions = Permissions()
    limits: Limits = Limits()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """The parsed JSON document as read (unknown keys included)."""

    def abilities(self) -> Iterator[tuple[Component, Ability]]:
        """Every ability of the package with the component that exports it, in file order."""
        for component in self.components:
            for ability in component.abilities:
                yield component, ability

    def to_json(self) -> dict[str, Any]:
        """The normalised manifest as a JSON-ready dict (what install receipts store).

        ``parse_manifest(m.to_json())`` gives back an equal manifest.
        """
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "api_version": self.api_version,
            "components": [_component_to_json(c) for c in self.components],
        }
        if not self.permissions.is_empty():
            out["permissions"] = self.permissions.to_json()
        if not self.limits.is_empty():
            out["limits"] = self.limits.to_json()
        return out


def _component_to_json(component: Component) -> dict[str, Any]:
    return {
        "id": component.id,
        "path": component.path,
        "world": component.world,
        "abilities": [_ability_to_json(a) for a in component.abilities],
    }


def _ability_to_json(ability: Ability) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": ability.kind.value, "type_id": ability.type_id}
    for key in ("display_name", "config_schema_json", "default_config_json"):
        value = getattr(ability, key)
        if value is not None:
            out[key] = value
    if ability.decoder is not None:
        rules: dict[str, Any] = {"ext_scores": [{"ext": e.ext, "score": e.score} for e in ability.decoder.ext_scores]}
        if ability.decoder.wildcard_score is not None:
            rules["wildcard_score"] = ability.decoder.wildcard_score
        out["decoder"] = rules
    return out
