"""``plugin.json`` schema 1: the model, the parser and every validation rule.

A manifest is checked in one pass that collects *every* broken rule before raising one
:class:`~stellatune.errors.ManifestError`, so an author fixes a file in one round trip. The rules
are those of the original runtime (reference §1.1) plus the ones it lacked: ``api_version`` is
enforced, ``id`` must be a safe directory name, world and ability kinds must agree up front, types
are checked strictly, ``default_config_json`` must satisfy ``config_schema_json``, and the optional
``permissions`` block is validated (docs/manifest.md documents all of it for plugin authors).

Pure Python: no wasmtime, and no I/O beyond reading the file and checking that named files exist.
"""
from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import jsonschema
import referencing

from .errors import ManifestError, ManifestProblem

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
]

SCHEMA_VERSION = 1
API_VERSION = 1
MANIFEST_FILE_NAME = "plugin.json"

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DRIVE_PREFIX = re.compile(r"[A-Za-z]:")


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
    def parse(cls, text: str) -> "AbilityKind":
        """Read a kind as written in ``plugin.json``; ``output-sink`` is accepted for ``output_sink``
        because the original project's docs spell it that way. Raises ``ValueError`` otherwise."""
        return cls(text.replace("-", "_"))


_WORLD_NAMES = {kind.world_name: kind for kind in AbilityKind}


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
        return {name: list(getattr(self, name)) for name in _PERMISSION_KEYS if getattr(self, name)}


_PERMISSION_KEYS = ("files", "http", "tcp", "sidecars", "env")

#: The largest ``limits.hot_path_memory_mib`` a manifest may ask for (4 GiB: all a wasm32
#: memory can address).
MAX_HOT_PATH_MEMORY_MIB = 4096


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


_LIMIT_KEYS = ("hot_path_memory_mib",)


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
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
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
        rules: dict[str, Any] = {
            "ext_scores": [{"ext": e.ext, "score": e.score} for e in ability.decoder.ext_scores]
        }
        if ability.decoder.wildcard_score is not None:
            rules["wildcard_score"] = ability.decoder.wildcard_score
        out["decoder"] = rules
    return out


# --- helpers other planes share ----------------------------------------------------------------


def world_name_of(world: str) -> str:
    """``stellatune:plugin/decoder-plugin@0.1.0`` → ``decoder-plugin`` (how the original matches)."""
    return world.rsplit("/", 1)[-1].split("@", 1)[0].strip()


def unsafe_relative_path_reason(path: str) -> Optional[str]:
    """Why ``path`` cannot name something inside a plugin root, or ``None`` when it can.

    Checked lexically and the same on every OS, so a package that is safe here is safe on Windows:
    no absolute path, drive prefix, backslash, ``..`` segment or NUL byte.
    """
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash (use forward slashes)"
    if path.startswith("/"):
        return "is absolute"
    if _DRIVE_PREFIX.match(path):
        return "starts with a drive prefix"
    if any(part == ".." for part in path.split("/")):
        return "contains a '..' segment"
    return None


def match_endpoint(pattern: str, host: str, port: int, default_port: int) -> bool:
    """Does an ``http``/``tcp`` permission entry allow connecting to ``host:port``?

    Hosts compare case-insensitively; ``*.example.org`` matches any name below ``example.org``
    (not ``example.org`` itself); an entry without a port stands for ``default_port`` (the URL
    scheme's: 80 for http, 443 for https). ``pattern`` is assumed valid (it came from a validated
    manifest); an invalid one matches nothing.
    """
    parsed = _parse_endpoint(pattern)
    if isinstance(parsed, str):
        return False
    want_host, want_port = parsed
    if port != (default_port if want_port is None else want_port):
        return False
    host = host.strip().lower().strip("[]").rstrip(".")
    if want_host.startswith("*."):
        suffix = want_host[1:]  # ".example.org"
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == want_host


def _parse_endpoint(text: str) -> "tuple[str, Optional[int]] | str":
    """Split ``host[:port]`` into a lower-case host and a port; a string result is the problem."""
    if "://" in text or "/" in text:
        return "must be host[:port], without a scheme or path"
    if text.startswith("["):  # [v6]:port
        end = text.find("]")
        if end < 0:
            return "has an unclosed '['"
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"'{host}' is not an IPv6 address"
        if rest and not rest.startswith(":"):
            return "has text after ']' that is not ':port'"
        port_text: Optional[str] = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            return "IPv6 addresses must be written in brackets, e.g. [::1]:8080"
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        problem = _host_problem(host)
        if problem:
            return problem
    port: Optional[int] = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()):
            return f"port '{port_text}' is not a number"
        port = int(port_text)
        if not 1 <= port <= 65535:
            return f"port {port} is outside 1-65535"
    return host.lower(), port


