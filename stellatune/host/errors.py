"""Short constructors for the :class:`~stellatune.errors.PluginError` cases host imports raise.

Every host service reports failures as ``PluginError(code, message)`` so the executor can hand
the WIT ``plugin-error`` case to the guest unchanged; these helpers keep call sites readable.
"""

from __future__ import annotations

import errno
import socket

from ..errors import PluginError, PluginErrorCode

__all__ = ["denied", "invalid_arg", "io_error", "not_found", "timeout", "unsupported", "from_os_error", "os_reason"]


def denied(message: str) -> PluginError:
    return PluginError(PluginErrorCode.DENIED, message)


def invalid_arg(message: str) -> PluginError:
    return PluginError(PluginErrorCode.INVALID_ARG, message)


def io_error(message: str) -> PluginError:
    return PluginError(PluginErrorCode.IO, message)


def not_found(message: str) -> PluginError:
    return PluginError(PluginErrorCode.NOT_FOUND, message)


def timeout(message: str) -> PluginError:
    return PluginError(PluginErrorCode.TIMEOUT, message)


def unsupported(message: str) -> PluginError:
    return PluginError(PluginErrorCode.UNSUPPORTED, message)


def os_reason(exc: BaseException) -> str:
    """The OS's words for an error (``strerror``), never ``str(exc)``: that carries the file
    names involved, which are host paths a plugin must not learn."""
    strerror = getattr(exc, "strerror", None)
    if strerror:
        return str(strerror)
    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, type(exc).__name__) if isinstance(code, int) else type(exc).__name__


def from_os_error(what: str, exc: OSError) -> PluginError:
    """Map an ``OSError`` to the closest ``plugin-error`` case, keeping the OS message.

    ``what`` must name only what the plugin asked for; the OS's file names are dropped."""
    detail = f"{what}: {os_reason(exc)}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return timeout(f"{what}: timed out")
    if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return not_found(detail)
    if isinstance(exc, PermissionError):
        return denied(detail)
    if isinstance(exc, IsADirectoryError):
        return invalid_arg(detail)
    return io_error(detail)
