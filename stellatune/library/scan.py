"""Finding the audio files of a library: a walk of the given folders, one stat per file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AUDIO_EXTENSIONS", "FoundFile", "scan"]

#: File name extensions taken as audio (lower case, no dot). Anything else is not looked at.
AUDIO_EXTENSIONS = frozenset(
    {"wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "aif", "aiff", "aifc", "wv", "ape", "caf"}
)


@dataclass(frozen=True)
class FoundFile:
    """One audio file: its absolute path (the catalog's key), folder, size and mtime."""

    path: str
    folder: str
    size: int
    mtime_ns: int


def scan(
    roots: Iterable[Path | str], on_error: Callable[[str, OSError], None] = lambda path, exc: None
) -> Iterator[FoundFile]:
    """Every audio file under ``roots`` (recursively, symlinked folders not followed), in a
    stable order: sorted by path within each folder. A root that is a file is taken as is.

    A symlinked file is found as its target (as a root given as a link is), so a file is one
    track however it is reached. ``on_error(folder, exc)`` hears of each folder the walk
    cannot list."""
    seen: set[str] = set()
    for root in roots:
        root = Path(root).expanduser().resolve()
        if root.is_file():
            found = _found(str(root))
            if found is not None and found.path not in seen:
                seen.add(found.path)
                yield found
            continue
        for folder, dirs, files in os.walk(root, onerror=lambda exc: on_error(str(exc.filename), exc)):
            dirs.sort()
            for name in sorted(files):
                if name.rsplit(".", 1)[-1].lower() not in AUDIO_EXTENSIONS or "." not in name:
                    continue
                path = os.path.join(folder, name)
                found = _found(os.path.realpath(path) if os.path.islink(path) else path)
                if found is not None and found.path not in seen:
                    seen.add(found.path)
                    yield found


def _found(path: str) -> FoundFile | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # vanished between the listing and the stat
    if not os.path.isfile(path):
        return None
    return FoundFile(path, os.path.dirname(path), st.st_size, st.st_mtime_ns)
