"""A small blocking client of the control API (``stellatune ctl``/``status``, tests), and where
the socket lives by default."""

from __future__ import annotations

import itertools
import json
import os
import socket
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import RpcCallError

__all__ = ["default_socket_path", "Client", "CallError"]


def default_socket_path() -> Path:
    """``$XDG_RUNTIME_DIR/stellatune.sock``, else ``stellatune.sock`` in the per-user runtime
    dir (platformdirs' ``user_runtime_dir("stellatune")``)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "stellatune.sock"
    import platformdirs

    return Path(platformdirs.user_runtime_dir("stellatune")) / "stellatune.sock"


#: The service answered with a JSON-RPC error (``code``, ``message``, ``data``).
CallError = RpcCallError


class Client:
    """One connection; ``call(method, params)`` returns the result or raises :class:`CallError`.
    Notifications (events) that arrive meanwhile are kept in ``notifications``."""

    def __init__(
        self,
        path: Union[str, Path, None] = None,
        *,
        tcp: Optional[tuple[str, int]] = None,
        token: Optional[str] = None,
        timeout: float = 30.0,
    ):
        if tcp is not None:
            self.sock = socket.create_connection(tcp, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(path or default_socket_path()))
        self._file = self.sock.makefile("rb")
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []
        if token is not None:
            self.send({"auth": token})
            reply = self.read()
            if "error" in reply:
                raise CallError(reply["error"])

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionError("the service closed the connection")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def call(self, method: str, params: Optional[dict[str, Any]] = None) -> Any:
        rid = next(self._ids)
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        while True:
            msg = self.read()
            if "id" not in msg and "method" in msg:
                self.notifications.append(msg)
                continue
            if msg.get("id") != rid:
                continue
            if "error" in msg:
                raise CallError(msg["error"])
            return msg.get("result")

    def next_notification(self) -> dict[str, Any]:
        if self.notifications:
            return self.notifications.pop(0)
        while True:
            msg = self.read()
            if "method" in msg and "id" not in msg:
                return msg

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
