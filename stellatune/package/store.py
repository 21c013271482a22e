"""The plugins directory: atomic install, discovery, list and uninstall.

Layout: each plugin lives in ``plugins/<manifest id>/`` (a copy of its package root) with an
``.install.json`` receipt. Names starting with a dot belong to the host: staging directories and
replaced installs waiting for removal use them, and discovery never looks inside.

Install is staged inside ``plugins_dir`` and swapped in with renames, so a failure at any step
leaves the previous install as it was. Uninstall marks the directory first, then deletes it; a
delete that fails (a file still locked by a running sidecar, say) is retried by every later
discovery, and the directory stays hidden meanwhile.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ManifestError, NoValidManifestError, PackageError, PluginNotInstalledError
from ..manifest import MANIFEST_FILE_NAME, Manifest, load_manifest
from ..manifest.policy import plugin_id_breach
from .archive import ArtifactLimits, stage_artifact
from .exchange import exchange
from .receipt import (
    MARKER_FILE_NAME,
    RECEIPT_FILE_NAME,
    InstallReceipt,
    InstallState,
    UninstallMarker,
    now_ms,
)

__all__ = [
    "InstalledPlugin",
    "DiscoveredPlugin",
    "PendingUninstall",
    "DiscoveryResult",
    "install_from_artifact",
    "install_keeping_previous",
    "StagedInstall",
    "discover_plugins",
    "list_installed",
    "uninstall_by_id",
]

#: How deep ``plugin.json`` may sit inside an artifact (the original's walk depth).
ARTIFACT_MANIFEST_DEPTH = 8
#: How deep a receipt (so a plugin root plus one) may sit in the plugins directory (as the original).
DISCOVERY_DEPTH = 4
_STAGING_PREFIX = ".staging-"
_REPLACED_PREFIX = ".replaced-"
#: A staging directory untouched this long was left by an install that died (an install takes
#: seconds: the artifact limits bound it), so discovery may take it apart.
STALE_STAGING_S = 3600.0
_SHOWN_INVALID_CANDIDATES = 3

#: Deletes a directory tree; a seam so tests can make deletion fail without root-proof tricks.
RemoveTree = Callable[[Path], None]


def _remove_tree(root: Path) -> None:
    """Delete a plugin directory, the host's files last.

    A delete that fails half-way (a file held open by a running sidecar on Windows, say) then
    still has its receipt, so the listing can name the plugin, and its marker, so it stays hidden.
    """
    if not os.path.lexists(root):
        return  # already gone: nothing left to retry
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in (RECEIPT_FILE_NAME, MARKER_FILE_NAME):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    (root / RECEIPT_FILE_NAME).unlink(missing_ok=True)
    (root / MARKER_FILE_NAME).unlink(missing_ok=True)
    os.rmdir(root)


@dataclass(frozen=True)
class InstalledPlugin:
    """One row of the list API (the same JSON shape as the original's)."""

    id: str
    name: str
    version: str
    root_dir: Path
    manifest_path: Path
    component_count: int
    install_state: InstallState = InstallState.INSTALLED
    uninstall_retry_count: int = 0
    uninstall_last_error: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "root_dir": str(self.root_dir),
            "manifest_path": str(self.manifest_path),
            "component_count": self.component_count,
            "install_state": self.install_state.value,
            "uninstall_retry_count": self.uninstall_retry_count,
            "uninstall_last_error": self.uninstall_last_error,
        }


@dataclass(frozen=True)
class DiscoveredPlugin:
    """An installed plugin whose ``plugin.json`` is valid against the files on disk now."""

    manifest: Manifest
    root: Path
    receipt: InstallReceipt

    @property
    def manifest_path(self) -> Path:
        return self.root / self.receipt.manifest_rel_path

    def to_installed(self) -> InstalledPlugin:
        return InstalledPlugin(
            id=self.manifest.id,
            name=self.manifest.name,
            version=self.manifest.version,
            root_dir=self.root,
            manifest_path=self.manifest_path,
            component_count=len(self.manifest.components),
            install_state=InstallState.INSTALLED,
        )


