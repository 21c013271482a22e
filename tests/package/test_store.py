"""Discovery, list and uninstall, including deletes that fail and the marker that tracks them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stellatune.errors import PackageError, PluginNotInstalledError
from stellatune.package import (
    InstallReceipt,
    InstallState,
    UninstallMarker,
    discover_plugins,
    install_from_artifact,
    list_installed,
    uninstall_by_id,
)


@pytest.fixture
def plugins(tmp_path):
    return tmp_path / "plugins"


@pytest.fixture
def install(tmp_path, plugins, pk):
    def install(plugin_id: str, version: str = "1.0.0", extra=None):
        src = pk.write_package(
            tmp_path / "src" / f"{plugin_id}-{version}", pk.valid_manifest_dict(plugin_id, version), extra
        )
        return install_from_artifact(plugins, src)

    return install


def _place(plugins: Path, rel: str, pk, plugin_id: str) -> Path:
    """Put an installed-looking plugin at ``plugins/rel`` by hand (receipt included)."""
    root = pk.write_package(plugins / rel, pk.valid_manifest_dict(plugin_id))
    (root / ".install.json").write_text(json.dumps({"manifest": {"id": plugin_id}, "manifest_rel_path": "plugin.json"}))
    return root


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_finds_installed_plugins_and_nothing_else(plugins, install, pk):
    install("dev.test.b")
    install("dev.test.a")
    _place(plugins, ".staging-leftover/pkg", pk, "dev.test.hidden")  # host dot-dir
    _place(plugins, "vendor/x/deep", pk, "dev.test.depth4")  # receipt at depth 4: found
    _place(plugins, "vendor/x/y/deeper", pk, "dev.test.depth5")  # at depth 5: not
    _place(plugins, "dev.test.a/data/inner", pk, "dev.test.nested")  # inside a plugin: not
    (plugins / "linked").symlink_to(plugins / "dev.test.a")  # links are not followed
    (plugins / "no-receipt").mkdir()
    pk.write_package(plugins / "no-receipt", pk.valid_manifest_dict("dev.test.unreceipted"))

    found = discover_plugins(plugins)

    assert [p.manifest.id for p in found.plugins] == ["dev.test.a", "dev.test.b", "dev.test.depth4"]
    assert found.warnings == [] and found.pending == []
    assert found.plugins[0].manifest_path == plugins / "dev.test.a" / "plugin.json"


def test_every_manifest_is_revalidated_against_the_disk(plugins, install, pk):
    install("dev.test.a")
    broken = install("dev.test.b")
    (broken.root_dir / pk.DSP_WASM).unlink()
    garbage = _place(plugins, "garbage", pk, "dev.test.c")
    (garbage / ".install.json").write_text("{not json")

    found = discover_plugins(plugins)

    assert [p.manifest.id for p in found.plugins] == ["dev.test.a"]
    assert len(found.warnings) == 2
    assert "components[1].path" in found.warnings[0] and "unreadable install receipt" in found.warnings[1]


def test_a_duplicate_id_keeps_the_first_and_warns(plugins, install, pk):
    install("dev.test.a")
    copy = _place(plugins, "zz-copy", pk, "dev.test.a")
    found = discover_plugins(plugins)
    assert [p.root for p in found.plugins] == [plugins / "dev.test.a"]
    assert found.warnings == [
        f"skipped {copy}: plugin id 'dev.test.a' is already installed at {plugins / 'dev.test.a'}"
    ]


def test_a_missing_plugins_dir_is_empty(tmp_path):
    assert list_installed(tmp_path / "nowhere") == []
    assert discover_plugins(tmp_path / "nowhere").plugins == []


def test_receipts_written_by_the_original_runtime_are_read(plugins, install):
    row = install("dev.test.a")
    receipt_path = row.root_dir / ".install.json"
    old = json.loads(receipt_path.read_text())
    receipt_path.write_text(json.dumps({"manifest": old["manifest"], "manifest_rel_path": "plugin.json"}))
    [found] = discover_plugins(plugins).plugins
    assert found.receipt == InstallReceipt(old["manifest"], "plugin.json", None, {})


# --- list and uninstall ------------------------------------------------------------------------


def test_list_is_sorted_by_id_then_root(plugins, install, pk):
    install("dev.test.b")
    install("dev.test.a")
    _place(plugins, "aa/dev.test.c", pk, "dev.test.c")
    rows = list_installed(plugins)
    assert [(r.id, r.root_dir.name) for r in rows] == [
        ("dev.test.a", "dev.test.a"),
        ("dev.test.b", "dev.test.b"),
        ("dev.test.c", "dev.test.c"),
    ]
    assert {r.install_state for r in rows} == {InstallState.INSTALLED}


def test_uninstall_removes_the_directory(plugins, install):
    install("dev.test.a")
    install("dev.test.b")
    uninstall_by_id(plugins, " dev.test.a ")
    assert not (plugins / "dev.test.a").exists()
    assert [r.id for r in list_installed(plugins)] == ["dev.test.b"]


def test_uninstall_errors(plugins, install):
    install("dev.test.a")
    with pytest.raises(PluginNotInstalledError):
        uninstall_by_id(plugins, "dev.test.zzz")
    with pytest.raises(PackageError, match="blank"):
        uninstall_by_id(plugins, "  ")
    assert [r.id for r in list_installed(plugins)] == ["dev.test.a"]


def _chattr(flag: str, path: Path) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.fixture
def undeletable(request):
    """Makes a file impossible to delete, even for root (the immutable attribute); undone after."""
    pinned: list[Path] = []

    def pin(path: Path) -> None:
        if not _chattr("+i", path):
            pytest.skip("chattr +i is not available here (needs ext4-like fs and CAP_LINUX_IMMUTABLE)")
        pinned.append(path)

    yield pin
    for path in pinned:
        _chattr("-i", path)


def test_a_failed_delete_is_marked_hidden_and_retried_until_it_succeeds(plugins, install, undeletable):
    row = install("dev.test.a", extra={"bin/locked.exe": b"MZ"})
    install("dev.test.b")
    locked = row.root_dir / "bin" / "locked.exe"
    undeletable(locked)

    uninstall_by_id(plugins, "dev.test.a")  # the failure is recorded, not raised

    marker = UninstallMarker.read(row.root_dir)
    assert (marker.plugin_id, marker.retry_count, marker.state) == ("dev.test.a", 0, InstallState.PENDING_UNINSTALL)
    assert "Operation not permitted" in marker.last_error and marker.queued_at_ms > 0
    assert [p.manifest.id for p in discover_plugins(plugins).plugins] == ["dev.test.b"]  # retry 1
    states = []
    for _ in range(3):  # retries 2, 3, 4
        [pending] = [r for r in list_installed(plugins) if r.id == "dev.test.a"]
        states.append((pending.install_state, pending.uninstall_retry_count))
    assert states == [
        (InstallState.PENDING_UNINSTALL, 2),
        (InstallState.DELETE_FAILED, 3),
        (InstallState.DELETE_FAILED, 4),
    ]
    assert pending.name == "Sample" and pending.version == "1.0.0" and pending.component_count == 2
    assert json.loads((row.root_dir / ".uninstall-pending").read_text())["state"] == "delete_failed"

    _chattr("-i", locked)  # the "sidecar" exited: the next listing finishes the delete
    assert [r.id for r in list_installed(plugins)] == ["dev.test.b"]
    assert not row.root_dir.exists()


class FlakyRemover:
    """Fails the first ``failures`` deletes, then deletes for real (unit-tests the marker logic)."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> None:
        self.calls.append(path)
        if len(self.calls) <= self.failures:
            raise PermissionError(13, "file is locked", str(path))
        shutil.rmtree(path)


