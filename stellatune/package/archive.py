"""Safe staging of an install artifact (a directory or a ``.zip``) into a fresh directory.

Every entry is checked before a byte is written: its path must stay inside the staging
directory on any OS, and it must be a plain file or directory. Symlinks, devices, FIFOs and
sockets are refused rather than skipped, because an artifact carrying them is either broken or
hostile. Sizes are counted as bytes are written, never taken from headers, so a zip bomb stops at
the limit whatever its central directory claims.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import ArtifactLimitError, PackageError, UnsafeArtifactError, UnsupportedArtifactError
from ..manifest import unsafe_relative_path_reason

__all__ = ["ArtifactLimits", "stage_artifact"]

_COPY_CHUNK = 1 << 16
#: Directory artifacts are walked recursively; real packages nest a few levels at most.
_MAX_DIR_DEPTH = 64
_ZIP_ENCRYPTED_FLAG = 0x1
_ALLOWED_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


@dataclass(frozen=True)
class ArtifactLimits:
    """Caps on what one artifact may unpack to."""

    max_total_bytes: int = 256 * 1024 * 1024
    """Sum of all file sizes, as written."""
    max_entries: int = 10_000
    """Files plus directories."""


class _Budget:
    """Counts entries and bytes against the limits while staging."""

    def __init__(self, limits: ArtifactLimits):
        self.limits = limits
        self.entries = 0
        self.bytes = 0

    def add_entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ArtifactLimitError(f"artifact has more than {self.limits.max_entries} entries")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_total_bytes:
            raise ArtifactLimitError(f"artifact unpacks to more than {self.limits.max_total_bytes} bytes")


def _is_zip_artifact(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def stage_artifact(artifact: Path, dest: Path, limits: ArtifactLimits) -> None:
    """Copy or extract ``artifact`` into the existing, empty directory ``dest``.

    :raises UnsafeArtifactError: an entry would escape ``dest`` or is not a plain file/directory.
    :raises ArtifactLimitError: the artifact is larger than ``limits`` allow.
    :raises PackageError: the artifact is missing, of an unsupported type, or a broken zip.
    """
    budget = _Budget(limits)
    if artifact.is_dir():
        _copy_tree(artifact, dest, "", budget)
    elif artifact.is_file() and _is_zip_artifact(artifact):
        _extract_zip(artifact, dest, budget)
    elif not artifact.exists():
        raise PackageError(f"plugin artifact {artifact} not found")
    else:
        raise PackageError(f"unsupported plugin artifact {artifact} (expect a directory or a .zip file)")


def _checked_name(rel: str) -> str:
    """``rel`` with empty and ``.`` segments dropped; raises when it could escape."""
    reason = unsafe_relative_path_reason(rel)
    if reason:
        raise UnsafeArtifactError(f"artifact entry {rel!r} {reason}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafeArtifactError(f"artifact entry {rel!r} has no name")
    return "/".join(parts)


def _target(dest: Path, rel: str) -> Path:
    """Where ``rel`` lands under ``dest``, after checking that it really stays inside."""
    target = dest / rel
    # Lexical checks already rule out escapes; resolving guards against a directory on the way
    # having been replaced, which should never happen in a private staging directory.
    real_dest = os.path.realpath(dest)
    if os.path.commonpath([real_dest, os.path.realpath(target.parent)]) != real_dest:
        raise UnsafeArtifactError(f"artifact entry {rel!r} would be written outside the staging dir")
    return target


def _mode_for(source_mode: int) -> int:
    # Keep only "executable or not": sidecars need the x bit, nothing needs setuid or 0777.
    return 0o755 if source_mode & 0o111 else 0o644


def _write_stream(src: IO[bytes], target: Path, mode: int, budget: _Budget) -> None:
    # O_EXCL: a name that already exists (a duplicate entry) is refused, never overwritten;
    # O_NOFOLLOW: never write through a link, even one that should not be there.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_COPY_CHUNK):
            budget.add_bytes(len(chunk))
            out.write(chunk)
    os.chmod(target, mode)  # the umask may have narrowed it


def _copy_tree(src_dir: Path, dest: Path, rel_dir: str, budget: _Budget) -> None:
    try:
        entries = sorted(os.scandir(src_dir), key=lambda e: e.name)
    except OSError as exc:
        raise PackageError(f"cannot read artifact directory {src_dir}: {exc}") from None
    for entry in entries:
        rel = _checked_name(f"{rel_dir}/{entry.name}" if rel_dir else entry.name)
        budget.add_entry()
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeArtifactError(f"artifact entry {rel!r} is a symlink")
        target = _target(dest, rel)
        if stat.S_ISDIR(st.st_mode):
            if rel.count("/") >= _MAX_DIR_DEPTH:
                raise ArtifactLimitError(f"artifact nests directories deeper than {_MAX_DIR_DEPTH}")
            try:
                os.mkdir(target, 0o755)
            except OSError as exc:
                raise PackageError(f"cannot stage directory {rel!r}: {exc}") from None
            _copy_tree(Path(entry.path), dest, rel, budget)
        elif stat.S_ISREG(st.st_mode):
            try:
                with open(entry.path, "rb") as src:
                    _write_stream(src, target, _mode_for(st.st_mode), budget)
            except OSError as exc:
                raise PackageError(f"cannot copy artifact file {rel!r}: {exc}") from None
        else:
            raise UnsafeArtifactError(f"artifact entry {rel!r} is not a regular file or directory")


def _zip_entry_type(info: zipfile.ZipInfo) -> int:
    """The file-type bits a Unix zipper stored, or 0 when it stored none."""
    return stat.S_IFMT(info.external_attr >> 16)


def _extract_zip(artifact: Path, dest: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(artifact) as zf:
            infos = zf.infolist()
            if len(infos) > budget.limits.max_entries:
                raise ArtifactLimitError(f"zip has {len(infos)} entries, more than {budget.limits.max_entries}")
            _check_zip_entries(infos)
            # Declared sizes can only be trusted to be honest when they are too big: refusing
            # early spares writing up to the limit first. Real bytes are counted regardless.
            declared = sum(info.file_size for info in infos)
            if declared > budget.limits.max_total_bytes:
                raise ArtifactLimitError(
                    f"zip declares {declared} uncompressed bytes, more than {budget.limits.max_total_bytes}"
                )
            seen: set[str] = set()
            for info in infos:
                _extract_entry(zf, info, dest, budget, seen)
    # UnicodeDecodeError: a name flagged UTF-8 that is not; NotImplementedError: a method
    # zipfile cannot read (refused up front, but a lying local header may name another).
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, NotImplementedError) as exc:
        raise PackageError(f"{artifact} is not a readable zip: {exc}") from None
    except OSError as exc:
        raise PackageError(f"cannot extract {artifact}: {exc}") from None


def _check_zip_entries(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse the whole zip up front if any entry is unsafe, before anything is written."""
    for info in infos:
        _checked_name(info.orig_filename)
        kind = _zip_entry_type(info)
        if kind == stat.S_IFLNK:
            raise UnsafeArtifactError(f"zip entry {info.orig_filename!r} is a symlink")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArtifactError(f"zip entry {info.orig_filename!r} is not a regular file or directory")
        if info.flag_bits & _ZIP_ENCRYPTED_FLAG:
            raise UnsupportedArtifactError(f"zip entry {info.orig_filename!r} is encrypted")
        if info.compress_type not in _ALLOWED_COMPRESSION:
            raise UnsupportedArtifactError(
                f"zip entry {info.orig_filename!r} uses compression method {info.compress_type}"
                " (only stored and deflate are supported)"
            )


def _extract_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: _Budget, seen: set[str]) -> None:
    rel = _checked_name(info.orig_filename)
    is_dir = info.orig_filename.endswith("/") or _zip_entry_type(info) == stat.S_IFDIR
    key = rel + "/" if is_dir else rel
    if key in seen:
        raise UnsafeArtifactError(f"zip holds {rel!r} twice")
    seen.add(key)
    budget.add_entry()
    # Parents may be implied by file entries only; create them ourselves, inside dest.
    parts = rel.split("/")
    for depth in range(1, len(parts) + (1 if is_dir else 0)):
        directory = _target(dest, "/".join(parts[:depth]))
        if not directory.is_dir():
            try:
                os.mkdir(directory, 0o755)
            except FileExistsError:
                raise UnsafeArtifactError(f"zip entry {rel!r} collides with a file") from None
    if is_dir:
        return
    target = _target(dest, rel)
    try:
        with zf.open(info) as src:
            _write_stream(src, target, _mode_for(info.external_attr >> 16), budget)
    except FileExistsError:
        raise UnsafeArtifactError(f"zip entry {rel!r} collides with another entry") from None
