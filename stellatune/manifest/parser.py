"""``parse_manifest`` / ``load_manifest``: one walk over ``plugin.json`` that collects every problem.

The walk never stops at the first broken rule: each level reads what it can, records what it
cannot, and builds its value only when nothing inside it broke, so an author fixes a file in one
round trip. The rules themselves live in :mod:`.policy` (shared with other planes) and
:mod:`.config_schema`; this module knows the document's shape and the JSON paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import ManifestError, ManifestProblem
from .config_schema import check_config
from .model import (
    API_VERSION,
    LIMIT_KEYS,
    MAX_HOT_PATH_MEMORY_MIB,
    PERMISSION_KEYS,
    SCHEMA_VERSION,
    WORLD_NAMES,
    Ability,
    AbilityKind,
    Component,
    DecoderRules,
    ExtScore,
    Limits,
    Manifest,
    Permissions,
)
from .policy import file_path_breach, permission_entry_breach, plugin_id_breach, world_name_of
from .reader import U16_MAX, U32_MAX, Problems, Reader, join, loads_strict, type_name

__all__ = ["parse_manifest", "load_manifest"]


def parse_manifest(data: object, *, root: Optional[Path] = None, file: Optional[Path] = None) -> Manifest:
    """Validate a parsed ``plugin.json`` document and build the :class:`Manifest`.

    :param data: the JSON value (normally a dict from ``json.loads``).
    :param root: the plugin root; when given, component and sidecar paths must name regular files
        inside it.
    :param file: the file ``data`` came from, named in the error.
    :raises ManifestError: listing every broken rule.
    """
    problems = Problems()
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
        raise ManifestError([ManifestProblem("$", "read", f"cannot read: {exc.strerror or exc}")], path) from None
    except UnicodeDecodeError as exc:
        raise ManifestError([ManifestProblem("$", "json", f"not UTF-8: {exc.reason}")], path) from None
    try:
        data = loads_strict(text)
    except ValueError as exc:
        raise ManifestError([ManifestProblem("$", "json", f"not valid JSON: {exc}")], path) from None
    return parse_manifest(data, root=path.parent, file=path)


def _parse_document(data: object, root: Optional[Path], problems: Problems) -> Optional[Manifest]:
    if not isinstance(data, dict):
        problems.add("$", "type", f"the manifest must be a JSON object, not {type_name(data)}")
        return None
    r = Reader(data, "$", problems)

    schema_version = r.integer("schema_version", U32_MAX)
    if schema_version is not None and schema_version != SCHEMA_VERSION:
        problems.add(
            "schema_version",
            "schema-version",
            f"unsupported schema_version {schema_version} (this runtime reads {SCHEMA_VERSION})",
        )
    plugin_id = r.string("id")
    if plugin_id is not None:
        plugin_id = plugin_id.strip()
        breach = plugin_id_breach(plugin_id)
        if breach:
            problems.add("id", *breach)
    name = r.string("name")
    version = r.string("version")
    api_version = r.integer("api_version", U32_MAX)
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
        component = _parse_component(raw, f"components[{index}]", root, problems, seen_component_ids, seen_ability_keys)
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
    problems: Problems,
    seen_ids: set[str],
    seen_ability_keys: set[tuple[AbilityKind, str]],
) -> Optional[Component]:
    if not isinstance(raw, dict):
        problems.add(path, "type", f"a component must be an object, not {type_name(raw)}")
        return None
    r = Reader(raw, path, problems)
    start = len(problems.items)

    component_id = r.string("id")
    if component_id is not None:
        if component_id in seen_ids:
            problems.add(r.at("id"), "unique", f"duplicate component id '{component_id}'")
        seen_ids.add(component_id)

    rel_path = r.string("path")
    if rel_path is not None:
        breach = file_path_breach(rel_path, root, what="component")
        if breach:
            problems.add(r.at("path"), *breach)

    world = r.string("world")
    world_kind: Optional[AbilityKind] = None
    if world is not None:
        world_kind = WORLD_NAMES.get(world_name_of(world))
        if world_kind is None:
            known = ", ".join(sorted(WORLD_NAMES))
            problems.add(r.at("world"), "world", f"'{world}' names none of the worlds {known}")

    abilities: list[Ability] = []
    raw_abilities = r.array("abilities")
    if raw_abilities is not None and not raw_abilities:
        problems.add(r.at("abilities"), "non-empty", "a component needs at least one ability")
    for index, raw_ability in enumerate(raw_abilities or ()):
        ability = _parse_ability(raw_ability, f"{path}.abilities[{index}]", world_kind, problems, seen_ability_keys)
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
    problems: Problems,
    seen_keys: set[tuple[AbilityKind, str]],
) -> Optional[Ability]:
    if not isinstance(raw, dict):
        problems.add(path, "type", f"an ability must be an object, not {type_name(raw)}")
        return None
    r = Reader(raw, path, problems)
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
                problems.add(r.at("type_id"), "unique", f"ability ({kind.value}, '{type_id}') is declared twice")
            seen_keys.add((kind, type_id))

    display_name = r.string("display_name", required=False)
    schema_text = r.string("config_schema_json", required=False, blank_ok=True)
    default_text = r.string("default_config_json", required=False, blank_ok=True)
    check_config(r, schema_text, default_text)

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


def _parse_decoder_rules(r: Reader, kind: Optional[AbilityKind], problems: Problems) -> Optional[DecoderRules]:
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
    d = Reader(raw, path, problems)
    ext_scores: list[ExtScore] = []
    seen_exts: set[str] = set()
    for index, item in enumerate(d.array("ext_scores", required=False) or ()):
        item_path = f"{path}.ext_scores[{index}]"
        if not isinstance(item, dict):
            problems.add(item_path, "type", f"must be an object, not {type_name(item)}")
            continue
        e = Reader(item, item_path, problems)
        ext_text = e.string("ext", blank_ok=True)
        score = e.integer("score", U16_MAX)
        if ext_text is None:
            continue
        ext = ext_text.strip().removeprefix(".").lower()
        # Still a dot or a blank in front after one dot went: no file's extension (and not
        # normalised to itself, so the receipt's copy would read differently).
        if not ext or ext == "*" or ext.startswith(".") or ext != ext.strip():
            problems.add(e.at("ext"), "ext", f"'{ext_text}' is not an extension (use wildcard_score for '*')")
            continue
        if ext in seen_exts:
            problems.add(e.at("ext"), "unique", f"extension '{ext}' is listed twice")
            continue
        seen_exts.add(ext)
        if score is not None:
            ext_scores.append(ExtScore(ext, score))
    wildcard = d.integer("wildcard_score", U16_MAX, required=False)
    broken_inside = any(p.json_path.startswith(path + ".") for p in problems.items)
    if kind is AbilityKind.DECODER and not seen_exts and not wildcard and not broken_inside:
        problems.add(
            path,
            "decoder-rules",
            "a decoder needs non-empty ext_scores or a wildcard_score above 0",
        )
    return DecoderRules(tuple(ext_scores), wildcard)


def _parse_permissions(raw: object, root: Optional[Path], problems: Problems) -> Permissions:
    if raw is None:
        return Permissions()
    if not isinstance(raw, dict):
        problems.add("permissions", "type", f"must be an object, not {type_name(raw)}")
        return Permissions()
    r = Reader(raw, "permissions", problems)
    lists: dict[str, list[str]] = {}
    for key in PERMISSION_KEYS:
        entries: list[str] = []
        for index, item in enumerate(r.array(key, required=False) or ()):
            item_path = f"permissions.{key}[{index}]"
            if not isinstance(item, str):
                problems.add(item_path, "type", f"must be a string, not {type_name(item)}")
            elif not item.strip():
                problems.add(item_path, "not-blank", "must not be blank")
            else:
                breach = permission_entry_breach(key, item.strip(), root)
                if breach:
                    problems.add(item_path, *breach)
                else:
                    entries.append(item.strip())
        lists[key] = entries
    return Permissions(**{key: tuple(value) for key, value in lists.items()})


def _parse_limits(raw: object, problems: Problems) -> Limits:
    """The optional ``limits`` block. Unlike elsewhere, unknown keys are refused: a misspelt
    limit would otherwise be silently ignored and the default applied."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        problems.add("limits", "type", f"must be an object, not {type_name(raw)}")
        return Limits()
    for key in raw:
        if key not in LIMIT_KEYS:
            problems.add(
                join("limits", str(key)), "unknown-key", f"unknown limit '{key}' (known: {', '.join(LIMIT_KEYS)})"
            )
    mib = raw.get("hot_path_memory_mib")
    if mib is None:
        return Limits()
    if not isinstance(mib, int) or isinstance(mib, bool):
        problems.add("limits.hot_path_memory_mib", "type", f"must be an integer, not {type_name(mib)}")
        return Limits()
    if not 1 <= mib <= MAX_HOT_PATH_MEMORY_MIB:
        problems.add("limits.hot_path_memory_mib", "memory-mib", f"{mib} is outside 1-{MAX_HOT_PATH_MEMORY_MIB} (MiB)")
        return Limits()
    return Limits(hot_path_memory_mib=mib)