def _host_problem(host: str) -> Optional[str]:
    if not host:
        return "has an empty host"
    labels = host.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return "a wildcard needs a domain after '*.'"
    for label in labels:
        if label == "*" or "*" in label:
            return "'*' is allowed only as the whole leading label ('*.example.org')"
        if not (label.isascii() and _HOST_LABEL.fullmatch(label)):
            return f"host label '{label}' is not a valid DNS label"
    return None


# --- parsing -----------------------------------------------------------------------------------


class _Problems:
    """Collects broken rules while the parser keeps going."""

    def __init__(self) -> None:
        self.items: list[ManifestProblem] = []

    def add(self, path: str, rule: str, message: str) -> None:
        self.items.append(ManifestProblem(path, rule, message))


_MISSING = object()


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return key if path == "$" else f"{path}.{key}"


class _Reader:
    """Typed access to the keys of one JSON object, reporting type errors as problems."""

    def __init__(self, obj: dict, path: str, problems: _Problems):
        self.obj = obj
        self.path = path
        self.problems = problems

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def _get(self, key: str, required: bool) -> object:
        value = self.obj.get(key, _MISSING)
        if value is _MISSING or (value is None and not required):
            if required:
                self.problems.add(self.at(key), "required", f"'{key}' is required")
            return _MISSING
        return value

    def string(self, key: str, *, required: bool = True, blank_ok: bool = False) -> Optional[str]:
        """A string, trimmed; ``None`` when absent or broken (the problem is recorded)."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.problems.add(self.at(key), "type", f"must be a string, not {_type_name(value)}")
            return None
        if not blank_ok and not value.strip():
            self.problems.add(self.at(key), "not-blank", f"'{key}' must not be blank")
            return None
        return value

    def integer(self, key: str, maximum: int, *, required: bool = True) -> Optional[int]:
        value = self._get(key, required)
        if value is _MISSING:
            return None
        # bool is an int subclass in Python but not a number in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.add(self.at(key), "type", f"must be an integer, not {_type_name(value)}")
            return None
        if not 0 <= value <= maximum:
            rule = "u16" if maximum == _U16_MAX else "u32"
            self.problems.add(self.at(key), rule, f"{value} is outside 0-{maximum}")
            return None
        return value

    def array(self, key: str, *, required: bool = True) -> Optional[list]:
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.problems.add(self.at(key), "type", f"must be an array, not {_type_name(value)}")
            return None
        return value

    def object(self, key: str, *, required: bool = True) -> Optional[dict]:
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.at(key), "type", f"must be an object, not {_type_name(value)}")
            return None
        return value


def parse_manifest(
    data: object, *, root: Optional[Path] = None, file: Optional[Path] = None
) -> Manifest:
    """Validate a parsed ``plugin.json`` document and build the :class:`Manifest`.

    :param data: the JSON value (normally a dict from ``json.loads``).
    :param root: the plugin root; when given, component and sidecar paths must name regular files
        inside it.
    :param file: the file ``data`` came from, named in the error.
    :raises ManifestError: listing every broken rule.
    """
    problems = _Problems()
    manifest = _parse_document(data, root, problems)
    if problems.items or manifest is None:
        raise ManifestError(problems.items, file)
    return manifest


def load_manifest(path: Path) -> Manifest:
    """Read, parse and validate ``path`` (a ``plugin.json``) against the files beside it.

    :raises ManifestError: the file cannot be read, is not JSON, or breaks any rule.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ManifestError([ManifestProblem("$", "read", f"cannot read: {exc.strerror or exc}")], path)
    except UnicodeDecodeError as exc:
        raise ManifestError([ManifestProblem("$", "json", f"not UTF-8: {exc.reason}")], path)
    try:
        data = _loads_strict(text)
    except ValueError as exc:
        raise ManifestError([ManifestProblem("$", "json", f"not valid JSON: {exc}")], path)
    return parse_manifest(data, root=path.parent, file=path)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _loads_strict(text: str) -> object:
    """``json.loads`` that refuses NaN/Infinity and turns nesting too deep into a ValueError."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_document(data: object, root: Optional[Path], problems: _Problems) -> Optional[Manifest]:
    if not isinstance(data, dict):
        problems.add("$", "type", f"the manifest must be a JSON object, not {_type_name(data)}")
        return None
    r = _Reader(data, "$", problems)

    schema_version = r.integer("schema_version", _U32_MAX)
    if schema_version is not None and schema_version != SCHEMA_VERSION:
        problems.add(
            "schema_version",
            "schema-version",
            f"unsupported schema_version {schema_version} (this runtime reads {SCHEMA_VERSION})",
        )
    plugin_id = r.string("id")
    if plugin_id is not None:
        plugin_id = plugin_id.strip()
        # A leading dot is refused too: dot-names in the plugins directory belong to the host
        # (staging, replaced installs) and discovery never looks at them.
        if not _SAFE_ID.fullmatch(plugin_id) or plugin_id.startswith("."):
            problems.add(
                "id",
                "safe-id",
                f"'{plugin_id}' is not a safe directory name: use letters, digits, '.', '_', '-'"
                " and do not start with '.'",
            )
    name = r.string("name")
    version = r.string("version")
    api_version = r.integer("api_version", _U32_MAX)
    if api_version is not None and api_version != API_VERSION:
        problems.add(
            "api_version",
            "api-version",
            f"api_version {api_version} is not supported (this runtime implements {API_VERSION})",
        )

    components: list[Component] = []
    raw_components = r.array("components")
    if raw_components is not None and not raw_components:
        problems.add("components", "non-empty", "a package needs at least one component")
    seen_component_ids: set[str] = set()
    seen_ability_keys: set[tuple[AbilityKind, str]] = set()
    for index, raw in enumerate(raw_components or ()):
        component = _parse_component(
            raw, f"components[{index}]", root, problems, seen_component_ids, seen_ability_keys
        )
        if component is not None:
            components.append(component)

    permissions = _parse_permissions(data.get("permissions"), root, problems)
    limits = _parse_limits(data.get("limits"), problems)

    if problems.items:
        return None
    assert schema_version is not None and plugin_id and name and version and api_version is not None
    return Manifest(
        schema_version=schema_version,
        id=plugin_id,
        name=name,
        version=version,
        api_version=api_version,
        components=tuple(components),
        permissions=permissions,
        limits=limits,
        raw=data,
    )


def _parse_component(
    raw: object,
    path: str,
    root: Optional[Path],
    problems: _Problems,
    seen_ids: set[str],
    seen_ability_keys: set[tuple[AbilityKind, str]],
) -> Optional[Component]:
    if not isinstance(raw, dict):
        problems.add(path, "type", f"a component must be an object, not {_type_name(raw)}")
        return None
    r = _Reader(raw, path, problems)
    start = len(problems.items)

    component_id = r.string("id")
    if component_id is not None:
        if component_id in seen_ids:
            problems.add(r.at("id"), "unique", f"duplicate component id '{component_id}'")
        seen_ids.add(component_id)

    rel_path = r.string("path")
    if rel_path is not None:
        _check_file_path(rel_path, r.at("path"), root, problems, what="component")

    world = r.string("world")
    world_kind: Optional[AbilityKind] = None
    if world is not None:
        world_kind = _WORLD_NAMES.get(world_name_of(world))
        if world_kind is None:
            known = ", ".join(sorted(_WORLD_NAMES))
            problems.add(r.at("world"), "world", f"'{world}' names none of the worlds {known}")

    abilities: list[Ability] = []
    raw_abilities = r.array("abilities")
    if raw_abilities is not None and not raw_abilities:
        problems.add(r.at("abilities"), "non-empty", "a component needs at least one ability")
    for index, raw_ability in enumerate(raw_abilities or ()):
        ability = _parse_ability(
            raw_ability, f"{path}.abilities[{index}]", world_kind, problems, seen_ability_keys
        )
        if ability is not None:
            abilities.append(ability)

    if len(problems.items) > start:
        return None
    assert component_id is not None and rel_path is not None and world is not None
    return Component(id=component_id, path=rel_path, world=world, abilities=tuple(abilities))


def _parse_ability(
    raw: object,
    path: str,
    world_kind: Optional[AbilityKind],
    problems: _Problems,
    seen_keys: set[tuple[AbilityKind, str]],
) -> Optional[Ability]:
    if not isinstance(raw, dict):
        problems.add(path, "type", f"an ability must be an object, not {_type_name(raw)}")
        return None
    r = _Reader(raw, path, problems)
    start = len(problems.items)

    kind: Optional[AbilityKind] = None
    kind_text = r.string("kind")
    if kind_text is not None:
        try:
            kind = AbilityKind.parse(kind_text)
        except ValueError:
            known = ", ".join(k.value for k in AbilityKind)
            problems.add(r.at("kind"), "kind", f"unknown kind '{kind_text}' (one of {known})")
    if kind is not None and world_kind is not None and kind is not world_kind:
        problems.add(
            r.at("kind"),
            "kind-world",
            f"a {kind.value} ability needs the {kind.world_name} world, "
            f"but its component targets {world_kind.world_name}",
        )

    type_id = r.string("type_id")
    if type_id is not None:
        type_id = type_id.strip()
        if kind is not None:
            if (kind, type_id) in seen_keys:
                problems.add(
                    r.at("type_id"), "unique", f"ability ({kind.value}, '{type_id}') is declared twice"
                )
            seen_keys.add((kind, type_id))

    display_name = r.string("display_name", required=False)
    schema_text = r.string("config_schema_json", required=False, blank_ok=True)
    default_text = r.string("default_config_json", required=False, blank_ok=True)
    _check_config(r, schema_text, default_text, problems)

    decoder = _parse_decoder_rules(r, kind, problems)

    if len(problems.items) > start:
        return None
    assert kind is not None and type_id is not None
    return Ability(
        kind=kind,
        type_id=type_id,
        display_name=display_name,
        config_schema_json=schema_text,
        default_config_json=default_text,
        decoder=decoder,
    )


def _parse_json_field(r: _Reader, key: str, text: Optional[str]) -> object:
    if text is None:
        return _MISSING
    try:
        return _loads_strict(text)
    except ValueError as exc:
        r.problems.add(r.at(key), "json", f"is not valid JSON: {exc}")
        return _MISSING


def _check_config(
    r: _Reader, schema_text: Optional[str], default_text: Optional[str], problems: _Problems
) -> None:
    schema = _parse_json_field(r, "config_schema_json", schema_text)
    default = _parse_json_field(r, "default_config_json", default_text)
    # `{}` is what the original's templates write for "no schema": nothing to check against.
    if schema is _MISSING or schema == {} or schema is True:
        return
    if not isinstance(schema, (dict, bool)):
        problems.add(
            r.at("config_schema_json"),
            "config-schema",
            f"a JSON Schema must be an object or a boolean, not {_type_name(schema)}",
        )
        return
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        problems.add(r.at("config_schema_json"), "config-schema", f"not a valid JSON Schema: {exc.message}")
        return
    if default is _MISSING:
        return
    # An empty registry: a `$ref` to a URL must fail here, never reach the network.
    validator = validator_class(schema, registry=referencing.Registry())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(default))
    except Exception as exc:  # noqa: BLE001 - unresolvable $ref, bad regex, deep recursion...
        # The validator raises assorted library errors for schemas that pass check_schema but
        # cannot be applied; to the author they are all "this schema does not work".
        problems.add(r.at("config_schema_json"), "config-schema", f"cannot be applied: {exc}")
        return
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.add(
            r.at("default_config_json"),
            "default-config",
            f"does not match config_schema_json at {where}: {error.message}",
        )


def _parse_decoder_rules(
    r: _Reader, kind: Optional[AbilityKind], problems: _Problems
) -> Optional[DecoderRules]:
    raw = r.object("decoder", required=False)
    if raw is None:
        # A decoder without rules could never be picked; a mistyped block was reported already.
        if kind is AbilityKind.DECODER and r.obj.get("decoder") is None:
            problems.add(
                r.at("decoder"),
                "decoder-rules",
                "a decoder needs 'decoder' rules: non-empty ext_scores or a wildcard_score above 0",
            )
        return None
    path = r.at("decoder")
    if kind is not None and kind is not AbilityKind.DECODER:
        problems.add(path, "decoder-kind", f"only decoder abilities take decoder rules, not {kind.value}")
    d = _Reader(raw, path, problems)
    ext_scores: list[ExtScore] = []
    seen_exts: set[str] = set()
    for index, item in enumerate(d.array("ext_scores", required=False) or ()):
        item_path = f"{path}.ext_scores[{index}]"
        if not isinstance(item, dict):
            problems.add(item_path, "type", f"must be an object, not {_type_name(item)}")
            continue
        e = _Reader(item, item_path, problems)
        ext_text = e.string("ext", blank_ok=True)
        score = e.integer("score", _U16_MAX)
        if ext_text is None:
            continue
        ext = ext_text.strip().removeprefix(".").lower()
        if not ext or ext == "*":
            problems.add(
                e.at("ext"), "ext", f"'{ext_text}' is not an extension (use wildcard_score for '*')"
            )
            continue
        if ext in seen_exts:
            problems.add(e.at("ext"), "unique", f"extension '{ext}' is listed twice")
            continue
        seen_exts.add(ext)
        if score is not None:
            ext_scores.append(ExtScore(ext, score))
    wildcard = d.integer("wildcard_score", _U16_MAX, required=False)
    broken_inside = any(p.json_path.startswith(path + ".") for p in problems.items)
    if kind is AbilityKind.DECODER and not seen_exts and not wildcard and not broken_inside:
        problems.add(
            path,
            "decoder-rules",
            "a decoder needs non-empty ext_scores or a wildcard_score above 0",
        )
    return DecoderRules(tuple(ext_scores), wildcard)


def _check_file_path(
    rel_path: str, json_path: str, root: Optional[Path], problems: _Problems, *, what: str
) -> bool:
    reason = unsafe_relative_path_reason(rel_path)
    if reason:
        problems.add(json_path, "safe-path", f"{what} path '{rel_path}' {reason}")
        return False
    if root is None:
        return True
    try:
        real_root = os.path.realpath(root)
        target = os.path.realpath(os.path.join(real_root, rel_path))
        inside = os.path.commonpath([real_root, target]) == real_root
        is_file = inside and os.path.isfile(target)
    except (OSError, ValueError):
        inside = is_file = False
    if not inside:
        problems.add(json_path, "safe-path", f"{what} path '{rel_path}' resolves outside the plugin root")
        return False
    if not is_file:
        problems.add(json_path, "exists", f"{what} file '{rel_path}' not found in {root}")
        return False
    return True


def _parse_permissions(raw: object, root: Optional[Path], problems: _Problems) -> Permissions:
    if raw is None:
        return Permissions()
    if not isinstance(raw, dict):
        problems.add("permissions", "type", f"must be an object, not {_type_name(raw)}")
        return Permissions()
    r = _Reader(raw, "permissions", problems)
    lists: dict[str, list[str]] = {}
    for key in _PERMISSION_KEYS:
        entries: list[str] = []
        for index, item in enumerate(r.array(key, required=False) or ()):
            item_path = f"permissions.{key}[{index}]"
            if not isinstance(item, str):
                problems.add(item_path, "type", f"must be a string, not {_type_name(item)}")
            elif not item.strip():
                problems.add(item_path, "not-blank", "must not be blank")
            elif _check_permission(key, item.strip(), item_path, root, problems):
                entries.append(item.strip())
        lists[key] = entries
    return Permissions(**{key: tuple(value) for key, value in lists.items()})


def _parse_limits(raw: object, problems: _Problems) -> Limits:
    """The optional ``limits`` block. Unlike elsewhere, unknown keys are refused: a misspelt
    limit would otherwise be silently ignored and the default applied."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        problems.add("limits", "type", f"must be an object, not {_type_name(raw)}")
        return Limits()
    for key in raw:
        if key not in _LIMIT_KEYS:
            problems.add(_join("limits", str(key)), "unknown-key",
                         f"unknown limit '{key}' (known: {', '.join(_LIMIT_KEYS)})")
    mib = raw.get("hot_path_memory_mib")
    if mib is None:
        return Limits()
    if not isinstance(mib, int) or isinstance(mib, bool):
        problems.add("limits.hot_path_memory_mib", "type", f"must be an integer, not {_type_name(mib)}")
        return Limits()
    if not 1 <= mib <= MAX_HOT_PATH_MEMORY_MIB:
        problems.add("limits.hot_path_memory_mib", "memory-mib",
                     f"{mib} is outside 1-{MAX_HOT_PATH_MEMORY_MIB} (MiB)")
        return Limits()
    return Limits(hot_path_memory_mib=mib)


def _check_permission(
    key: str, entry: str, path: str, root: Optional[Path], problems: _Problems
) -> bool:
    if key == "files":
        reason = unsafe_relative_path_reason(entry)
        if reason:
            problems.add(path, "safe-path", f"file root '{entry}' {reason}")
            return False
        return True
    if key == "sidecars":
        return _check_file_path(entry, path, root, problems, what="sidecar")
    if key == "env":
        if not _ENV_NAME.fullmatch(entry):
            problems.add(path, "env-name", f"'{entry}' is not an environment variable name")
            return False
        return True
    parsed = _parse_endpoint(entry)
    if isinstance(parsed, str):
        problems.add(path, "endpoint", f"'{entry}' {parsed}")
        return False
    if key == "tcp" and parsed[1] is None:
        problems.add(path, "endpoint", f"'{entry}' needs a port: tcp entries are host:port")
        return False
    return True
