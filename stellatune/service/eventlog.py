"""``--events-log PATH``: every event as one JSON line, rotated by size (PATH.1 .. PATH.N).

Events are queued by the emitter and written by one thread, so no emitter waits on the disk.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Optional

from .protocol import encode

__all__ = ["EventLog"]


class EventLog:
    def __init__(self, path: Path, *, max_bytes: int = 10 << 20, backups: int = 5):
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._q: queue.Queue[Optional[dict[str, Any]]] = queue.Queue(maxsize=100_000)
        self.dropped = 0
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._thread = threading.Thread(target=self._run, name="stellatune-events-log", daemon=True)
        self._thread.start()

    def __call__(self, event: dict[str, Any]) -> None:
        """An event subscriber: queue ``event`` (dropped, and counted, if the queue is full)."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _run(self) -> None:
        while True:
            event = self._q.get()
            if event is None:
                self._file.flush()
                return
            line = encode(event).decode("utf-8")  # strict JSON, as on the wire (NaN → null)
            try:
                if self._file.tell() + len(line) > self.max_bytes and self._file.tell() > 0:
                    self._rotate()
                self._file.write(line)
                if self._q.empty():
                    self._file.flush()
            except OSError:
                self.dropped += 1

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=5.0)
        self._file.close()
