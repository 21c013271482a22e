"""``plugin.json`` schema 1: the model, the parser and every validation rule.

A manifest is checked in one pass that collects *every* broken rule before raising one
:class:`~stellatune.errors.ManifestError`, so an author fixes a file in one round trip. The rules
are those of the original runtime (reference §1.1) plus the ones it lacked: ``api_version`` is
enforced, ``id`` must be a safe directory name, world and ability kinds must agree up front, types
are checked strictly, ``default_config_json`` must satisfy ``config_schema_json``, and the optional
``permissions`` block is validated (docs/manifest.md documents all of it for plugin authors).

Pure Python: no wasmtime, and no I/O beyond reading the file and checking that named files exist.
The modules: :mod:`.model` (frozen values), :mod:`.policy` (the rules as predicates other planes
share), :mod:`.reader` (typed JSON reads that record problems), :mod:`.config_schema` (default
config against its schema) and :mod:`.parser` (the walk). Import from here, not from them.
"""

from __future__ import annotations

from .model import (
    API_VERSION,
    MANIFEST_FILE_NAME,
    MAX_HOT_PATH_MEMORY_MIB,
    SCHEMA_VERSION,
    Ability,
    AbilityKind,
    Component,
    DecoderRules,
    ExtScore,
    Limits,
    Manifest,
    Permissions,
)
from .parser import load_manifest, parse_manifest
from .policy import Breach, match_endpoint, permission_entry_breach, unsafe_relative_path_reason, world_name_of

__all__ = [
    "SCHEMA_VERSION",
    "API_VERSION",
    "MANIFEST_FILE_NAME",
    "AbilityKind",
    "ExtScore",
    "DecoderRules",
    "Ability",
    "Component",
    "Permissions",
    "Limits",
    "Manifest",
    "parse_manifest",
    "load_manifest",
    "unsafe_relative_path_reason",
    "world_name_of",
    "match_endpoint",
    "permission_entry_breach",
    "Breach",
    "MAX_HOT_PATH_MEMORY_MIB",
]
