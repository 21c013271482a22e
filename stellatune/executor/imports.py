"""Host imports of the plugin worlds: the linker bindings, and the seam to the host services.

Every import a guest calls lands here, is translated from component values to plain Python,
and is forwarded to the :class:`PluginHostContext` of the calling plugin. The executor builds one
context per active plugin through :class:`HostServices`; ``stellatune.host`` provides the real
services (grants, file/HTTP/TCP streams, fetch-json, sidecars). Until a service is wired, the
context here refuses with ``unsupported`` so plugins see a clean error, never a crash.

Callback contract (host functions run *inside* a guest call, on the caller's thread):
- Return a value or ``Variant(code, message)``; a :class:`PluginError` raised by a service becomes
  that variant. Any other exception traps the guest call (wasmtime-py parks it and re-raises it
  after the call); the executor then discards the instance.
- Never call back into the same store.
"""
from __future__ import annotations

import ctypes
import io
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import wasmtime
from wasmtime.component import Linker, LinkerInstance, ResourceAny, ResourceHost, ResourceType, Variant

from ..errors import PluginError, PluginErrorCode
from .values import field_of
from .worlds import WorldSpec, iface

__all__ = [
    "HostStream", "OpenRequest", "TransportOption", "LaunchSpec", "SidecarChannel", "SidecarProcess",
    "LockGuard", "PluginHostContext", "HostServices", "UnwiredHostContext", "UnwiredHostServices",
    "FileHostStream", "StoreImports", "build_linker", "HOST_STREAM_TYPE",
]

# Host resource type ids (any distinct integers; wasmtime compares them per linker).
HOST_STREAM_TYPE = 1
PROCESS_TYPE = 2
LOCK_GUARD_TYPE = 3
CHANNEL_TYPE = 4


# --- what the host services implement ------------------------------------------------------


