"""The two files the host keeps in an installed plugin's root.

- ``.install.json``, the install receipt: what makes a directory count as installed.
- ``.uninstall-pending``, the marker of a delete that has not finished: it hides the directory
  from discovery until a later cleanup manages to remove it.

Both are pretty-printed JSON in the shapes the original runtime wrote (reference §1.2); the
receipt gains ``installed_at_ms`` and ``component_sha256``, which older readers ignore.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeGuard

from ..errors import PackageError
from ..manifest import MANIFEST_FILE_NAME, Manifest, unsafe_relative_path_reason

__all__ = [
    "RECEIPT_FILE_NAME",
    "MARKER_FILE_NAME",
    "DELETE_FAILED_AFTER_RETRIES",
    "InstallState",
    "InstallReceipt",
    "UninstallMarker",
    "component_digest",
    "now_ms",
]

RECEIPT_FILE_NAME = ".install.json"
MARKER_FILE_NAME = ".uninstall-pending"
#: A marker turns from ``pending_uninstall`` into ``delete_failed`` at this many failed retries.
DELETE_FAILED_AFTER_RETRIES = 3
_HASH_CHUNK = 1 << 20


class InstallState(str, enum.Enum):
    """Where an installed plugin is in its life, as the list API reports it."""

    INSTALLED = "installed"
    PENDING_UNINSTALL = "pending_uninstall"
    DELETE_FAILED = "delete_failed"


def now_ms() -> int:
    """Wall-clock Unix time in milliseconds, the unit both files use."""
    return time.time_ns() // 1_000_000


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class InstallReceipt:
    """The parsed ``.install.json``."""

    manifest_json: dict[str, Any]
    """The manifest snapshot taken at install time; discovery still re-reads ``plugin.json``."""
    manifest_rel_path: str = MANIFEST_FILE_NAME
    installed_at_ms: Optional[int] = None
    """``None`` in receipts written by the original runtime."""
    component_sha256: dict[str, str] = field(default_factory=dict)
    """Component path (relative to the root) → SHA-256 hex of its bytes at install time."""

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_json,
            "manifest_rel_path": self.manifest_rel_path,
            "installed_at_ms": self.installed_at_ms,
            "component_sha256": self.component_sha256,
        }

    def write(self, root: Path) -> None:
        _write_json_atomically(root / RECEIPT_FILE_NAME, self.to_json())

    @classmethod
    def read(cls, root: Path) -> InstallReceipt:
        """Read ``root/.install.json``.

        :raises PackageError: unreadable, not JSON, or the wrong shape (the message says which).
        """
        path = root / RECEIPT_FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise PackageError(f"{path}: unreadable install receipt: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("manifest"), dict):
            raise PackageError(f"{path}: install receipt has no 'manifest' object")
        rel_path = data.get("manifest_rel_path", MANIFEST_FILE_NAME)
        if not isinstance(rel_path, str) or not rel_path or unsafe_relative_path_reason(rel_path):
            raise PackageError(f"{path}: manifest_rel_path {rel_path!r} is not a safe relative path")
        installed_at = data.get("installed_at_ms")
        digests = data.get("component_sha256")
        return cls(
            manifest_json=data["manifest"],
            manifest_rel_path=rel_path,
            installed_at_ms=installed_at if _is_int(installed_at) else None,
            component_sha256={k: v for k, v in (digests or {}).items() if isinstance(v, str)}
            if isinstance(digests, dict)
            else {},
        )

    @classmethod
    def for_install(cls, root: Path, manifest: Manifest) -> InstallReceipt:
        return cls(
            manifest_json=manifest.to_json(),
            installed_at_ms=now_ms(),
            component_sha256=component_digest(root, manifest),
        )


@dataclass(frozen=True)
class UninstallMarker:
    """The parsed ``.uninstall-pending``."""

    plugin_id: str
    queued_at_ms: int = 0
    retry_count: int = 0
    last_error: Optional[str] = None
    state: InstallState = InstallState.PENDING_UNINSTALL

    def to_json(self) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "queued_at_ms": self.queued_at_ms,
            "retry_count": self.retry_count,
            "last_error": self.last_error,
            "state": self.state.value,
        }

    def write(self, root: Path) -> None:
        _write_json_atomically(root / MARKER_FILE_NAME, self.to_json())

    def after_failed_retry(self, error: str) -> UninstallMarker:
        """The marker to store after one more cleanup attempt failed with ``error``."""
        retries = self.retry_count + 1
        state = InstallState.DELETE_FAILED if retries >= DELETE_FAILED_AFTER_RETRIES else InstallState.PENDING_UNINSTALL
        return UninstallMarker(self.plugin_id, self.queued_at_ms, retries, error, state)

    @classmethod
    def read(cls, root: Path) -> UninstallMarker:
        """Read ``root/.uninstall-pending``; a marker that cannot be read still counts, with
        defaults (the directory name as id, queued at 0), so the delete is never forgotten."""
        fallback_id = root.name or "unknown-plugin"
        try:
            data = json.loads((root / MARKER_FILE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return cls(plugin_id=fallback_id)
        plugin_id = data.get("plugin_id")
        queued = data.get("queued_at_ms")
        retries = data.get("retry_count")
        error = data.get("last_error")
        try:
            state = InstallState(data.get("state"))
        except ValueError:
            state = InstallState.PENDING_UNINSTALL
        return cls(
            plugin_id=plugin_id if isinstance(plugin_id, str) and plugin_id.strip() else fallback_id,
            queued_at_ms=queued if _is_int(queued) else 0,
            retry_count=retries if _is_int(retries) and retries >= 0 else 0,
            last_error=error if isinstance(error, str) else None,
            state=state,
        )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def component_digest(root: Path, manifest: Manifest) -> dict[str, str]:
    """SHA-256 (hex) of every component file of ``manifest`` under ``root``, by relative path.

    The runtime folds this into a plugin's signature, so replacing a ``.wasm`` under an unchanged
    manifest still counts as a change (the original hashed the manifest only).

    :raises PackageError: a component file cannot be read.
    """
    digests: dict[str, str] = {}
    for component in manifest.components:
        if component.path in digests:
            continue
        sha = hashlib.sha256()
        try:
            with open(root / component.path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    sha.update(chunk)
        except OSError as exc:
            raise PackageError(f"cannot read component {component.path!r} in {root}: {exc}") from None
        digests[component.path] = sha.hexdigest()
    return digests
