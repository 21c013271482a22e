"""Swap two directory entries in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

A reinstall replaces ``plugins/<id>`` with a staged copy. Two renames (old aside, new in) leave
a moment with no ``plugins/<id>`` at all, in which another process's discovery misses the plugin
(and a kill there hides it until the staging directory is recovered). An exchange has no such
moment. Python's ``os`` does not expose ``renameat2``, so it is called from libc here; where the
kernel, the C library or the filesystem lacks it, :func:`exchange` says so and the caller falls
back to two renames.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional

__all__ = ["exchange"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: errnos that mean "this system cannot exchange", not "these paths are wrong".
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def _renameat2() -> Optional[Callable[..., int]]:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28, or no libc to open
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap the entries at ``a`` and ``b`` (both must exist). Returns False, having
    changed nothing, where the system cannot; raises ``OSError`` for any other failure."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
