"""What plugins import from the host: permissions, host-stream, http-client and sidecars.

Everything is deny-by-default and reports failures as ``PluginError`` with the WIT
``plugin-error`` case, so the executor's import bindings (``stellatune.executor.imports``)
stay a thin translation layer. See docs/host.md.

- :class:`PluginHostContext` / :class:`Grants`: who is calling and what it may reach;
  :class:`HostCalls`: how many host calls it made, by function.
- :func:`open_stream` + :class:`OpenRequest` → :class:`HostStream` (file, http, tcp).
- :func:`fetch_json`.
- :class:`SidecarManager` (one per runtime): ``launch``, ``lock``, ``plugin_deactivated``,
  ``shutdown``, ``stats``.
"""

from .calls import HostCalls
from .grants import Grants, PluginHostContext
from .http import fetch_json
from .opener import open_stream
from .sidecar import (
    Channel,
    LaunchScope,
    LaunchSpec,
    LockGuard,
    RestartPolicy,
    SidecarEvent,
    SidecarManager,
    SidecarProcess,
    SidecarStats,
    TransportKind,
    TransportOption,
)
from .stream import Header, HostStream, HttpMethod, OpenRequest, SeekWhence, StreamOpenKind

__all__ = [
    "Grants",
    "HostCalls",
    "PluginHostContext",
    "fetch_json",
    "Header",
    "HostStream",
    "HttpMethod",
    "OpenRequest",
    "SeekWhence",
    "StreamOpenKind",
    "open_stream",
    "Channel",
    "LaunchScope",
    "LaunchSpec",
    "LockGuard",
    "RestartPolicy",
    "SidecarEvent",
    "SidecarManager",
    "SidecarProcess",
    "SidecarStats",
    "TransportKind",
    "TransportOption",
]
