#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris/libFuzzer) of the ``plugin.json`` parser.

    .venv/bin/python tests/fuzz/atheris_manifest.py -max_total_time=60

Any libFuzzer flag works (``-runs=N``, ``-jobs=N``, a corpus directory). The shipped manifests
(examples/plugins, tests/fixtures/plugins) are the seeds. Each input is read two ways: as the
file's bytes (``load_manifest``'s path: UTF-8, strict JSON, then the rules), and as a recipe
that edits one field of a seed manifest. The property: a ``Manifest`` whose normalised JSON
parses back to itself, or a ``ManifestError`` that names at least one problem; anything else
(a RecursionError, a TypeError, a crash) is a finding, which libFuzzer saves as ``crash-*``.
tests/fuzz/test_atheris.py runs this for 10 s in the default suite (120 s under ``--full``).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["stellatune"]):
    from stellatune.errors import ManifestError
    from stellatune.manifest import parse_manifest
    from stellatune.manifest.reader import loads_strict

REPO = Path(__file__).resolve().parents[2]
SEED_FILES = sorted((REPO / "examples" / "plugins").glob("*/plugin.json")) + sorted(
    (REPO / "tests" / "fixtures" / "plugins").glob("*/plugin.json")
)
SEEDS = [json.loads(p.read_text()) for p in SEED_FILES]


def check(doc: object) -> None:
    try:
        manifest = parse_manifest(doc)
    except ManifestError as e:
        if not e.problems:
            raise AssertionError("a ManifestError without problems") from e
        str(e)
        return
    again = parse_manifest(json.loads(json.dumps(manifest.to_json())))
    if again != manifest:
        raise AssertionError(f"normalised manifest does not parse back to itself: {manifest!r} != {again!r}")


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


def _value(fdp: atheris.FuzzedDataProvider) -> object:
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(9)
    if kind == 3:
        return fdp.ConsumeFloat()
    if kind == 4:
        return [_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if kind == 5:
        return {fdp.ConsumeUnicodeNoSurrogates(6): _value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    if kind == 6:  # JSON text: config_schema_json and default_config_json are strings of JSON
        return fdp.ConsumeUnicodeNoSurrogates(80)
    return fdp.ConsumeUnicode(24)


def edit_seed(fdp: atheris.FuzzedDataProvider) -> object:
    doc = copy.deepcopy(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        spots = _paths(doc)
        if not spots:
            break
        path = spots[fdp.ConsumeIntInRange(0, len(spots) - 1)]
        parent: object = doc
        for key in path[:-1]:
            parent = parent[key]  # type: ignore[index]
        if fdp.ConsumeBool():
            parent[path[-1]] = _value(fdp)  # type: ignore[index]
        else:
            del parent[path[-1]]  # type: ignore[attr-defined]
    return doc


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if data[:1] == b"\x01":  # a recipe: edit a seed
        check(edit_seed(atheris.FuzzedDataProvider(data[1:])))
        return
    try:  # the file's bytes, as load_manifest reads them
        text = data.decode("utf-8-sig")
        doc = loads_strict(text)
    except (UnicodeDecodeError, ValueError):
        return  # load_manifest turns exactly these into a ManifestError (tests/package covers it)
    check(doc)


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-seed_inputs=") for a in argv):
        argv.append("-seed_inputs=" + ",".join(str(p) for p in SEED_FILES))
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