def test_marker_retry_logic_with_an_injected_remover(plugins, install):
    row = install("dev.test.a")
    remove = FlakyRemover(failures=4)
    uninstall_by_id(plugins, "dev.test.a", remove=remove)
    seen = []
    for _ in range(4):
        rows = list_installed(plugins, remove=remove)
        seen.append([(r.install_state.value, r.uninstall_retry_count) for r in rows])
    assert seen == [
        [("pending_uninstall", 1)],
        [("pending_uninstall", 2)],
        [("delete_failed", 3)],
        [],
    ]
    assert remove.calls == [row.root_dir] * 5 and not row.root_dir.exists()


def test_uninstalling_a_pending_entry_retries_and_resets_the_marker(plugins, install):
    row = install("dev.test.a")
    uninstall_by_id(plugins, "dev.test.a", remove=FlakyRemover(failures=99))
    uninstall_by_id(plugins, "dev.test.a", remove=FlakyRemover(failures=99))
    marker = UninstallMarker.read(row.root_dir)
    assert (marker.retry_count, marker.state) == (0, InstallState.PENDING_UNINSTALL)
    uninstall_by_id(plugins, "dev.test.a")
    assert not row.root_dir.exists()


def test_an_unreadable_marker_and_receipt_still_list_the_entry(plugins, install):
    row = install("dev.test.a")
    (row.root_dir / ".uninstall-pending").write_text("garbage")
    (row.root_dir / ".install.json").unlink()
    [entry] = list_installed(plugins, remove=FlakyRemover(failures=1))
    assert (entry.id, entry.name, entry.version) == ("dev.test.a", "dev.test.a", "unknown")
    assert (entry.install_state, entry.uninstall_retry_count) == (InstallState.PENDING_UNINSTALL, 1)
    assert entry.component_count == 0 and "file is locked" in entry.uninstall_last_error


def test_reinstall_over_a_pending_uninstall_replaces_it(plugins, install):
    install("dev.test.a")
    uninstall_by_id(plugins, "dev.test.a", remove=FlakyRemover(failures=99))
    row = install("dev.test.a", "2.0.0")
    assert [(r.id, r.version, r.install_state) for r in list_installed(plugins)] == [
        ("dev.test.a", "2.0.0", InstallState.INSTALLED)
    ]
    assert not (row.root_dir / ".uninstall-pending").exists()
