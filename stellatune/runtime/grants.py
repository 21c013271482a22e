"""Host grants: what the host (the user) grants a plugin beyond its manifest's ``permissions``.

The original project's manifests have no ``permissions`` block, so under deny-by-default their
plugins reach nothing. A host grant is a per-plugin record with the same five lists and the same
rules as that block (``stellatune.manifest``'s validators), stored beside the desired states in
``<plugins_dir>/.stellatune-state.json`` and handed to the lifecycle host with each activation
(``RuntimePluginInfo.host_grants``). The values are ``stellatune.manifest.Permissions`` records,
so a host merges them with the manifest's block without a new type.

Pure functions over immutable values; ``WasmPluginRuntime`` owns the bookkeeping and the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Union

from ..errors import HostGrantError, ManifestProblem
from ..manifest import Permissions, permission_entry_breach

__all__ = [
    "GRANT_KINDS",
    "GrantsLike",
    "HostGrantChange",
    "validate_host_grants",
    "merge_grants",
    "subtract_grants",
    "grants_signature",
]

#: The lists of a grant record, in the order they are written (the ``permissions`` keys).
GRANT_KINDS: tuple[str, ...] = tuple(f.name for f in fields(Permissions))

#: What the grant API accepts: a ``Permissions`` record or ``{kind: [entry, ...]}``.
GrantsLike = Union[Permissions, Mapping[str, Iterable[str]]]


@dataclass(frozen=True)
class HostGrantChange:
    """The outcome of ``WasmPluginRuntime.grant`` / ``revoke`` for one plugin."""

    plugin_id: str
    changed: Permissions
    """Entries added (grant) or removed (revoke)."""
    unchanged: Permissions
    """Entries that were already granted (grant) or never granted (revoke): no-ops."""
    grants: Permissions
    """The plugin's host grants afterwards."""


def validate_host_grants(plugin_id: str, grants: GrantsLike, *, root: Optional[Path] = None) -> Permissions:
    """``grants`` as a ``Permissions`` record, every entry checked by the manifest's rules.

    Entries are trimmed and de-duplicated (first occurrence kept). ``root`` is the plugin's
    install directory: when given, ``sidecars`` entries must name a file inside it, as in a
    manifest; without it only the lexical rules apply.

    :raises HostGrantError: naming every broken entry with its field and rule (an unknown
        field, a non-string or blank entry, a bad ``host[:port]``, an unsafe path, ...).
    """
    problems: list[ManifestProblem] = []
    raw = _as_mapping(grants)
    for key in raw:
        if key not in GRANT_KINDS:
            problems.append(
                ManifestProblem(
                    str(key), "unknown-key", f"unknown grant kind '{key}' (known: {', '.join(GRANT_KINDS)})"
                )
            )
    lists: dict[str, list[str]] = {}
    for key in GRANT_KINDS:
        entries = raw.get(key) or ()
        if isinstance(entries, str):
            problems.append(ManifestProblem(key, "type", "must be a list of strings, not a string"))
            continue
        out: list[str] = []
        for item in entries:
            if not isinstance(item, str):
                problems.append(ManifestProblem(key, "type", f"entries must be strings, not {type(item).__name__}"))
                continue
            entry = item.strip()
            if not entry:
                problems.append(ManifestProblem(key, "not-blank", "entries must not be blank"))
                continue
            breach = permission_entry_breach(key, entry, root)
            if breach:
                problems.append(ManifestProblem(key, breach.rule, breach.message))
            elif entry not in out:
                out.append(entry)
        lists[key] = out
    if problems:
        raise HostGrantError(plugin_id, problems)
    return Permissions(**{key: tuple(lists.get(key, ())) for key in GRANT_KINDS})


def merge_grants(base: Permissions, extra: Permissions) -> tuple[Permissions, Permissions]:
    """``(base ∪ extra, the entries of extra already in base)``; order kept, base first."""
    merged: dict[str, tuple[str, ...]] = {}
    already: dict[str, tuple[str, ...]] = {}
    for key in GRANT_KINDS:
        have = getattr(base, key)
        new = tuple(e for e in getattr(extra, key) if e not in have)
        merged[key] = have + new
        already[key] = tuple(e for e in getattr(extra, key) if e in have)
    return Permissions(**merged), Permissions(**already)


def subtract_grants(base: Permissions, gone: Permissions) -> tuple[Permissions, Permissions, Permissions]:
    """``(base without gone, the entries removed, the entries of gone that base never had)``."""
    kept: dict[str, tuple[str, ...]] = {}
    removed: dict[str, tuple[str, ...]] = {}
    absent: dict[str, tuple[str, ...]] = {}
    for key in GRANT_KINDS:
        drop = getattr(gone, key)
        have = getattr(base, key)
        kept[key] = tuple(e for e in have if e not in drop)
        removed[key] = tuple(e for e in drop if e in have)
        absent[key] = tuple(e for e in drop if e not in have)
    return Permissions(**kept), Permissions(**removed), Permissions(**absent)


def grants_signature(signature: str, grants: Permissions) -> str:
    """Fold a plugin's host grants into its signature, so a sync after a grant changed reloads
    the plugin (``reload_changed``) and the new grants take effect. No grants: unchanged."""
    if grants.is_empty():
        return signature
    canonical = json.dumps(grants.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256()
    h.update(signature.encode("ascii") + b"\0host_grants\0" + canonical.encode("utf-8"))
    return "sha256:" + h.hexdigest()


def _as_mapping(grants: GrantsLike) -> Mapping[str, Iterable[str]]:
    if isinstance(grants, Permissions):
        return {key: getattr(grants, key) for key in GRANT_KINDS}
    if not isinstance(grants, Mapping):
        raise TypeError(f"grants must be a Permissions or a mapping, not {type(grants).__name__}")
    return grants