@dataclass(frozen=True)
class PendingUninstall:
    """A plugin directory whose delete has not succeeded yet (it has an ``.uninstall-pending``)."""

    root: Path
    marker: UninstallMarker
    receipt: Optional[InstallReceipt]
    """``None`` when the receipt is gone or unreadable (a partial delete may remove it)."""

    def to_installed(self) -> InstalledPlugin:
        snapshot = self.receipt.manifest_json if self.receipt else {}
        rel = self.receipt.manifest_rel_path if self.receipt else MANIFEST_FILE_NAME
        components = snapshot.get("components")
        return InstalledPlugin(
            id=_text_or(snapshot.get("id"), self.marker.plugin_id),
            name=_text_or(snapshot.get("name"), self.marker.plugin_id),
            version=_text_or(snapshot.get("version"), "unknown"),
            root_dir=self.root,
            manifest_path=self.root / rel,
            component_count=len(components) if isinstance(components, list) else 0,
            install_state=self.marker.state,
            uninstall_retry_count=self.marker.retry_count,
            uninstall_last_error=self.marker.last_error,
        )


def _text_or(value: object, fallback: str) -> str:
    return value if isinstance(value, str) and value.strip() else fallback


@dataclass
class DiscoveryResult:
    """What :func:`discover_plugins` found."""

    plugins: list[DiscoveredPlugin] = field(default_factory=list)
    """Valid installed plugins, one per id, in directory order."""
    pending: list[PendingUninstall] = field(default_factory=list)
    """Directories still waiting for their delete (after this discovery's cleanup attempt)."""
    removed: list[PendingUninstall] = field(default_factory=list)
    """Directories whose pending delete this discovery completed."""
    restored: list[Path] = field(default_factory=list)
    """Installs put back from a stale staging directory: a reinstall died after moving the old
    copy aside and before the new one took its place."""
    warnings: list[str] = field(default_factory=list)
    """One line per entry that was skipped and why."""


# --- discovery ---------------------------------------------------------------------------------


