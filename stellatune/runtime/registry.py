"""The active-plugin map and its capability index, plus the two derivations from a manifest:
capability descriptors and the plugin signature.

Pure bookkeeping with no locking and no I/O: ``WasmPluginRuntime`` owns one ``ActiveRegistry``
and guards it with its data lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Union

from ..manifest import AbilityKind, ExtScore, Manifest
from .model import CapabilityDescriptor, RuntimePluginInfo, normalize_ext

__all__ = ["ActivePlugin", "ActiveRegistry", "build_capabilities", "plugin_signature", "parse_kind"]

_EMPTY_JSON = "{}"


def build_capabilities(manifest: Manifest) -> tuple[CapabilityDescriptor, ...]:
    """One descriptor per ability of ``manifest``, in file order, with the defaults applied:
    display name falls back to the type id, missing JSON fields become ``"{}"``, decoder
    extensions are normalised (a repeated extension keeps its largest score) and a missing
    wildcard score is 0."""
    out = []
    for component, ability in manifest.abilities():
        type_id = ability.type_id.strip()
        ext_scores: tuple[ExtScore, ...] = ()
        wildcard = 0
        if ability.decoder is not None:
            best: dict[str, int] = {}
            for rule in ability.decoder.ext_scores:
                ext = normalize_ext(rule.ext)
                best[ext] = max(rule.score, best.get(ext, 0))
            ext_scores = tuple(ExtScore(ext, score) for ext, score in best.items())
            wildcard = ability.decoder.wildcard_score or 0
        out.append(
            CapabilityDescriptor(
                plugin_id=manifest.id,
                component_id=component.id,
                component_rel_path=component.path,
                world=component.world,
                kind=ability.kind,
                type_id=type_id,
                display_name=ability.display_name or type_id,
                config_schema_json=ability.config_schema_json or _EMPTY_JSON,
                default_config_json=ability.default_config_json or _EMPTY_JSON,
                decoder_ext_scores=ext_scores,
                decoder_wildcard_score=wildcard,
            )
        )
    return tuple(out)


def plugin_signature(manifest: Manifest, component_digests: Mapping[str, str]) -> str:
    """``sha256:<hex>`` over the canonical manifest JSON and every component file's digest.

    The original hashed only the manifest, so a replaced ``.wasm`` under an unchanged manifest
    kept running stale code; including the bytes' digests makes that a ``reload_changed``.
    """
    h = hashlib.sha256()
    canonical = json.dumps(manifest.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h.update(canonical.encode("utf-8"))
    for rel in sorted(component_digests):
        # NUL separators keep (path, digest) pairs from running into each other.
        h.update(b"\0" + rel.encode("utf-8") + b"\0" + component_digests[rel].encode("ascii"))
    return "sha256:" + h.hexdigest()


def parse_kind(kind: Union[AbilityKind, str]) -> AbilityKind:
    """Accept an ``AbilityKind`` or its spelling (``output-sink`` too); raise ``ValueError``."""
    return kind if isinstance(kind, AbilityKind) else AbilityKind.parse(kind.strip())


@dataclass(frozen=True)
class ActivePlugin:
    """A plugin the host has activated, with what it was activated from."""

    info: RuntimePluginInfo
    capabilities: tuple[CapabilityDescriptor, ...]
    signature: str


class ActiveRegistry:
    """Active plugins by id, and their capabilities by ``(plugin_id, kind, type_id)``."""

    def __init__(self) -> None:
        self._plugins: dict[str, ActivePlugin] = {}
        self._by_key: dict[tuple[str, AbilityKind, str], CapabilityDescriptor] = {}

    def __contains__(self, plugin_id: object) -> bool:
        return plugin_id in self._plugins

    def __len__(self) -> int:
        return len(self._plugins)

    def put(self, plugin: ActivePlugin) -> None:
        """Add ``plugin``, replacing an entry with the same id and all of its capabilities."""
        self.remove(plugin.info.id)
        self._plugins[plugin.info.id] = plugin
        for cap in plugin.capabilities:
            self._by_key[(cap.plugin_id, cap.kind, cap.type_id)] = cap

    def remove(self, plugin_id: str) -> Optional[ActivePlugin]:
        """Drop ``plugin_id`` and its capabilities; return what was there."""
        plugin = self._plugins.pop(plugin_id, None)
        if plugin is not None:
            for cap in plugin.capabilities:
                self._by_key.pop((cap.plugin_id, cap.kind, cap.type_id), None)
        return plugin

    def get(self, plugin_id: str) -> Optional[ActivePlugin]:
        return self._plugins.get(plugin_id)

    def ids(self) -> list[str]:
        return sorted(self._plugins)

    def plugins(self) -> list[ActivePlugin]:
        """Active plugins sorted by id."""
        return [self._plugins[pid] for pid in sorted(self._plugins)]

    def capability(self, plugin_id: str, kind: AbilityKind, type_id: str) -> Optional[CapabilityDescriptor]:
        return self._by_key.get((plugin_id.strip(), kind, type_id.strip()))

    def capabilities_of(self, plugin_id: str) -> tuple[CapabilityDescriptor, ...]:
        plugin = self._plugins.get(plugin_id.strip())
        return plugin.capabilities if plugin else ()

    def all_decoders(self) -> list[CapabilityDescriptor]:
        """Every active decoder capability, sorted by (plugin_id, type_id)."""
        return sorted(
            (cap for cap in self._by_key.values() if cap.kind is AbilityKind.DECODER),
            key=lambda cap: (cap.plugin_id, cap.type_id),
        )

    def decoder_candidates(self, ext: Optional[str]) -> list[CapabilityDescriptor]:
        """Decoders that accept ``ext``, best first: score descending, then plugin id, type id.

        A decoder's score is its rule for ``ext`` if it has one, otherwise its wildcard score
        (also for an empty ``ext``); decoders scoring 0 are left out.
        """
        scored = [(cap.decoder_score(ext), cap) for cap in self.all_decoders()]
        scored = [(score, cap) for score, cap in scored if score > 0]
        scored.sort(key=lambda item: (-item[0], item[1].plugin_id, item[1].type_id))
        return [cap for _, cap in scored]
