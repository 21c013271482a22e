"""TCP connects and socket waits that a plugin call's budget can cut short (``budget.py``).

``socket.create_connection`` blocks in ``getaddrinfo`` and ``connect`` where nothing can wake it;
:func:`connect_tcp` resolves on a helper thread and connects non-blocking under ``poll``, so a
connect ends at the call's deadline or at once when the plugin is disabled.
:func:`socket_wait` covers code that only knows socket timeouts (``http.client``, TLS): the
timeout is cut to the budget and a cancel shuts the socket down, which wakes a blocked ``recv``.

Error messages name the ``host:port`` the plugin asked for, never a resolved address.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import threading
from collections.abc import Iterator
from typing import Optional

from . import budget
from .errors import from_os_error, not_found, timeout

__all__ = ["connect_tcp", "socket_wait"]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _resolve(host: str, port: int, timeout_s: float, what: str) -> list[tuple]:
    """``getaddrinfo`` on a helper thread, so that only the wait for it is bounded (a stuck
    resolver thread is left behind as a daemon, it holds nothing of the plugin's)."""
    if _is_literal(host):
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    result: list = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)
        done.set()

    threading.Thread(target=run, name="stellatune-resolve", daemon=True).start()
    wait_s = budget.allowed_wait(what, timeout_s)
    with budget.on_cancel(done.set):
        done.wait(wait_s)
    budget.check(what)
    if not result:
        raise timeout(f"{what}: name resolution timed out after {timeout_s:g} s")
    if isinstance(result[0], socket.gaierror):
        raise not_found(f"cannot resolve host {host!r}: {result[0].strerror}")
    if isinstance(result[0], OSError):
        raise from_os_error(what, result[0])
    return result[0]


def connect_tcp(host: str, port: int, timeout_s: float, what: str) -> socket.socket:
    """A connected, blocking TCP socket to ``host:port`` within ``timeout_s`` (cut to the call's
    budget). ``what`` starts every error message; it must name only what the plugin asked for."""
    last: Optional[OSError] = None
    for family, kind, proto, _name, address in _resolve(host, port, timeout_s, what):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                if not budget.wait_fds(what, [(sock.fileno(), select.POLLOUT)], timeout_s):
                    raise timeout(f"{what}: connect timed out after {timeout_s:g} s")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                sock.setblocking(True)
                return sock
            last = OSError(code, os.strerror(code))
        except BaseException:
            sock.close()
            raise
        sock.close()
    raise from_os_error(f"{what}: connect", last or OSError(errno.ECONNREFUSED, "Connection refused"))


@contextlib.contextmanager
def socket_wait(sock: socket.socket, timeout_s: Optional[float], what: str) -> Iterator[socket.socket]:
    """Set the socket's timeout to ``timeout_s`` cut to the call's budget, and shut the socket
    down if the call is cancelled inside the block (that wakes a blocked ``recv``/``send``)."""
    sock.settimeout(budget.allowed_wait(what, timeout_s))

    def wake() -> None:
        sock.shutdown(socket.SHUT_RDWR)

    with budget.on_cancel(wake):
        yield sock