def _walk_roots(plugins_dir: Path) -> tuple[list[Path], list[Path]]:
    """Directories holding a marker, and those holding a receipt but no marker (files to depth 4).

    Never follows symlinks and never enters dot-directories. Does not descend below a plugin
    root either: files inside an installed package are the package's, so a ``.install.json``
    shipped deep inside one must not register a second plugin.
    """
    marked: list[Path] = []
    installed: list[Path] = []

    def visit(directory: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        names = {e.name for e in entries}
        if depth > 0 and MARKER_FILE_NAME in names:
            marked.append(directory)
            return
        if depth > 0 and RECEIPT_FILE_NAME in names:
            installed.append(directory)
            return
        if depth + 1 >= DISCOVERY_DEPTH:  # children's files would lie deeper than the limit
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            visit(Path(entry.path), depth + 1)

    if plugins_dir.is_dir():
        visit(plugins_dir, 0)
    return marked, installed


def _retry_pending(root: Path, remove: RemoveTree) -> tuple[PendingUninstall, bool]:
    """One cleanup attempt for a marked directory: the entry, and whether it is gone now."""
    marker = UninstallMarker.read(root)
    receipt = _read_receipt_quietly(root)
    try:
        remove(root)
        return PendingUninstall(root, marker, receipt), True
    except OSError as exc:
        marker = marker.after_failed_retry(str(exc))
    try:
        marker.write(root)
    except OSError:
        pass  # the directory keeps whatever marker it had; the next discovery tries again
    return PendingUninstall(root, marker, receipt), False


def _clear_stale_staging(plugins_dir: Path, remove: RemoveTree) -> list[Path]:
    """Take apart the staging directories of installs that died: an old install moved aside
    into one goes back where it was (unless something new is there), then the directory goes.
    Returns the installs put back. Errors leave things for the next discovery to retry."""
    restored: list[Path] = []
    cutoff = time.time() - STALE_STAGING_S
    try:
        entries = list(os.scandir(plugins_dir))
    except OSError:
        return restored
    for entry in entries:
        if not entry.name.startswith(_STAGING_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue  # possibly an install still running
            for inner in os.scandir(entry.path):
                target = plugins_dir / inner.name.removeprefix(_REPLACED_PREFIX)
                if inner.name.startswith(_REPLACED_PREFIX) and not os.path.lexists(target):
                    os.rename(inner.path, target)
                    restored.append(target)
            remove(Path(entry.path))
        except OSError:
            continue
    return restored


def _read_receipt_quietly(root: Path) -> Optional[InstallReceipt]:
    try:
        return InstallReceipt.read(root)
    except PackageError:
        return None


def discover_plugins(plugins_dir: Path, *, remove: RemoveTree = _remove_tree, tidy: bool = True) -> DiscoveryResult:
    """Find every installed plugin, after retrying pending deletes and clearing what installs
    that died left behind (so this has side effects, unless ``tidy`` is false: then pending
    deletes are only reported, as they stand, and nothing on disk changes).

    Every manifest is re-validated against the files present now; an entry that fails is left
    out with a warning. When two directories claim one id, the first (in sorted path order)
    wins and the other is reported.

    :param remove: deletes a directory tree; only tests replace it.
    """
    plugins_dir = Path(plugins_dir)
    result = DiscoveryResult(restored=_clear_stale_staging(plugins_dir, remove) if tidy else [])
    marked, installed = _walk_roots(plugins_dir)
    for root in marked:
        if not tidy:
            result.pending.append(PendingUninstall(root, UninstallMarker.read(root), _read_receipt_quietly(root)))
            continue
        entry, gone = _retry_pending(root, remove)
        (result.removed if gone else result.pending).append(entry)
    seen: dict[str, Path] = {}
    for root in installed:
        try:
            receipt = InstallReceipt.read(root)
            manifest = load_manifest(root / receipt.manifest_rel_path)
        except (PackageError, ManifestError) as exc:
            result.warnings.append(f"skipped {root}: {exc}")
            continue
        if manifest.id in seen:
            result.warnings.append(
                f"skipped {root}: plugin id '{manifest.id}' is already installed at {seen[manifest.id]}"
            )
            continue
        seen[manifest.id] = root
        result.plugins.append(DiscoveredPlugin(manifest, root, receipt))
    return result


def list_installed(plugins_dir: Path, *, remove: RemoveTree = _remove_tree, tidy: bool = True) -> list[InstalledPlugin]:
    """Installed plugins plus entries pending uninstall, sorted by id then root directory
    (``tidy`` as for :func:`discover_plugins`)."""
    found = discover_plugins(plugins_dir, remove=remove, tidy=tidy)
    rows = [p.to_installed() for p in found.plugins] + [p.to_installed() for p in found.pending]
    return sorted(rows, key=lambda row: (row.id, str(row.root_dir)))


# --- uninstall ---------------------------------------------------------------------------------


def uninstall_by_id(plugins_dir: Path, plugin_id: str, *, remove: RemoveTree = _remove_tree) -> None:
    """Delete every directory holding plugin ``plugin_id`` (installed or pending uninstall).

    A directory is marked before its delete starts, so a delete that fails or is interrupted
    leaves it hidden from discovery; it is then retried by every discovery. Such a failure is
    not an error here: the marker records it and :func:`list_installed` shows it.

    :raises PackageError: ``plugin_id`` is blank, or a marker cannot be written.
    :raises PluginNotInstalledError: nothing is installed under that id.
    """
    plugin_id = plugin_id.strip()
    if not plugin_id:
        raise PackageError("plugin id must not be blank")
    found = discover_plugins(plugins_dir, remove=remove)
    roots = [p.root for p in found.plugins if p.manifest.id == plugin_id]
    roots += [p.root for p in found.pending if p.to_installed().id == plugin_id]
    if not roots and plugin_id_breach(plugin_id) is None:
        # An install whose files went bad since (a manifest edited, a component deleted) is not
        # discovered, yet it is still that plugin's directory: uninstall is how it goes away.
        broken = plugins_dir / plugin_id
        if broken.is_dir() and not broken.is_symlink():
            roots.append(broken)
    if not roots:
        if any(p.to_installed().id == plugin_id for p in found.removed):
            return  # an earlier uninstall's delete just completed during discovery
        raise PluginNotInstalledError(f"plugin '{plugin_id}' is not installed")
    for root in roots:
        marker = UninstallMarker(plugin_id=plugin_id, queued_at_ms=now_ms())
        try:
            marker.write(root)
        except OSError as exc:
            raise PackageError(f"cannot mark {root} for uninstall: {exc}") from None
        try:
            remove(root)
        except OSError as exc:
            try:
                UninstallMarker(plugin_id, now_ms(), 0, str(exc)).write(root)
            except OSError:
                pass  # the marker written above still hides the directory and queues the retry


# --- install -----------------------------------------------------------------------------------


def _find_manifests(staged: Path) -> tuple[list[tuple[Path, Manifest]], list[tuple[str, ManifestError]]]:
    """Every ``plugin.json`` within depth 8 of ``staged``, split into valid and invalid."""
    valid: list[tuple[Path, Manifest]] = []
    invalid: list[tuple[str, ManifestError]] = []
    for dirpath, dirnames, filenames in os.walk(staged):
        depth = len(Path(dirpath).relative_to(staged).parts)
        if depth + 1 >= ARTIFACT_MANIFEST_DEPTH:
            dirnames.clear()
        dirnames.sort()
        if MANIFEST_FILE_NAME in filenames and depth + 1 <= ARTIFACT_MANIFEST_DEPTH:
            path = Path(dirpath) / MANIFEST_FILE_NAME
            try:
                valid.append((path.parent, load_manifest(path)))
            except ManifestError as exc:
                invalid.append((path.relative_to(staged).as_posix(), exc))
    return valid, invalid


def _the_one_manifest(staged: Path, artifact: Path) -> tuple[Path, Manifest]:
    valid, invalid = _find_manifests(staged)
    if len(valid) > 1:
        ids = ", ".join(sorted(m.id for _, m in valid))
        raise PackageError(
            f"{artifact} contains {len(valid)} plugin manifests ({ids}); one artifact must contain exactly one plugin"
        )
    if valid:
        return valid[0]
    if not invalid:
        raise NoValidManifestError(f"{artifact} contains no {MANIFEST_FILE_NAME}", [])
    shown = "; ".join(
        f"{rel}: {'; '.join(str(p) for p in err.problems)}" for rel, err in invalid[:_SHOWN_INVALID_CANDIDATES]
    )
    more = len(invalid) - _SHOWN_INVALID_CANDIDATES
    tail = f" (and {more} more)" if more > 0 else ""
    raise NoValidManifestError(f"{artifact} has no valid {MANIFEST_FILE_NAME}: {shown}{tail}", invalid)


def install_from_artifact(
    plugins_dir: Path, artifact: Path, *, limits: ArtifactLimits = ArtifactLimits()
) -> InstalledPlugin:
    """Install a plugin from a directory or a ``.zip`` into ``plugins_dir/<id>``, atomically.

    The artifact is staged and validated inside ``plugins_dir`` (in a dot-directory discovery
    ignores), then swapped in; an install of the same id is replaced. On any error the previous
    install is left untouched, the staging directory is removed, and nothing has been written
    outside ``plugins_dir``.

    :raises UnsafeArtifactError: an entry escapes, is a link or a special file.
    :raises ArtifactLimitError: the artifact unpacks to too many bytes or entries.
    :raises NoValidManifestError: no valid ``plugin.json`` within depth 8.
    :raises PackageError: more than one valid manifest, an unreadable artifact, or an I/O error.
    """
    with install_keeping_previous(plugins_dir, artifact, limits=limits) as install:
        return install.plugin


@dataclass
class StagedInstall:
    """An install in place whose previous copy (if it replaced one) is kept until :meth:`close`,
    so that the caller can :meth:`roll_back` to it, e.g. when the new version fails to activate."""

    plugin: InstalledPlugin
    _staging: Path
    _previous: Optional[Path]

    @property
    def replaced(self) -> bool:
        """Whether this install replaced one (that :meth:`roll_back` would put back)."""
        return self._previous is not None

    def roll_back(self) -> None:
        """Put the previous copy back in place (the new one goes with the staging directory).

        :raises PackageError: nothing to roll back to, or the swap failed (the new copy stays).
        """
        if self._previous is None:
            raise PackageError(f"installing {self.plugin.id} replaced nothing: nothing to roll back to")
        try:
            _swap_in(self._previous, self.plugin.root_dir, self._staging / ".rolled-back")
        except OSError as exc:
            raise PackageError(f"rolling back {self.plugin.id} failed: {exc}") from None
        self._previous = None

    def close(self) -> None:
        """Forget the previous copy: remove the staging directory (idempotent)."""
        shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> StagedInstall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def install_keeping_previous(
    plugins_dir: Path, artifact: Path, *, limits: ArtifactLimits = ArtifactLimits()
) -> StagedInstall:
    """:func:`install_from_artifact`, keeping the copy it replaced until the result is closed
    (use it as a context manager). Same checks and errors."""
    plugins_dir = Path(plugins_dir)
    artifact = Path(artifact)
    if artifact.is_dir() and _is_within(plugins_dir, artifact):
        raise PackageError(f"artifact {artifact} contains the plugins directory {plugins_dir}")
    try:
        plugins_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=plugins_dir))
    except OSError as exc:
        raise PackageError(f"cannot prepare {plugins_dir}: {exc}") from None
    try:
        unpacked = staging / "artifact"
        unpacked.mkdir()
        stage_artifact(artifact, unpacked, limits)
        package_root, manifest = _the_one_manifest(unpacked, artifact)
        # These names are the host's: an artifact made from an installed copy must not carry
        # an old receipt or, worse, a pending-uninstall marker into the new install.
        for host_file in (RECEIPT_FILE_NAME, MARKER_FILE_NAME):
            (package_root / host_file).unlink(missing_ok=True)
        InstallReceipt.for_install(package_root, manifest).write(package_root)
        target = plugins_dir / manifest.id
        previous = _swap_in(package_root, target, staging / (_REPLACED_PREFIX + target.name))
        plugin = DiscoveredPlugin(manifest, target, InstallReceipt.read(target)).to_installed()
        return StagedInstall(plugin, staging, previous)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PackageError(f"installing {artifact} failed: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(package_root: Path, target: Path, aside: Path) -> Optional[Path]:
    """Put ``package_root`` at ``target``; returns where the entry ``target`` held went (None if
    it held none). It is exchanged with ``package_root`` in one step where the system can (so it
    is then at ``package_root``); elsewhere it is renamed to ``aside`` first, and renamed back if
    the second rename fails."""
    if os.path.isdir(target) and not os.path.islink(target) and exchange(package_root, target):
        return package_root
    replaced: Optional[Path] = None
    if os.path.lexists(target):
        replaced = aside
        os.rename(target, replaced)
    try:
        os.rename(package_root, target)
    except OSError:
        if replaced is not None:
            os.rename(replaced, target)
        raise
    return replaced


def _is_within(path: Path, ancestor: Path) -> bool:
    real_ancestor = os.path.realpath(ancestor)
    real_path = os.path.realpath(path)
    return os.path.commonpath([real_ancestor, real_path]) == real_ancestor
