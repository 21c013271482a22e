"""Persisted desired states and host grants: ``<plugins_dir>/.stellatune-state.json``.

The file is small JSON, written atomically (temp file in the same directory, fsync, rename), so a
crash leaves either the old or the new content, never half of one::

    {"schema_version": 1, "desired_states": {"dev.example.x": "disabled"},
     "host_grants": {"dev.example.y": {"http": ["127.0.0.1:46321"]}}}

Only explicit states are stored; a plugin with no entry counts as enabled. ``host_grants`` (see
``runtime/grants.py``) is written only when some plugin has grants, so a file without any stays as
it was. The runtime writes both sections from what it holds; ``save(states)`` without grants
keeps the grants the file holds.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from ..errors import HostGrantError, RuntimeStateError
from ..manifest import Permissions
from .grants import validate_host_grants
from .model import DesiredState

__all__ = ["STATE_FILE_NAME", "DesiredStateStore"]

STATE_FILE_NAME = ".stellatune-state.json"
_SCHEMA_VERSION = 1


class DesiredStateStore:
    """Reads and writes the desired-state file of one plugins directory."""

    def __init__(self, plugins_dir: Path):
        self.path = Path(plugins_dir) / STATE_FILE_NAME

    def load(self) -> dict[str, DesiredState]:
        """The stored states; ``{}`` when the file does not exist.

        A file that exists but cannot be understood raises ``RuntimeStateError`` instead of being
        treated as empty: the next save would otherwise silently re-enable every plugin.
        """
        return self.read()[0]

    def load_host_grants(self) -> dict[str, Permissions]:
        """The stored host grants by plugin id; ``{}`` when there are none (or no file).

        Entries are checked with the manifest's lexical rules; a broken one makes the file
        corrupt (``RuntimeStateError`` naming the plugin and the field), never silently dropped.
        """
        return self.read()[1]

    def read(self) -> tuple[dict[str, DesiredState], dict[str, Permissions]]:
        """``(desired states, host grants)`` as stored; both ``{}`` when the file does not exist."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, {}
        except OSError as exc:
            raise RuntimeStateError(f"cannot read plugin state file {self.path}: {exc}") from exc
        try:
            doc = json.loads(raw.decode("utf-8"))  # UnicodeDecodeError is a ValueError
            if doc.get("schema_version") != _SCHEMA_VERSION:
                raise ValueError(f"unsupported schema_version {doc.get('schema_version')!r}")
            states = doc["desired_states"]
            if not isinstance(states, dict):
                raise ValueError("desired_states is not an object")
            desired = {str(pid): DesiredState(value) for pid, value in states.items()}
            return desired, _parse_host_grants(doc.get("host_grants"))
        except (ValueError, KeyError, AttributeError, TypeError, RecursionError, HostGrantError) as exc:
            raise RuntimeStateError(f"plugin state file {self.path} is corrupt ({exc}); fix or delete it") from exc

    def save(self, states: Mapping[str, DesiredState], host_grants: Optional[Mapping[str, Permissions]] = None) -> None:
        """Replace the stored states atomically; raise ``RuntimeStateError`` if that fails.

        ``host_grants`` replaces the stored grants too; ``None`` keeps what the file holds.
        """
        if host_grants is None:
            host_grants = self.read()[1]
        doc: dict[str, Any] = {
            "schema_version": _SCHEMA_VERSION,
            "desired_states": {pid: states[pid].value for pid in sorted(states)},
        }
        grants = {pid: host_grants[pid].to_json() for pid in sorted(host_grants) if not host_grants[pid].is_empty()}
        if grants:
            doc["host_grants"] = grants
        self._write(doc)

    def _write(self, doc: Mapping[str, Any]) -> None:
        data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".stellatune-state.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise RuntimeStateError(f"cannot write plugin state file {self.path}: {exc}") from exc


def _parse_host_grants(raw: object) -> dict[str, Permissions]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("host_grants is not an object")
    out: dict[str, Permissions] = {}
    for pid, record in raw.items():
        if not isinstance(record, dict):
            raise ValueError(f"host_grants.{pid} is not an object")
        out[str(pid)] = validate_host_grants(str(pid), record)
    return out