@runtime_checkable
class HostStream(Protocol):
    """A byte stream the host opened (file, HTTP, TCP). ``whence`` is ``io.SEEK_SET/CUR/END``."""

    def read(self, max_bytes: int) -> bytes: ...
    def seek(self, offset: int, whence: int) -> int: ...
    def tell(self) -> int: ...
    def size(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class OpenRequest:
    """WIT ``host-stream.open-request`` in Python words."""

    kind: str
    """``file``, ``http``, ``tcp`` or ``udp``."""
    target: str
    method: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()
    body: Optional[bytes] = None
    connect_timeout_ms: Optional[int] = None
    read_timeout_ms: Optional[int] = None


@dataclass(frozen=True)
class TransportOption:
    """WIT ``sidecar.transport-option``."""

    kind: str
    priority: int
    max_frame_bytes: Optional[int] = None


@dataclass(frozen=True)
class LaunchSpec:
    """WIT ``sidecar.launch-spec``."""

    scope: str
    executable: str
    args: tuple[str, ...]
    preferred_control: tuple[TransportOption, ...]
    preferred_data: tuple[TransportOption, ...]
    env: tuple[tuple[str, str], ...]


class SidecarChannel(Protocol):
    def transport(self) -> str: ...
    def write(self, data: bytes) -> int: ...
    def read(self, max_bytes: int, timeout_ms: Optional[int]) -> bytes: ...
    def close(self) -> None: ...


class SidecarProcess(Protocol):
    def open_control(self) -> SidecarChannel: ...
    def open_data(self, role: str, preferred: tuple[TransportOption, ...]) -> SidecarChannel: ...
    def wait_exit(self, timeout_ms: Optional[int]) -> Optional[int]: ...
    def terminate(self, grace_ms: int) -> None: ...


class LockGuard(Protocol):
    def unlock(self) -> None: ...


class PluginHostContext(Protocol):
    """Everything one plugin may ask of the host. Refuse by raising :class:`PluginError`."""

    plugin_id: str

    def open_stream(self, request: OpenRequest) -> HostStream: ...
    def fetch_json(self, url: str) -> str: ...
    def sidecar_lock(self, name: str, timeout_ms: Optional[int]) -> LockGuard: ...
    def sidecar_launch(self, spec: LaunchSpec) -> SidecarProcess: ...
    def close(self) -> None:
        """The plugin was deactivated: release its sidecars, locks and streams."""


class HostServices(Protocol):
    """Makes the per-plugin context; ``manifest`` is the plugin's parsed manifest (permissions)."""

    def context_for(self, plugin_id: str, root_dir: Path, manifest: Any) -> PluginHostContext: ...


@dataclass
class UnwiredHostContext:
    """The context used while no host services are configured: every request is ``unsupported``."""

    plugin_id: str

    def _refuse(self, what: str) -> PluginError:
        return PluginError(PluginErrorCode.UNSUPPORTED, f"{what} is not available in this host",
                           plugin_id=self.plugin_id)

    def open_stream(self, request: OpenRequest) -> HostStream:
        raise self._refuse(f"host-stream {request.kind}")

    def fetch_json(self, url: str) -> str:
        raise self._refuse("http-client")

    def sidecar_lock(self, name: str, timeout_ms: Optional[int]) -> LockGuard:
        raise self._refuse("sidecar lock")

    def sidecar_launch(self, spec: LaunchSpec) -> SidecarProcess:
        raise self._refuse("sidecar launch")

    def close(self) -> None:
        pass


class UnwiredHostServices:
    """Default :class:`HostServices`: plugins get no streams, HTTP or sidecars."""

    def context_for(self, plugin_id: str, root_dir: Path, manifest: Any) -> PluginHostContext:
        return UnwiredHostContext(plugin_id)


class FileHostStream:
    """A stream over a file *the host* chose (e.g. the track the user plays), handed to a decoder.

    This needs no grant: the plugin never names the path. Plugin-requested files go through
    :meth:`PluginHostContext.open_stream` and its permission checks.
    """

    def __init__(self, path: Path):
        self._file: io.BufferedReader = open(path, "rb")
        self._size = Path(path).stat().st_size

    def read(self, max_bytes: int) -> bytes:
        return self._file.read(max(1, max_bytes))

    def seek(self, offset: int, whence: int) -> int:
        if whence == io.SEEK_SET and offset < 0:
            raise PluginError(PluginErrorCode.INVALID_ARG, "negative seek from start")
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._file.close()


# --- per-store resource tables --------------------------------------------------------------


class StoreImports:
    """The host side of one store: its plugin context and the host resources the guest holds."""

    _by_store: dict[int, "StoreImports"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, store: wasmtime.Store, context: PluginHostContext):
        self.context = context
        self._tables: dict[int, dict[int, Any]] = {t: {} for t in (HOST_STREAM_TYPE, PROCESS_TYPE,
                                                                    LOCK_GUARD_TYPE, CHANNEL_TYPE)}
        self._reps = itertools.count(1)
        self._key = _store_key(store)
        with self._registry_lock:
            self._by_store[self._key] = self

    @classmethod
    def of(cls, store: Any) -> "StoreImports":
        return cls._by_store[_store_key(store)]

    def insert(self, type_id: int, obj: Any) -> ResourceHost:
        """Put a host object in the table and return an owned handle to give the guest."""
        rep = next(self._reps) & 0xFFFFFFFF
        self._tables[type_id][rep] = obj
        return ResourceHost.own(rep, type_id)

    def get(self, type_id: int, handle: ResourceAny, store: Any) -> Any:
        rep = handle.to_host(store).rep
        try:
            return self._tables[type_id][rep]
        except KeyError:
            raise PluginError(PluginErrorCode.NOT_FOUND, f"unknown handle {rep}") from None

    def take(self, type_id: int, rep: int) -> Any:
        """Remove a host object (its guest handle's destructor then finds nothing to close)."""
        return self._tables[type_id].pop(rep, None)

    def release(self, type_id: int, rep: int) -> None:
        obj = self._tables[type_id].pop(rep, None)
        if obj is not None:
            _close_quietly(obj)

    def close(self) -> None:
        """Close every host object still held, and forget this store."""
        with self._registry_lock:
            self._by_store.pop(self._key, None)
        for table in self._tables.values():
            for obj in list(table.values()):
                _close_quietly(obj)
            table.clear()


def _store_key(store: Any) -> int:
    # A store's context pointer is stable for its lifetime, and host callbacks receive a
    # StoreContext wrapping that same pointer: the one key both sides share.
    return ctypes.cast(store._context(), ctypes.c_void_p).value or 0


def _close_quietly(obj: Any) -> None:
    closer = getattr(obj, "close", None) or getattr(obj, "unlock", None) or getattr(obj, "release", None)
    try:
        if closer is not None:
            closer()
    except Exception:  # noqa: BLE001 - teardown must finish even if one stream misbehaves
        pass


# --- the bindings ---------------------------------------------------------------------------

HostFunc = Callable[..., Any]


def _guarded(fn: HostFunc) -> HostFunc:
    """Turn a service's PluginError into the WIT ``plugin-error`` variant the guest expects."""

    def call(store: Any, *args: Any) -> Any:
        try:
            return fn(store, *args)
        except PluginError as e:
            return Variant(e.code.value, e.message)

    return call


_WHENCE = {"start": io.SEEK_SET, "current": io.SEEK_CUR, "end": io.SEEK_END}


def _bind_host_stream(inst: LinkerInstance) -> None:
    t = HOST_STREAM_TYPE
    inst.add_resource("host-stream-handle", ResourceType.host(t),
                      lambda store, rep: StoreImports.of(store).release(t, rep))

    def open_(store: Any, req: Any) -> Any:
        host = StoreImports.of(store)
        method = field_of(req, "method")
        request = OpenRequest(
            kind=field_of(req, "kind"), target=field_of(req, "target"),
            method=method,
            headers=tuple((field_of(h, "name"), field_of(h, "value")) for h in field_of(req, "headers")),
            body=field_of(req, "body"),
            connect_timeout_ms=field_of(req, "connect_timeout_ms"),
            read_timeout_ms=field_of(req, "read_timeout_ms"),
        )
        return host.insert(t, host.context.open_stream(request))

    def method(name: str, fn: Callable[..., Any]) -> None:
        def call(store: Any, handle: ResourceAny, *args: Any) -> Any:
            return fn(StoreImports.of(store).get(t, handle, store), *args)
        inst.add_func(f"[method]host-stream-handle.{name}", _guarded(call))

    inst.add_func("open", _guarded(open_))
    method("read", lambda s, n: bytes(s.read(n)))
    method("seek", lambda s, off, whence: s.seek(off, _WHENCE[whence]))
    method("tell", lambda s: s.tell())
    method("size", lambda s: s.size())
    method("close", lambda s: s.close())


def _transport_options(values: Any) -> tuple[TransportOption, ...]:
    return tuple(TransportOption(field_of(v, "kind"), field_of(v, "priority"), field_of(v, "max_frame_bytes"))
                 for v in values)


def _bind_sidecar(inst: LinkerInstance) -> None:
    for name, t in (("process", PROCESS_TYPE), ("lock-guard", LOCK_GUARD_TYPE), ("channel", CHANNEL_TYPE)):
        inst.add_resource(name, ResourceType.host(t),
                          lambda store, rep, t=t: StoreImports.of(store).release(t, rep))

    def lock(store: Any, name: str, timeout_ms: Optional[int]) -> Any:
        host = StoreImports.of(store)
        return host.insert(LOCK_GUARD_TYPE, host.context.sidecar_lock(name, timeout_ms))

    def launch(store: Any, spec: Any) -> Any:
        host = StoreImports.of(store)
        launch_spec = LaunchSpec(
            scope=field_of(spec, "scope"), executable=field_of(spec, "executable"),
            args=tuple(field_of(spec, "args")),
            preferred_control=_transport_options(field_of(spec, "preferred_control")),
            preferred_data=_transport_options(field_of(spec, "preferred_data")),
            env=tuple(tuple(kv) for kv in field_of(spec, "env")),
        )
        return host.insert(PROCESS_TYPE, host.context.sidecar_launch(launch_spec))

    def method(resource: str, t: int, name: str, fn: Callable[..., Any], *, returns_channel: bool = False) -> None:
        def call(store: Any, handle: ResourceAny, *args: Any) -> Any:
            host = StoreImports.of(store)
            out = fn(host.get(t, handle, store), *args)
            return host.insert(CHANNEL_TYPE, out) if returns_channel else out
        wrapped = call if name in ("unlock", "transport", "close") else _guarded(call)
        inst.add_func(f"[method]{resource}.{name}", wrapped)

    inst.add_func("lock", _guarded(lock))
    inst.add_func("launch", _guarded(launch))
    method("process", PROCESS_TYPE, "open-control", lambda p: p.open_control(), returns_channel=True)
    method("process", PROCESS_TYPE, "open-data", lambda p, role, pref: p.open_data(role, _transport_options(pref)),
           returns_channel=True)
    method("process", PROCESS_TYPE, "wait-exit", lambda p, timeout: p.wait_exit(timeout))
    method("process", PROCESS_TYPE, "terminate", lambda p, grace: p.terminate(grace))
    method("lock-guard", LOCK_GUARD_TYPE, "unlock", lambda g: g.unlock())
    method("channel", CHANNEL_TYPE, "transport", lambda c: c.transport())
    method("channel", CHANNEL_TYPE, "write", lambda c, data: c.write(bytes(data)))
    method("channel", CHANNEL_TYPE, "read", lambda c, n, timeout: bytes(c.read(n, timeout)))
    method("channel", CHANNEL_TYPE, "close", lambda c: c.close())


def _bind_http_client(inst: LinkerInstance) -> None:
    inst.add_func("fetch-json", _guarded(lambda store, url: StoreImports.of(store).context.fetch_json(url)))


_BINDERS: dict[str, Callable[[LinkerInstance], None]] = {
    "host-stream": _bind_host_stream,
    "sidecar": _bind_sidecar,
    "http-client": _bind_http_client,
}


def build_linker(engine: wasmtime.Engine, world: WorldSpec) -> Linker:
    """A linker for ``world``: WASI p2 (granted nothing by the store's config) plus our imports."""
    linker = Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        # Interfaces that only declare types still have to exist as (empty) instances.
        for types_only in ("common", "hot-path"):
            with root.add_instance(iface(types_only)):
                pass
        for name in world.imports:
            with root.add_instance(iface(name)) as inst:
                _BINDERS[name](inst)
    return linker
