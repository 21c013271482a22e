"""Persisted desired states: ``<plugins_dir>/.stellatune-state.json``.

The file is small JSON, written atomically (temp file in the same directory, fsync, rename), so a
crash leaves either the old or the new content, never half of one::

    {"schema_version": 1, "desired_states": {"dev.example.x": "disabled"}}

Only explicit states are stored; a plugin with no entry counts as enabled.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

from ..errors import RuntimeStateError
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
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RuntimeStateError(f"cannot read plugin state file {self.path}: {exc}") from exc
        try:
            doc = json.loads(text)
            if doc.get("schema_version") != _SCHEMA_VERSION:
                raise ValueError(f"unsupported schema_version {doc.get('schema_version')!r}")
            states = doc["desired_states"]
            if not isinstance(states, dict):
                raise ValueError("desired_states is not an object")
            return {str(pid): DesiredState(value) for pid, value in states.items()}
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise RuntimeStateError(
                f"plugin state file {self.path} is corrupt ({exc}); fix or delete it"
            ) from exc

    def save(self, states: Mapping[str, DesiredState]) -> None:
        """Replace the stored states atomically; raise ``RuntimeStateError`` if that fails."""
        doc = {
            "schema_version": _SCHEMA_VERSION,
            "desired_states": {pid: states[pid].value for pid in sorted(states)},
        }
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
