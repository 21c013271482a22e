"""Installing from directories and zips, including hostile ones.

Every hostile case asserts three things: the error class, that nothing changed anywhere under the
test's temporary directory (so nothing was written outside ``plugins_dir`` and no staging dir was
left behind), and that the previous install of the same id is byte-for-byte intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from stellatune.errors import ArtifactLimitError, PackageError, UnsafeArtifactError
from stellatune.manifest import load_manifest
from stellatune.package import (
    ArtifactLimits,
    InstallState,
    NoValidManifestError,
    UnsupportedArtifactError,
    component_digest,
    discover_plugins,
    install_from_artifact,
    install_keeping_previous,
    list_installed,
    store,
)

PLUGIN_ID = "dev.test.sample"


@pytest.fixture
def home(tmp_path, pk):
    """``home/plugins`` with version 1.0.0 of the sample plugin installed, and artifacts beside."""
    home = tmp_path / "home"
    plugins = home / "plugins"
    v1 = pk.write_package(tmp_path / "v1", pk.valid_manifest_dict(PLUGIN_ID, "1.0.0"), {"data/old.txt": b"from v1"})
    install_from_artifact(plugins, v1)
    (home / "sibling.txt").write_text("must stay alone")
    (tmp_path / "artifacts").mkdir()
    return plugins


def _assert_refused(tmp_path, plugins, artifact, error, **kwargs):
    before = _snapshot(tmp_path)
    with pytest.raises(error) as caught:
        install_from_artifact(plugins, artifact, **kwargs)
    assert _snapshot(tmp_path) == before
    [row] = list_installed(plugins)
    assert (row.id, row.version) == (PLUGIN_ID, "1.0.0")
    return caught.value


def _snapshot(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            rel = full.relative_to(root).as_posix()
            if stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(full.read_bytes()).hexdigest() + f":{st.st_mode:o}"
            else:
                out[rel] = f"{st.st_mode:o}"
    return out


def _valid_entries(manifest: dict, prefix: str = "") -> list[tuple[str, bytes]]:
    entries = [(prefix + "plugin.json", json.dumps(manifest).encode())]
    entries += [(prefix + c["path"], b"\0asm" + c["id"].encode()) for c in manifest["components"]]
    return entries


def _v2_entries(pk) -> list[tuple[str, bytes]]:
    return _valid_entries(pk.valid_manifest_dict(PLUGIN_ID, "2.0.0"))


def _unix_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


# --- happy paths -------------------------------------------------------------------------------


def test_directory_install_copies_the_package_and_writes_a_receipt(tmp_path, pk):
    manifest = pk.valid_manifest_dict(PLUGIN_ID, "1.0.0")
    manifest["permissions"] = {"sidecars": ["bin/helper.sh"]}
    src = pk.write_package(tmp_path / "src", manifest, {"bin/helper.sh": b"#!/bin/sh\necho hi\n"})
    os.chmod(src / "bin/helper.sh", 0o750)
    plugins = tmp_path / "plugins"

    row = install_from_artifact(plugins, src)

    root = plugins / PLUGIN_ID
    assert row.to_json() == {
        "id": PLUGIN_ID,
        "name": "Sample",
        "version": "1.0.0",
        "root_dir": str(root),
        "manifest_path": str(root / "plugin.json"),
        "component_count": 2,
        "install_state": "installed",
        "uninstall_retry_count": 0,
        "uninstall_last_error": None,
    }
    for rel in ("plugin.json", pk.DECODER_WASM, pk.DSP_WASM, "bin/helper.sh"):
        assert (root / rel).read_bytes() == (src / rel).read_bytes()
    assert os.stat(root / "bin/helper.sh").st_mode & 0o777 == 0o755
    assert os.stat(root / pk.DSP_WASM).st_mode & 0o777 == 0o644
    receipt = json.loads((root / ".install.json").read_text())
    assert set(receipt) == {"manifest", "manifest_rel_path", "installed_at_ms", "component_sha256"}
    assert receipt["manifest_rel_path"] == "plugin.json"
    assert receipt["manifest"] == load_manifest(root / "plugin.json").to_json()
    assert receipt["component_sha256"] == {
        rel: hashlib.sha256((src / rel).read_bytes()).hexdigest() for rel in (pk.DECODER_WASM, pk.DSP_WASM)
    }
    assert receipt["component_sha256"] == component_digest(root, load_manifest(root / "plugin.json"))
    assert sorted(os.listdir(plugins)) == [PLUGIN_ID]  # no staging left behind


def test_zip_install_takes_the_nested_package_root_only(tmp_path, pk):
    entries = [("README.md", b"top level, not part of the package")]
    entries += _valid_entries(pk.valid_manifest_dict(PLUGIN_ID), prefix="dist/sample-1.0/")
    artifact = pk.zip_from_entries(tmp_path / "Sample.ZIP", entries)  # suffix case-insensitive
    plugins = tmp_path / "plugins"

    row = install_from_artifact(plugins, artifact)

    assert row.root_dir == plugins / PLUGIN_ID
    assert sorted(p.name for p in row.root_dir.iterdir()) == [".install.json", "plugin.json", "wasm"]


def test_reinstall_replaces_the_whole_directory(tmp_path, home, pk):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "v2.zip", _v2_entries(pk))
    row = install_from_artifact(home, artifact)
    assert row.version == "2.0.0"
    assert not (row.root_dir / "data/old.txt").exists()
    assert sorted(os.listdir(home)) == [PLUGIN_ID]
    assert [r.version for r in list_installed(home)] == ["2.0.0"]


def test_reinstall_from_the_installed_copy_drops_host_files(home):
    root = home / PLUGIN_ID
    (root / ".uninstall-pending").write_text("{}")
    row = install_from_artifact(home, root)
    assert row.install_state is InstallState.INSTALLED
    assert not (root / ".uninstall-pending").exists()
    assert (root / "data/old.txt").read_bytes() == b"from v1"


def test_an_artifact_containing_the_plugins_dir_is_refused(tmp_path, home):
    _assert_refused(tmp_path, home, home.parent, PackageError)


# --- hostile artifacts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "evil_name",
    [
        "../evil.txt",
        "../../../../evil.txt",
        "wasm/../../evil.txt",
        "/tmp/evil.txt",
        "C:/evil.txt",
        "..\\..\\evil.txt",
        "wasm\\..\\..\\evil.txt",
    ],
)
def test_zip_slip_and_absolute_names_are_refused(tmp_path, home, pk, evil_name):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "slip.zip", [*_v2_entries(pk), (evil_name, b"pwned")])
    _assert_refused(tmp_path, home, artifact, UnsafeArtifactError)
    assert not Path("/tmp/evil.txt").exists()


def test_zip_symlink_entries_are_refused(tmp_path, home, pk):
    link = _unix_entry("wasm/decoder.wasm", stat.S_IFLNK | 0o777)
    entries = [e for e in _v2_entries(pk) if e[0] != "wasm/decoder.wasm"] + [(link, b"/etc/passwd")]
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "link.zip", entries)
    _assert_refused(tmp_path, home, artifact, UnsafeArtifactError)


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK])
def test_zip_special_file_entries_are_refused(tmp_path, home, pk, kind):
    entries = [*_v2_entries(pk), (_unix_entry("dev/node", kind | 420), b"")]
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "special.zip", entries)
    _assert_refused(tmp_path, home, artifact, UnsafeArtifactError)


def test_duplicate_zip_entries_are_refused(tmp_path, home, pk):
    entries = [*_v2_entries(pk), ("wasm/dsp.wasm", b"second copy")]
    artifact = tmp_path / "artifacts" / "dup.zip"
    with pytest.warns(UserWarning):  # zipfile itself warns about the duplicate name
        pk.zip_from_entries(artifact, entries)
    _assert_refused(tmp_path, home, artifact, UnsafeArtifactError)


def _deflate_bomb(path: Path, size: int) -> Path:
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("bomb.bin", "w", force_zip64=True) as out,
    ):
        chunk = bytes(1 << 20)
        for _ in range(size // len(chunk)):
            out.write(chunk)
    return path


def test_a_deflate_bomb_stops_at_the_default_limit(tmp_path, home, pk):
    bomb = _deflate_bomb(tmp_path / "artifacts" / "bomb.zip", 300 << 20)
    assert bomb.stat().st_size < 1 << 20  # small zip, huge output
    with zipfile.ZipFile(bomb, "a") as zf:
        for name, data in _v2_entries(pk):
            zf.writestr(name, data)
    _assert_refused(tmp_path, home, bomb, ArtifactLimitError)


def test_bytes_are_counted_as_written_not_taken_from_headers(tmp_path, home, pk):
    # A header that understates the size: zipfile stops at the stated size and the CRC fails.
    bomb = _deflate_bomb(tmp_path / "artifacts" / "liar.zip", 4 << 20)
    data = bytearray(bomb.read_bytes())
    _patch_sizes(data, new_size=16)
    bomb.write_bytes(bytes(data))
    error = _assert_refused(tmp_path, home, bomb, PackageError)
    assert "Bad CRC-32" in str(error)
    # A directory has no headers at all: the count of written bytes is what stops it.
    src = pk.write_package(
        tmp_path / "artifacts" / "big", pk.valid_manifest_dict(PLUGIN_ID, "3"), {"data/big.bin": bytes(3 << 20)}
    )
    _assert_refused(tmp_path, home, src, ArtifactLimitError, limits=ArtifactLimits(max_total_bytes=2 << 20))


def _patch_sizes(data: bytearray, new_size: int) -> None:
    """Rewrite every uncompressed-size field (local, zip64 extra, central) to ``new_size``."""
    for sig, local in ((b"PK\x03\x04", True), (b"PK\x01\x02", False)):
        start = 0
        while (at := data.find(sig, start)) >= 0:
            size_at = at + (22 if local else 24)
            if struct.unpack_from("<I", data, size_at)[0] == 0xFFFFFFFF:
                name_len, extra_len = struct.unpack_from("<HH", data, at + (26 if local else 28))
                extra_at = at + (30 if local else 46) + name_len
                end = extra_at + extra_len
                while extra_at + 4 <= end:
                    tag, length = struct.unpack_from("<HH", data, extra_at)
                    if tag == 1:
                        struct.pack_into("<Q", data, extra_at + 4, new_size)
                    extra_at += 4 + length
            else:
                struct.pack_into("<I", data, size_at, new_size)
            start = at + 4


def test_too_many_entries_is_a_limit_error(tmp_path, home, pk):
    artifact = tmp_path / "artifacts" / "many.zip"
    with zipfile.ZipFile(artifact, "w") as zf:
        for name, data in _v2_entries(pk):
            zf.writestr(name, data)
        for i in range(10_000):
            zf.writestr(f"data/{i}", b"")
    _assert_refused(tmp_path, home, artifact, ArtifactLimitError)
    src = pk.write_package(
        tmp_path / "artifacts" / "dir", pk.valid_manifest_dict(PLUGIN_ID, "3"), {f"data/{i}": b"" for i in range(30)}
    )
    _assert_refused(tmp_path, home, src, ArtifactLimitError, limits=ArtifactLimits(max_entries=20))


def test_encrypted_and_unsupported_compression_are_refused(tmp_path, home, pk):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "enc.zip", _v2_entries(pk))
    data = bytearray(artifact.read_bytes())  # zipfile cannot write encrypted entries: flag them
    for sig, flags_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(sig, start)) >= 0:
            data[at + flags_offset] |= 0x1
            start = at + 4
    artifact.write_bytes(bytes(data))
    _assert_refused(tmp_path, home, artifact, UnsupportedArtifactError)

    artifact = tmp_path / "artifacts" / "bz.zip"
    with zipfile.ZipFile(artifact, "w") as zf:
        for name, data in _v2_entries(pk):
            zf.writestr(name, data, compress_type=zipfile.ZIP_BZIP2)
    _assert_refused(tmp_path, home, artifact, UnsupportedArtifactError)


def test_two_manifests_are_refused_naming_both_ids(tmp_path, home, pk):
    entries = _valid_entries(pk.valid_manifest_dict(PLUGIN_ID, "2"), "a/")
    entries += _valid_entries(pk.valid_manifest_dict("dev.test.other", "1"), "b/")
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "two.zip", entries)
    error = _assert_refused(tmp_path, home, artifact, PackageError)
    assert PLUGIN_ID in str(error) and "dev.test.other" in str(error)


def test_a_traversing_id_is_refused_by_validation(tmp_path, home, pk):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "badid.zip", _valid_entries(pk.valid_manifest_dict("../x")))
    error = _assert_refused(tmp_path, home, artifact, NoValidManifestError)
    [(rel, manifest_error)] = error.candidates
    assert rel == "plugin.json"
    assert [(p.json_path, p.rule) for p in manifest_error.problems] == [("id", "safe-id")]


def test_no_valid_manifest_lists_three_candidates(tmp_path, home, pk):
    entries = []
    for i in range(4):
        entries += _valid_entries(dict(pk.valid_manifest_dict(f"p{i}"), api_version=9), f"c{i}/")
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "bad.zip", entries)
    error = _assert_refused(tmp_path, home, artifact, NoValidManifestError)
    assert len(error.candidates) == 4
    assert "c0/plugin.json" in str(error) and "c2/plugin.json" in str(error)
    assert "c3/plugin.json" not in str(error) and "and 1 more" in str(error)


def test_a_manifest_deeper_than_eight_levels_is_not_found(tmp_path, home, pk):
    deep = "/".join(f"d{i}" for i in range(8)) + "/"
    artifact = pk.zip_from_entries(
        tmp_path / "artifacts" / "deep.zip", _valid_entries(pk.valid_manifest_dict(PLUGIN_ID, "9"), deep)
    )
    _assert_refused(tmp_path, home, artifact, NoValidManifestError)
    ok = pk.zip_from_entries(
        tmp_path / "artifacts" / "ok.zip", _valid_entries(pk.valid_manifest_dict("dev.test.deep"), deep[3:])
    )
    assert install_from_artifact(home, ok).id == "dev.test.deep"


def test_broken_and_unsupported_artifacts(tmp_path, home):
    garbage = tmp_path / "artifacts" / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 definitely not a zip")
    _assert_refused(tmp_path, home, garbage, PackageError)
    tarball = tmp_path / "artifacts" / "plugin.tar"
    tarball.write_bytes(b"")
    assert "expect a directory or a .zip" in str(_assert_refused(tmp_path, home, tarball, PackageError))
    _assert_refused(tmp_path, home, tmp_path / "artifacts" / "missing.zip", PackageError)


def test_directory_artifacts_with_links_or_fifos_are_refused(tmp_path, home, pk):
    src = pk.write_package(tmp_path / "artifacts" / "linked", pk.valid_manifest_dict(PLUGIN_ID, "2"))
    (src / "data").mkdir()
    (src / "data" / "passwd").symlink_to("/etc/passwd")
    _assert_refused(tmp_path, home, src, UnsafeArtifactError)
    (src / "data" / "passwd").unlink()
    os.mkfifo(src / "data" / "pipe")
    _assert_refused(tmp_path, home, src, UnsafeArtifactError)


def test_a_component_missing_from_the_artifact_keeps_the_old_install(tmp_path, home, pk):
    entries = [e for e in _v2_entries(pk) if e[0] != "wasm/dsp.wasm"]
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "partial.zip", entries)
    error = _assert_refused(tmp_path, home, artifact, NoValidManifestError)
    assert "exists" in str(error)


# --- an install killed half-way ----------------------------------------------------------------

# A reinstall in a child process that SIGKILLs itself (what a power cut or an OOM kill leaves on
# disk). "renames": on a system that cannot exchange two directories, right after the old install
# was moved into the staging directory and before the new one took its place. "exchange": right
# after the one-step swap. Either way it dies with its staging directory left behind.
_KILLED_REINSTALL = """
import os, signal, sys
from stellatune.package import install_from_artifact, store

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_rename, real_exchange = os.rename, store.exchange
def rename(src, dst):
    if os.path.basename(src) == os.path.basename(sys.argv[3]):
        assert sys.argv[4] == "renames", "the old install left its place"
    real_rename(src, dst)
    if os.path.basename(dst).startswith(".replaced-"):
        die()
