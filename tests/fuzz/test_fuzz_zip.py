"""Fuzzing install artifacts: hostile zips (``..``, absolute and drive names, backslashes, NUL,
symlinks, devices, duplicates, file/directory collisions, encrypted or bzip2 entries, lying
sizes and CRCs, huge declared sizes, truncation, flipped bytes) must be refused with a
``PackageError`` and leave *everything* as it was: nothing written outside the plugins
directory, no staging directory left inside it, the previous install intact. An artifact with
none of those features may install; then only ``plugins/<id>`` changed.

The zips are written byte by byte (tests/fuzz/zipcraft.py), since ``zipfile`` would not write
most of them. Limits are small here (1 MiB, 64 entries) so a bomb reaches them at once; one
case runs the default limits against a declared size of 4 GiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from stellatune.errors import ArtifactLimitError, PackageError
from stellatune.package import ArtifactLimits, install_from_artifact, list_installed, uninstall_by_id

from .zipcraft import DEFLATED, STORED, Entry, build_zip

pytestmark = pytest.mark.fuzz

LIMITS = ArtifactLimits(max_total_bytes=1 << 20, max_entries=64)
PLUGIN_ID = "dev.test.zipfuzz"
MANIFEST = {
    "schema_version": 1,
    "id": PLUGIN_ID,
    "name": "Zip fuzz",
    "version": "2.0.0",
    "api_version": 1,
    "components": [
        {
            "id": "dsp",
            "path": "wasm/dsp.wasm",
            "world": "stellatune:plugin/dsp-plugin@0.1.0",
            "abilities": [{"kind": "dsp", "type_id": "gain"}],
        }
    ],
}

#: Names whose mere presence must make the install fail.
UNSAFE_NAMES = [
    b"..",
    b"../escape.txt",
    b"../../escape.txt",
    b"../../../escape.txt",
    b"a/../../escape.txt",
    b"wasm/../../../escape.txt",
    b"/abs-escape.txt",
    b"//abs-escape.txt",
    b"C:/escape.txt",
    b"c:escape.txt",
    b"a\\..\\..\\escape.txt",
    b"..\\escape.txt",
    b"a\x00b",
    b"",
    b".",
    b"./",
    b"/",
]
#: Names that stay inside (possibly odd, but safe).
ODD_NAMES = [
    b"a/./b.txt",
    b"a//b.txt",
    b"./c.txt",
    b"dir/",
    b"dir/sub/",
    b"...",
    b"..a",
    b"a..",
    b".hidden",
    b".install.json",
    b".uninstall-pending",
    "unicod\u00e9.txt".encode(),
    "\u2025/x".encode(),  # a look-alike of '..'
    b"\xff\xfe.bin",  # not UTF-8: zipfile decodes it as cp437
    b"x" * 200,
    b"plugin.json",
    b"wasm/dsp.wasm",
    b"nested/plugin.json",
]


@st.composite
def hostile_entry(draw: st.DrawFn) -> tuple[Entry, list[str]]:
    """An entry and the features that make it unsafe (empty: it may be fine)."""
    features: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(UNSAFE_NAMES))
        features.append("unsafe-name")
    elif draw(st.booleans()):
        name = draw(st.sampled_from(ODD_NAMES))
    else:
        name = draw(st.text(min_size=1, max_size=12)).encode("utf-8", "surrogatepass")
        if (
            b"\x00" in name
            or b"\\" in name
            or name.startswith(b"/")
            or b".." in name.split(b"/")
            or re.match(rb"[A-Za-z]:", name)
            or not _key(name)
        ):
            features.append("unsafe-name")
    data = draw(st.binary(max_size=64) | st.sampled_from([b"", b"\0asm\x01\0\0\0", b"x" * 4096]))
    kind = draw(st.sampled_from(["file"] * 6 + ["none", "dir", "symlink", "fifo", "chardev", "socket"]))
    mode = {
        "file": stat.S_IFREG | 0o644,
        "none": 0,
        "dir": stat.S_IFDIR | 0o755,
        "symlink": stat.S_IFLNK | 0o777,
        "fifo": stat.S_IFIFO | 0o644,
        "chardev": stat.S_IFCHR | 0o644,
        "socket": stat.S_IFSOCK | 0o644,
    }[kind]
    if kind in ("symlink", "fifo", "chardev", "socket"):
        features.append(kind)
    if kind == "file" and draw(st.integers(0, 5)) == 0:
        mode |= draw(st.sampled_from([0o4755, 0o2755, 0o7777, 0o111]))
    method = draw(st.sampled_from([DEFLATED] * 4 + [STORED] * 3 + [12, 14, 99, 0xFFFF]))
    if method not in (STORED, DEFLATED):
        features.append("method")
    flags = draw(st.sampled_from([0] * 6 + [1, 8, 0x41, 0x800]))
    if flags & 1:
        features.append("encrypted")
    declared = None
    crc = None
    lie = draw(st.sampled_from(["none"] * 6 + ["size+1", "size-1", "size0", "huge", "crc"]))
    if lie == "size+1":
        declared = len(data) + 1
    elif lie == "size-1" and data:
        declared = len(data) - 1
    elif lie == "size0" and data:
        declared = 0
    elif lie == "huge":
        declared = draw(st.sampled_from([LIMITS.max_total_bytes + 1, 0x7FFF_FFFF, 0xFFFF_FFFE]))
    elif lie == "crc" and data:
        crc = zlib.crc32(data) ^ 0x1
    # Only a file's bytes are read (a directory entry's never are): lies about them must fail.
    is_file = not name.endswith(b"/") and kind != "dir"
    if declared is not None and declared > LIMITS.max_total_bytes:
        features.append("huge")
    elif ((declared is not None and declared < len(data)) or crc is not None) and is_file:
        # Fewer bytes than declared is no lie that matters: the CRC still covers what is read,
        # and the stager counts the bytes it writes, never the header's.
        features.append("lie")
    local_name = None
    if draw(st.integers(0, 15)) == 0:
        local_name = name + b"x"
        if is_file:
            features.append("lie")
    return Entry(name, data, method, flags, mode, declared, crc, local_name), features


def _zip_name(entry: Entry) -> str:
    return entry.name.decode("utf-8" if entry.flags & 0x800 else "cp437")


def _key(name: bytes) -> bytes:
    """The name as the stager normalises it (empty and ``.`` segments dropped)."""
    return b"/".join(p for p in name.split(b"/") if p not in (b"", b"."))


@st.composite
def hostile_zips(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    entries: list[Entry] = []
    features: list[str] = []
    if draw(st.booleans()):  # a real plugin inside, so some artifacts are installable
        prefix = draw(st.sampled_from([b"", b"pkg/", b"a/b/"]))
        entries.append(Entry(prefix + b"plugin.json", json.dumps(MANIFEST).encode()))
        entries.append(Entry(prefix + b"wasm/dsp.wasm", b"\0asm\x01\0\0\0"))
    for entry, why in draw(st.lists(hostile_entry(), max_size=5)):
        entries.insert(draw(st.integers(0, len(entries))), entry)
        features += why
    if entries and draw(st.integers(0, 4)) == 0:  # the same name twice
        twin = draw(st.sampled_from(entries))
        entries.append(Entry(twin.name, b"second", flags=twin.flags & 0x800, mode=twin.mode))
    try:  # names as zipfile reads them: UTF-8 when flagged so, else cp437
        keys = [_key(_zip_name(e).encode()) for e in entries]
        if len(set(keys)) != len(keys):
            features.append("duplicate")
    except UnicodeDecodeError:
        features.append("damaged")
    data = build_zip(entries)
    damage = draw(st.sampled_from(["none"] * 8 + ["truncate", "flip", "garbage"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
        features.append("damaged")
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        # A flip may land in a byte nobody reads (a timestamp), or turn a hostile entry into a
        # harmless one: the outcome is open, only the "nothing written outside" part holds.
        features = []
    elif damage == "garbage":
        data = draw(st.binary(max_size=300))
        features.append("damaged")
    return data, features


def _snapshot(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st_ = full.lstat()
            rel = full.relative_to(root).as_posix()
            if stat.S_ISREG(st_.st_mode):
                out[rel] = hashlib.sha256(full.read_bytes()).hexdigest() + f":{st_.st_mode:o}"
            else:
                out[rel] = f"{st_.st_mode:o}"
    return out


def _home(tmp: Path) -> tuple[Path, Path]:
    """``tmp/home/plugins`` with version 1.0.0 of the plugin installed; a sibling file and
    directory beside it (what an escaping entry would land on)."""
    home = tmp / "home"
    source = tmp / "v1"
    (source / "wasm").mkdir(parents=True)
    (source / "plugin.json").write_text(json.dumps({**MANIFEST, "version": "1.0.0"}))
    (source / "wasm" / "dsp.wasm").write_bytes(b"\0asm v1")
    plugins = home / "plugins"
    install_from_artifact(plugins, source)
    (home / "sibling.txt").write_text("must stay alone")
    (home / "victim").mkdir()
    return home, plugins


def test_hostile_zips_are_refused_and_write_nothing_outside(fuzz, tmp_path):
    work = tmp_path / "cases"
    work.mkdir()

    def check(case: tuple[bytes, list[str]]) -> str:
        data, features = case
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            root = Path(tmp)
            _, plugins = _home(root)
            artifact = root / "artifact.zip"
            artifact.write_bytes(data)
            before = _snapshot(root)
            try:
                installed = install_from_artifact(plugins, artifact, limits=LIMITS)
            except PackageError as e:
                assert _snapshot(root) == before, f"a refused install changed files: {e}"
                [row] = list_installed(plugins)
                assert row.version == "1.0.0"
                return type(e).__name__
            assert not features, f"installed an artifact with {features}"
            after = _snapshot(root)
            changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
            assert all(k.startswith(f"home/plugins/{PLUGIN_ID}") for k in changed), sorted(changed)
            assert installed.id == PLUGIN_ID and installed.version == "2.0.0"
            for dirpath, dirnames, filenames in os.walk(plugins):
                for name in dirnames + filenames:
                    mode = (Path(dirpath) / name).lstat().st_mode
                    assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), name
                    assert not mode & (stat.S_ISUID | stat.S_ISGID), name
            assert not [p for p in os.listdir(plugins) if p.startswith(".staging-")]
            uninstall_by_id(plugins, PLUGIN_ID)
            return "installed"

    outcomes = fuzz.run("zip", hostile_zips(), check, limits=LIMITS.__dict__)
    assert sum(n for k, n in outcomes.items() if k != "installed") > 0


@pytest.mark.parametrize("declared", [0xFFFF_FFFE, 300 * 1024 * 1024])
def test_a_huge_declared_size_is_refused_before_writing(tmp_path, declared):
    entries = [
        Entry(b"plugin.json", json.dumps(MANIFEST).encode()),
        Entry(b"wasm/dsp.wasm", b"\0asm\x01\0\0\0"),
        Entry(b"bomb.bin", b"\0" * 1024, declared_size=declared),
    ]
    _, plugins = _home(tmp_path)
    artifact = tmp_path / "bomb.zip"
    artifact.write_bytes(build_zip(entries))
    before = _snapshot(tmp_path)
    with pytest.raises(ArtifactLimitError, match="declares"):
        install_from_artifact(plugins, artifact)  # the default limits (256 MiB)
    assert _snapshot(tmp_path) == before


def test_a_real_deflate_bomb_stops_at_the_limit(tmp_path):
    """Honest headers, 8 MiB of zeros deflated to a few KiB: counted as written, refused."""
    bomb = Entry(b"zeros.bin", b"\0" * (8 << 20))
    entries: list[Any] = [Entry(b"plugin.json", json.dumps(MANIFEST).encode()), bomb]
    _, plugins = _home(tmp_path)
    artifact = tmp_path / "bomb.zip"
    artifact.write_bytes(build_zip(entries))
    assert artifact.stat().st_size < 64 * 1024
    before = _snapshot(tmp_path)
    with pytest.raises(ArtifactLimitError):
        install_from_artifact(plugins, artifact, limits=LIMITS)
    assert _snapshot(tmp_path) == before
