"""The backend service (``stellatune serve``): one runtime, executor and Player behind a
JSON-RPC 2.0 control API on a unix socket (docs/service.md).

- :mod:`.app`: the long-lived objects and their events; :mod:`.methods`: the API's methods;
  :mod:`.protocol`: framing and errors; :mod:`.server`: the asyncio server; :mod:`.eventlog`:
  ``--events-log``; :mod:`.metrics`: snapshot and Prometheus; :mod:`.client`: a blocking client.
"""

from __future__ import annotations

from pathlib import Path

from .client import CallError, Client, default_socket_path

__all__ = ["CallError", "Client", "default_socket_path", "EVENTS_SCHEMA_PATH"]

#: The JSON Schema of one event (docs/events.md), shipped in the package.
EVENTS_SCHEMA_PATH = Path(__file__).with_name("events.schema.json")
