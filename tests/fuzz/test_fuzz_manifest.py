"""Fuzzing ``plugin.json``: real manifests mutated field by field must parse, or be refused with a
``ManifestError`` whose problems name the field that broke (or one the broken rule ties it to).

The bases are every manifest the project ships (examples/plugins, tests/fixtures/plugins) plus
the package tests' two-component manifest, each checked against a plugin root that holds its
files, so the path rules run against the filesystem. A mutation replaces one value (with a
wrong type, a boundary number, a hostile string, a deep structure), deletes a key, or edits
inside the JSON text of ``config_schema_json``/``default_config_json``. A second property
corrupts the file's bytes. (tests/package/test_manifest_properties.py checks random JSON and
random mutations for "ManifestError or Manifest"; this adds the field attribution, the shipped
manifests, the embedded JSON and the deep-nesting cases.)
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from stellatune.errors import ManifestError
from stellatune.manifest import Manifest, load_manifest, parse_manifest

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "examples" / "plugins").glob("*/plugin.json")) + sorted(
    (REPO / "tests" / "fixtures" / "plugins").glob("*/plugin.json")
)
#: Rules that relate two places of the document: the problem may sit at the *other* place.
CROSS_FIELD_RULES = {"unique"}


def _two_components() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "id": "dev.test.fuzz",
        "name": "Fuzz",
        "version": "1.0.0",
        "api_version": 1,
        "components": [
            {
                "id": "decoder",
                "path": "wasm/decoder.wasm",
                "world": "stellatune:plugin/decoder-plugin@0.1.0",
                "abilities": [
                    {
                        "kind": "decoder",
                        "type_id": "sample",
                        "decoder": {"ext_scores": [{"ext": "smp", "score": 50}], "wildcard_score": 0},
                    }
                ],
            },
            {
                "id": "dsp",
                "path": "wasm/dsp.wasm",
                "world": "stellatune:plugin/dsp-plugin@0.1.0",
                "abilities": [
                    {
                        "kind": "dsp",
                        "type_id": "gain",
                        "config_schema_json": '{"type":"object","properties":{"gain_db":{"type":"number"}}}',
                        "default_config_json": '{"gain_db": 0}',
                    }
                ],
            },
        ],
        "permissions": {"files": ["data"], "http": ["example.org:443"], "env": ["LANG"]},
        "limits": {"hot_path_memory_mib": 16},
    }


BASES: list[dict[str, Any]] = [json.loads(p.read_text()) for p in SHIPPED] + [_two_components()]


@pytest.fixture(scope="module")
def roots() -> Iterator[list[Path]]:
    """One plugin root per base, holding every file its manifest names."""
    with tempfile.TemporaryDirectory() as tmp:
        out = []
        for i, doc in enumerate(BASES):
            root = Path(tmp) / str(i)
            files = [c["path"] for c in doc["components"]] + list(doc.get("permissions", {}).get("sidecars", []))
            for rel in files:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b"\0asm")
            for rel in doc.get("permissions", {}).get("files", []):
                (root / rel).mkdir(parents=True, exist_ok=True)
            root.mkdir(parents=True, exist_ok=True)
            parse_manifest(doc, root=root)  # every base is valid as shipped
            out.append(root)
        yield out


# --- values a mutation puts in --------------------------------------------------------------


def _deep(depth: int, leaf: object = 0) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def _deep_schema(depth: int) -> str:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return json.dumps(schema)


HOSTILE_STRINGS = [
    "",
    " ",
    "\t\n",
    "x\x00y",
    "../../etc/passwd",
    "/abs/path",
    "C:/windows",
    "a\\b",
    "wasm/../../x.wasm",
    "é" * 3,
    "\ud7ff\ue000",
    "🎵",
    "x" * 5000,
    "{",
    "{}",
    "[]",
    "null",
    '{"type": 7}',
    '{"type": "object", "required": ["missing"]}',
    '{"$ref": "https://example.invalid/schema.json"}',
    '{"$schema": []}',
    '{"pattern": "("}',
    '{"type": "string", "pattern": "(a+)+$"}',
    '{"type": "object", "properties": {"x": {"$ref": "#/nope"}}}',
    "NaN",
    "Infinity",
    "1e999",
    "stellatune:plugin/dsp-plugin@0.1.0",
    "stellatune:plugin/decoder-plugin@9.9.9",
    "stellatune:plugin/nope-plugin@0.1.0",
    "dsp",
    "decoder",
    "output_sink",
    "output-sink",
    "*",
    ".",
    "*.example.org:443",
    "127.0.0.1:0",
    "[::1]:99999",
    "host:-1",
    "LANG",
    "1BAD",
    "bin/wav-writer",
    _deep_schema(120),
    json.dumps(_deep(120)),
    "[" * 5000 + "0" + "]" * 5000,  # deeper than any JSON parser's recursion
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2, 0xFFFF, 0x10000, 0xFFFF_FFFF, 0x1_0000_0000, 2**63, 4096, 4097])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats()  # a Python caller (not JSON) may pass NaN and infinities
    | st.text(max_size=30)
    | st.sampled_from(HOSTILE_STRINGS)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
) | st.sampled_from([_deep(50), _deep(500), [None] * 100, {"k": ["v"] * 20}])


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (tuple of keys and indices) to a value inside ``node``, itself excluded."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def json_path(path: tuple[Any, ...]) -> str:
    """The parser's spelling: ``components[0].abilities[1].type_id`` (``$`` for the document)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def _container(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> tuple[int, dict[str, Any], tuple[Any, ...], str]:
    """(base index, the mutated document, the path mutated, what was done)."""
    index = draw(st.integers(0, len(BASES) - 1))
    doc = copy.deepcopy(BASES[index])
    path = draw(st.sampled_from(list(_paths(doc))))
    parent = _container(doc, path)
    key = path[-1]
    old = parent[key]
    actions = ["replace", "delete"]
    if isinstance(old, str) and old.lstrip().startswith(("{", "[")):
        actions.append("embedded")
    if isinstance(old, str):
        actions.append("edit-string")
    action = draw(st.sampled_from(actions))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = draw(values)
    elif action == "edit-string":
        how = draw(st.sampled_from(["nul", "pad", "prefix", "upper", "truncate", "double"]))
        parent[key] = {
            "nul": old + "\x00",
            "pad": f"  {old}  ",
            "prefix": "../" + old,
            "upper": old.upper(),
            "truncate": old[: draw(st.integers(0, max(0, len(old) - 1)))],
            "double": old + old,
        }[how]
        action = f"edit-string:{how}"
    else:  # change one value inside the JSON text of config_schema_json / default_config_json
        inner = json.loads(old)
        spots = list(_paths(inner))
        if spots:
            spot = draw(st.sampled_from(spots))
            _container(inner, spot)[spot[-1]] = draw(values)
        else:
            inner = draw(values)
        try:
            parent[key] = json.dumps(inner)
        except (ValueError, RecursionError):  # NaN, or deeper than the encoder goes
            parent[key] = json.dumps(inner, allow_nan=True) if not isinstance(inner, float) else "NaN"
    return index, doc, path, action