def exchange(a, b):
    if sys.argv[4] == "renames":
        return False
    assert real_exchange(a, b), "this system cannot exchange"
    die()
store.os.rename, store.exchange = rename, exchange
install_from_artifact(sys.argv[1], sys.argv[2])
"""


def _killed_reinstall(plugins: Path, artifact: Path, how: str = "renames") -> Path:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _KILLED_REINSTALL, str(plugins), str(artifact), PLUGIN_ID, how])
    assert run.returncode == -9
    [staging] = [p for p in plugins.iterdir() if p.name.startswith(".staging-")]
    return staging


def test_a_reinstall_swaps_in_one_step_so_the_plugin_is_never_missing(tmp_path, home, pk):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "v2.zip", _v2_entries(pk))
    staging = _killed_reinstall(home, artifact, how="exchange")
    # Killed right after the swap: the new install is in place, the old one is in the staging.
    assert [r.version for r in list_installed(home)] == ["2.0.0"]
    old = staging.stat().st_mtime - store.STALE_STAGING_S - 1
    os.utime(staging, (old, old))
    found = discover_plugins(home)
    assert found.restored == [] and [p.manifest.version for p in found.plugins] == ["2.0.0"]
    assert sorted(os.listdir(home)) == [PLUGIN_ID]


def test_a_reinstall_killed_between_two_renames_is_put_back_once_its_staging_is_stale(tmp_path, home, pk):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "v2.zip", _v2_entries(pk))
    staging = _killed_reinstall(home, artifact)
    assert not (home / PLUGIN_ID).exists()  # the old copy sits in the staging directory
    # A fresh staging directory may be an install still running: left alone.
    assert list_installed(home) == [] and staging.exists()
    old = staging.stat().st_mtime - store.STALE_STAGING_S - 1
    os.utime(staging, (old, old))
    found = discover_plugins(home)
    assert found.restored == [home / PLUGIN_ID]
    assert [(p.manifest.id, p.manifest.version) for p in found.plugins] == [(PLUGIN_ID, "1.0.0")]
    assert (home / PLUGIN_ID / "data/old.txt").read_bytes() == b"from v1"
    assert sorted(os.listdir(home)) == [PLUGIN_ID]  # the staging directory is gone


def test_a_stale_staging_directory_never_replaces_a_newer_install(tmp_path, home, pk):
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "v2.zip", _v2_entries(pk))
    staging = _killed_reinstall(home, artifact)
    install_from_artifact(home, artifact)  # the user retried, and it worked
    old = staging.stat().st_mtime - store.STALE_STAGING_S - 1
    os.utime(staging, (old, old))
    found = discover_plugins(home)
    assert found.restored == []
    assert [p.manifest.version for p in found.plugins] == ["2.0.0"]
    assert sorted(os.listdir(home)) == [PLUGIN_ID]


@pytest.mark.parametrize("can_exchange", [True, False])
def test_a_staged_install_rolls_back_to_the_copy_it_replaced(tmp_path, home, pk, monkeypatch, can_exchange):
    if not can_exchange:
        monkeypatch.setattr(store, "exchange", lambda a, b: False)
    artifact = pk.zip_from_entries(tmp_path / "artifacts" / "v2.zip", _v2_entries(pk))
    with install_keeping_previous(home, artifact) as install:
        assert install.replaced and [r.version for r in list_installed(home)] == ["2.0.0"]
        install.roll_back()
        assert [r.version for r in list_installed(home)] == ["1.0.0"]
        assert (home / PLUGIN_ID / "data/old.txt").read_bytes() == b"from v1"
        with pytest.raises(PackageError, match="nothing to roll back"):
            install.roll_back()
    assert sorted(os.listdir(home)) == [PLUGIN_ID]  # the new copy went with the staging directory
