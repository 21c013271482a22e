"""``host-stream.open``: the one place that knows every kind of stream.

It sits above the stream modules (file and TCP in ``stream``, HTTP in ``http_stream``), so none of
them needs to import another.
"""

from __future__ import annotations

from .errors import invalid_arg, unsupported
from .grants import PluginHostContext
from .http_stream import HttpStream
from .stream import FileStream, HostStream, OpenRequest, StreamOpenKind, TcpStream

__all__ = ["open_stream"]


def open_stream(ctx: PluginHostContext, request: OpenRequest) -> HostStream:
    """WIT ``host-stream.open``: check the grants, then open the stream ``request`` names."""
    try:
        kind = StreamOpenKind(request.kind)
    except ValueError:
        raise invalid_arg(f"unknown stream kind {request.kind!r}") from None
    if kind is StreamOpenKind.FILE:
        return FileStream(ctx, request.target)
    if kind is StreamOpenKind.HTTP:
        return HttpStream(ctx, request)
    if kind is StreamOpenKind.TCP:
        return TcpStream(ctx, request)
    raise unsupported("udp streams are not supported")