def related(problem_path: str, mutated_path: tuple[Any, ...]) -> bool:
    """Does a problem at ``problem_path`` name the mutated field, a field of the same object (a
    rule across sibling fields: kind vs world, schema vs default), or an ancestor of it?"""
    parent = json_path(mutated_path[:-1])
    here = json_path(mutated_path)
    if parent == "$" or problem_path == "$":
        return True
    return (
        problem_path == parent
        or problem_path.startswith((parent + ".", parent + "["))
        or here.startswith((problem_path + ".", problem_path + "["))
    )


def test_mutated_manifests_parse_or_name_the_broken_field(fuzz, roots):
    def check(case: tuple[int, dict[str, Any], tuple[Any, ...], str]) -> str:
        index, doc, path, action = case
        try:
            manifest = parse_manifest(doc, root=roots[index])
        except ManifestError as e:
            assert e.problems, "a ManifestError names at least one problem"
            for p in e.problems:
                assert isinstance(p.json_path, str) and p.json_path, p
                assert p.rule and p.message and "\x00" not in str(p.rule), p
            assert any(related(p.json_path, path) or p.rule in CROSS_FIELD_RULES for p in e.problems), (
                f"{action} at {json_path(path)} was refused for unrelated fields: {[str(p) for p in e.problems]}"
            )
            str(e)  # the message renders
            return "refused"
        assert isinstance(manifest, Manifest)
        # Whatever passes survives its own round trip (what the install receipt stores).
        again = parse_manifest(json.loads(json.dumps(manifest.to_json())), root=roots[index])
        assert again == manifest
        return "parsed"

    outcomes = fuzz.run("manifest", mutated(), check, bases=len(BASES))
    assert outcomes["refused"] > 0


@st.composite
def corrupted_files(draw: st.DrawFn) -> tuple[int, bytes]:
    index = draw(st.integers(0, len(BASES) - 1))
    data = bytearray(json.dumps(BASES[index], indent=2).encode())
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "bom", "utf16"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"\x00", b"{", b"]", b"\xff"]))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif how == "bom":
            data[:0] = b"\xef\xbb\xbf"
        else:
            data = bytearray(bytes(data).decode("utf-8", "replace").encode("utf-16"))
    return index, bytes(data)


def test_corrupted_manifest_files_load_or_fail_with_a_manifest_error(fuzz, roots, tmp_path):
    def check(case: tuple[int, bytes]) -> str:
        index, data = case
        path = roots[index] / "plugin.json"
        path.write_bytes(data)
        try:
            load_manifest(path)
        except ManifestError as e:
            assert e.problems and e.file == path
            return "refused"
        finally:
            os.unlink(path)
        return "loaded"

    fuzz.run("manifest_file", corrupted_files(), check)


@pytest.mark.parametrize("depth", [60, 120, 400])
def test_a_deeply_nested_config_schema_is_a_manifest_error(depth):
    """Found by the fuzzer: jsonschema's ``check_schema`` recursed out of the stack on a
    ``config_schema_json`` only ~100 levels deep, and the RecursionError escaped the parser (so
    an install of such a package failed with a RecursionError, not a ManifestError)."""
    doc = copy.deepcopy(BASES[-1])
    ability = doc["components"][1]["abilities"][0]
    ability["config_schema_json"] = _deep_schema(depth)
    ability["default_config_json"] = "{}"
    try:
        parse_manifest(doc)
    except ManifestError as e:
        assert [p.json_path for p in e.problems] == ["components[1].abilities[0].config_schema_json"]
