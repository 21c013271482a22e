"""Property tests: no input, however broken, makes the parser raise anything but ManifestError."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stellatune.errors import ManifestError
from stellatune.manifest import Manifest, load_manifest, parse_manifest

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    # Strings that matter to the rules: kinds, worlds, paths, JSON text, endpoints.
    | st.sampled_from(
        [
            "decoder",
            "output-sink",
            "dsp",
            "../x",
            "/abs",
            "C:/w",
            "a\\b",
            "{}",
            "{",
            "[1]",
            '{"type":"object"}',
            "stellatune:plugin/dsp-plugin@0.1.0",
            "*",
            ".",
            "",
            " ",
            "*.example.org:443",
            "127.0.0.1:0",
            "[::1]:80",
            "1A",
            "x\x00y",
            "NaN",
        ]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(["id", "path", "kind"]), children, max_size=4)
    ),
    max_leaves=20,
)


def _expect_manifest_or_manifest_error(data: object, root: Path | None = None) -> None:
    try:
        result = parse_manifest(data, root=root)
    except ManifestError as exc:
        assert exc.problems, "a ManifestError must name at least one problem"
        return
    assert isinstance(result, Manifest)
    # Whatever passes must survive its own round trip.
    assert parse_manifest(json.loads(json.dumps(result.to_json()))) == result


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_random_json_values(data):
    _expect_manifest_or_manifest_error(data)


def _paths(node, prefix=()):
    """Every (container path, key) in a JSON document."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield prefix, key
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield prefix, index
            yield from _paths(child, (*prefix, index))


def _resolve(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_manifests(draw, base_factory):
    doc = copy.deepcopy(base_factory())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        spots = list(_paths(doc))
        container_path, key = draw(st.sampled_from(spots))
        container = _resolve(doc, container_path)
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "delete":
            del container[key]
        elif action == "insert" and isinstance(container, list):
            container.insert(key, draw(json_values))
        else:
            container[key] = draw(json_values)
    return doc


@pytest.fixture(scope="module")
def package_root():
    # A real root with the components present, so path rules run against the filesystem too.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel in ("wasm/decoder.wasm", "wasm/dsp.wasm"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"\0asm")
        yield root


@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutations_of_a_valid_manifest(data, manifest_dict, package_root):
    base = copy.deepcopy(manifest_dict)
    doc = data.draw(mutated_manifests(lambda: base))
    _expect_manifest_or_manifest_error(doc, root=package_root)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=150, deadline=None)
def test_random_file_bytes(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plugin.json"
        path.write_bytes(content)
        with pytest.raises(ManifestError):
            load_manifest(path)
