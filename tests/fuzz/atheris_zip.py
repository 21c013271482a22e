#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris/libFuzzer) of the zip stager (``stage_artifact``).

    .venv/bin/python tests/fuzz/atheris_zip.py -max_total_time=60

Each input is written as ``artifact.zip`` and staged into a fresh directory three levels below a
private work directory (so a ``../../..`` entry would land inside the work directory, where it
is seen). The property: staging succeeds and wrote only plain files and directories under the
staging directory, or raises a ``PackageError`` having written nothing outside it; anything
else is a finding (libFuzzer saves it as ``crash-*``). The seeds are zips written by
tests/fuzz/zipcraft.py: a valid plugin, and ones with hostile names, a symlink, a duplicate, a
lying size. tests/fuzz/test_atheris.py runs this for 10 s in the default suite (120 s under
``--full``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

# zipfile too: its header parsing is what a hostile artifact meets first.
with atheris.instrument_imports(include=["stellatune", "zipfile"]):
    from stellatune.errors import PackageError
    from stellatune.package.archive import ArtifactLimits, stage_artifact

import zipcraft

LIMITS = ArtifactLimits(max_total_bytes=1 << 20, max_entries=64)
#: Where inputs are staged (emptied at start; libFuzzer exits without running Python's cleanup,
#: so a fixed place, reused, rather than a new temporary directory per run).
WORK = Path(
    os.environ.get("STELLATUNE_ATHERIS_WORK") or Path(tempfile.gettempdir()) / f"stellatune-atheris-{os.getuid()}"
)
SEEDS = WORK / "seeds"
WORK = WORK / "zip"
DEST_PARENT = WORK / "a" / "b" / "c"
ARTIFACT = DEST_PARENT / "artifact.zip"


def _seed_zips() -> list[Path]:
    manifest = json.dumps(
        {
            "schema_version": 1,
            "id": "dev.test.atheris",
            "name": "A",
            "version": "1",
            "api_version": 1,
            "components": [
                {
                    "id": "c",
                    "path": "wasm/c.wasm",
                    "world": "stellatune:plugin/dsp-plugin@0.1.0",
                    "abilities": [{"kind": "dsp", "type_id": "t"}],
                }
            ],
        }
    ).encode()
    E = zipcraft.Entry
    valid = [E(b"plugin.json", manifest), E(b"wasm/c.wasm", b"\0asm\x01\0\0\0"), E(b"dir/", b"")]
    cases = {
        "valid": valid,
        "stored": [E(e.name, e.data, method=zipcraft.STORED) for e in valid],
        "dotdot": [*valid, E(b"../../../escape", b"x")],
        "absolute": [*valid, E(b"/tmp/escape", b"x")],
        "symlink": [*valid, E(b"link", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)],
        "duplicate": [*valid, E(b"plugin.json", b"{}")],
        "lying-size": [*valid, E(b"big", b"x" * 100, declared_size=2)],
        "nested": [E(b"p/q/" + e.name, e.data) for e in valid],
    }
    SEEDS.mkdir(parents=True, exist_ok=True)
    out = []
    for name, entries in cases.items():
        path = SEEDS / f"{name}.zip"
        path.write_bytes(zipcraft.build_zip(entries))
        out.append(path)
    return out


def _tree(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add((Path(dirpath) / name).relative_to(root).as_posix())
    return found


BASELINE = {"a", "a/b", "a/b/c", "a/b/c/artifact.zip"}


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    ARTIFACT.write_bytes(data)
    dest = DEST_PARENT / "dest"
    dest.mkdir()
    try:
        stage_artifact(ARTIFACT, dest, LIMITS)
    except PackageError:
        pass  # refused; what it wrote inside dest before refusing is the caller's to remove
    outside = {p for p in _tree(WORK) if p not in BASELINE and not p.startswith("a/b/c/dest")}
    if outside:
        raise AssertionError(f"staging wrote outside its directory: {sorted(outside)}")
    for p in _tree(dest):
        mode = (dest / p).lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) or mode & (stat.S_ISUID | stat.S_ISGID):
            raise AssertionError(f"staged {p!r} with mode {mode:o}")
    shutil.rmtree(dest)


def main() -> None:
    shutil.rmtree(WORK.parent, ignore_errors=True)
    DEST_PARENT.mkdir(parents=True)
    argv = list(sys.argv)
    if not any(a.startswith("-seed_inputs=") for a in argv):
        argv.append("-seed_inputs=" + ",".join(str(p) for p in _seed_zips()))
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
