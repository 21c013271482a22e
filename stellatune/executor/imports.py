"""Host imports of the plugin worlds: the linker bindings, and the seam to the host services.

Every import a guest calls lands here, is translated from component values to plain Python and
forwarded to the :class:`PluginImports` object of the calling plugin. The executor gets one such
object per active plugin from its :class:`HostServices`; the default, :class:`GrantedHostServices`,
serves them with ``stellatune.host`` (deny-by-default grants from the manifest's permissions,
file/HTTP/TCP streams, fetch-json, sidecars). Another host can pass its own services.

Callback contract (host functions run *inside* a guest call, on the caller's thread):
- Return a value, or raise :class:`PluginError`: it reaches the guest as that ``plugin-error``
  case. Any other exception traps the guest call (wasmtime-py re-raises it after the call) and
  the executor discards the instance.
- Never call back into the same store.

Each guest call to a host import is counted, by function (``host-stream.open``,
``host-stream-handle.read``, ``sidecar.launch``, ``channel.write``...), in the ``host_calls``
(:class:`~stellatune.host.HostCalls`) of the plugin's imports object when it has one, as
:class:`GrantedPluginImports` does; WASI calls and resource destructors are not counted.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Protocol, Union

import wasmtime
from wasmtime import StoreContext, Storelike
from wasmtime import _ffi as ffi
from wasmtime.component import Linker, LinkerInstance, ResourceAny, ResourceHost, ResourceType, Variant, _types

from ..errors import PluginError, PluginErrorCode
from ..host import (
    Grants,
    Header,
    HostCalls,
    HttpMethod,
    OpenRequest,
    PluginHostContext,
    StreamOpenKind,
    fetch_json,
    open_stream,
)
from ..host.errors import from_os_error
from ..host.stream import HostStream, OpenedFileStream, SeekWhence
from .descriptors import PluginDescriptor
from .values import field_of
from .worlds import WorldSpec, iface

if TYPE_CHECKING:
    from ..host.sidecar import LockGuard, SidecarManager, SidecarProcess, TransportOption
    from ..manifest import Manifest

__all__ = [
    "PluginImports",
    "HostServices",
    "GrantedPluginImports",
    "GrantedHostServices",
    "FileHostStream",
    "StoreImports",
    "build_linker",
    "HOST_STREAM_TYPE",
    "manifest_with_host_grants",
]

# `Any` here is a component value: what a guest passes to a host import (a record, a list...) and
# what the import hands back, both untyped in wasmtime-py (lowered by the import's WIT type).

#: A store, or the context wasmtime-py passes host functions (the same store inside a call).
_StoreLike = Union[wasmtime.Store, StoreContext]

# Host resource type ids (any distinct integers; wasmtime compares them per linker).
HOST_STREAM_TYPE = 1
PROCESS_TYPE = 2
LOCK_GUARD_TYPE = 3
CHANNEL_TYPE = 4


# --- the seam -------------------------------------------------------------------------------


class PluginImports(Protocol):
    """What one plugin's imports reach. Refuse by raising :class:`PluginError`."""

    plugin_id: str

    def open_stream(self, request: OpenRequest) -> HostStream: ...
    def fetch_json(self, url: str) -> str: ...
    def sidecar_lock(self, name: str, timeout_ms: Optional[int]) -> LockGuard: ...
    def sidecar_launch(self, spec: Any) -> SidecarProcess: ...
    def close(self) -> None:
        """The plugin was deactivated: release what it still holds (sidecars, locks)."""


def manifest_with_host_grants(plugin: PluginDescriptor) -> Optional[Manifest]:
    """The manifest a plugin's :class:`HostServices` see: ``plugin.manifest`` with the host
    grants the runtime stored for it (``RuntimePluginInfo.host_grants``, ``stellatune plugins
    grant``) added to its ``permissions`` block, so every host-services implementation grants
    both. Unchanged when there are none (or ``plugin`` has no such fields)."""
    manifest: Any = getattr(plugin, "manifest", None)
    extra: Any = getattr(plugin, "host_grants", None)
    base: Any = getattr(manifest, "permissions", None)
    if manifest is None or base is None or extra is None or extra.is_empty():
        return manifest
    merged = {
        f.name: tuple(dict.fromkeys((*getattr(base, f.name), *getattr(extra, f.name))))
        for f in dataclasses.fields(base)
    }
    return dataclasses.replace(manifest, permissions=dataclasses.replace(base, **merged))


class HostServices(Protocol):
    """Makes the per-plugin :class:`PluginImports`; ``manifest`` carries the permissions: the
    manifest's block with the plugin's host grants merged in (:func:`manifest_with_host_grants`)."""

    def for_plugin(self, plugin_id: str, root_dir: Path, manifest: Optional[Manifest]) -> PluginImports: ...

    def shutdown(self) -> None: ...


class GrantedPluginImports:
    """:class:`PluginImports` served by ``stellatune.host`` under one plugin's grants."""

    def __init__(self, context: PluginHostContext, services: GrantedHostServices):
        self.context = context
        self.plugin_id = context.plugin_id
        self._services = services

    @property
    def grants(self) -> Grants:
        """Add run-time grants here (e.g. the music folder a user picked for a source)."""
        return self.context.grants

    @property
    def host_calls(self) -> HostCalls:
        """The plugin's host calls by function (counted by the import bindings)."""
        return self.context.calls

    def open_stream(self, request: OpenRequest) -> HostStream:
        return open_stream(self.context, request)

    def fetch_json(self, url: str) -> str:
        return fetch_json(self.context, url)

    def sidecar_lock(self, name: str, timeout_ms: Optional[int]) -> LockGuard:
        return self._services.sidecars().lock(self.context, name, timeout_ms)

    def sidecar_launch(self, spec: Any) -> SidecarProcess:
        from ..host.sidecar import LaunchSpec

        launch = LaunchSpec(
            executable=field_of(spec, "executable"),
            scope=field_of(spec, "scope"),
            args=tuple(field_of(spec, "args")),
            preferred_control=_options(field_of(spec, "preferred_control")),
            preferred_data=_options(field_of(spec, "preferred_data")),
            env=tuple(tuple(kv) for kv in field_of(spec, "env")),
        )
        return self._services.sidecars().launch(self.context, launch)

    def close(self) -> None:
        self._services.plugin_closed(self.plugin_id)


class GrantedHostServices:
    """The default :class:`HostServices`: grants from the manifest's ``permissions`` block."""

    def __init__(self) -> None:
        self._sidecars: Optional[SidecarManager] = None
        self._lock = threading.Lock()

    def for_plugin(self, plugin_id: str, root_dir: Path, manifest: Optional[Manifest]) -> GrantedPluginImports:
        permissions = getattr(manifest, "permissions", None)
        return GrantedPluginImports(PluginHostContext.from_permissions(plugin_id, root_dir, permissions), self)

    def sidecars(self) -> SidecarManager:
        """The sidecar manager, made on first use (plugins without sidecars never start one)."""
        with self._lock:
            if self._sidecars is None:
                from ..host.sidecar import SidecarManager

                self._sidecars = SidecarManager()
            return self._sidecars

    def plugin_closed(self, plugin_id: str) -> None:
        with self._lock:
            manager = self._sidecars
        if manager is not None:
            manager.plugin_deactivated(plugin_id)

    def shutdown(self) -> None:
        with self._lock:
            manager, self._sidecars = self._sidecars, None
        if manager is not None:
            manager.shutdown()


class FileHostStream(OpenedFileStream):
    """A stream over a file *the host* chose (the track a user plays), to hand to a decoder.

    No grant is involved: the plugin never names the path. Files a plugin asks for go through
    :meth:`PluginImports.open_stream` and its grants.

    :raises PluginError: the file cannot be opened (``not-found``, ``denied``, ``io``).
    """

    def __init__(self, path: os.PathLike[str] | str):
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise from_os_error(f"open {os.fspath(path)!r}", exc) from None
        super().__init__(file, Path(path))


# --- per-store resource tables --------------------------------------------------------------


class StoreImports:
    """The host side of one store: its plugin context and the host resources the guest holds."""

    _by_store: ClassVar[dict[int, StoreImports]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, store: wasmtime.Store, context: PluginImports):
        self.context = context
        # Optional on a PluginImports: another host's services may not count calls.
        self.calls: Optional[HostCalls] = getattr(context, "host_calls", None)
        self.pending: Optional[BaseException] = None
        """An unexpected exception a host import raised during the current call."""
        self._tables: dict[int, dict[int, object]] = {
            t: {} for t in (HOST_STREAM_TYPE, PROCESS_TYPE, LOCK_GUARD_TYPE, CHANNEL_TYPE)
        }
        self._reps = itertools.count(1)
        self._key = _store_key(store)
        with self._registry_lock:
            self._by_store[self._key] = self

    @classmethod
    def of(cls, store: _StoreLike) -> StoreImports:
        return cls._by_store[_store_key(store)]

    def count(self, function: str) -> None:
        """One guest call of host import ``function``."""
        if self.calls is not None:
            self.calls.add(function)

    def insert(self, type_id: int, obj: object) -> ResourceHost:
        """Put a host object in the table and return an owned handle to give the guest."""
        rep = next(self._reps) & 0xFFFFFFFF
        self._tables[type_id][rep] = obj
        return ResourceHost.own(rep, type_id)

    def get(self, type_id: int, handle: ResourceAny, store: _StoreLike) -> object:
        rep = handle.to_host(store).rep
        try:
            return self._tables[type_id][rep]
        except KeyError:
            raise PluginError(PluginErrorCode.NOT_FOUND, f"unknown handle {rep}") from None

    def take(self, type_id: int, rep: int) -> object:
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


def _store_key(store: _StoreLike) -> int:
    # A store's context pointer is stable for its lifetime, and host callbacks receive a
    # StoreContext wrapping that same pointer: the one key both sides share.
    return ctypes.cast(store._context(), ctypes.c_void_p).value or 0


def _close_quietly(obj: object) -> None:
    closer = getattr(obj, "close", None) or getattr(obj, "unlock", None) or getattr(obj, "release", None)
    try:
        if closer is not None:
            closer()
    except Exception:  # noqa: BLE001 - teardown must finish even if one stream misbehaves
        pass


# --- the bindings ---------------------------------------------------------------------------

HostFunc = Callable[..., Any]


def _park(store: StoreContext, error: BaseException) -> wasmtime.WasmtimeError:
    """Keep an unexpected exception on the calling store and trap the guest with its text.

    wasmtime-py parks a plain exception in one process-global slot that any thread's next call
    may pick up; a WasmtimeError bypasses that slot, and the executor re-raises what was parked
    here, for this store only, after the call (docs/executor.md, "Host imports").
    """
    StoreImports.of(store).pending = error
    return wasmtime.WasmtimeError(f"host import failed: {type(error).__name__}: {error}")


class ErrResult:
    """The ``err`` case of a ``result``, said explicitly.

    wasmtime-py lowers a ``result`` untagged: it picks the first case whose Python types accept
    the value, and an ``option<T>`` ok case accepts anything, so ``Variant("timeout", ...)``
    returned for ``result<option<s32>, plugin-error>`` (``wait-exit``) was taken for the ok case
    and failed. :func:`_result_to_c` lowers this wrapper as ``err`` whatever the ok type.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


_original_result_to_c = _types.ResultType.convert_to_c


def _result_to_c(self: _types.ResultType, store: Storelike, val: Any, ptr: Any) -> None:
    if not isinstance(val, ErrResult):
        return _original_result_to_c(self, store, val, ptr)
    payload = None
    if self.err is not None:
        raw = ffi.wasmtime_component_val_t()
        self.err.convert_to_c(store, val.value, ctypes.pointer(raw))
        payload = ffi.wasmtime_component_val_new(ctypes.byref(raw))
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_RESULT
    ptr.contents.of.result.is_ok = False
    ptr.contents.of.result.val = payload


_types.ResultType.convert_to_c = _result_to_c  # type: ignore[method-assign]


def _guarded(fn: HostFunc, name: str) -> HostFunc:
    """A service's PluginError becomes the WIT ``plugin-error`` the guest expects; anything
    else traps the guest call. Each call is counted as ``name``."""

    def call(store: StoreContext, *args: Any) -> Any:
        try:
            StoreImports.of(store).count(name)
            return fn(store, *args)
        except PluginError as e:
            return ErrResult(Variant(e.code.value, e.message))
        except BaseException as e:  # noqa: BLE001 - Ctrl-C in a host import must not abort the process
            raise _park(store, e) from None

    return call


def _best_effort(fn: HostFunc, name: str) -> HostFunc:
    """For functions without a result (``close``, ``unlock``): a refusal cannot be reported, and
    must not trap the guest, so it is dropped. Counted as ``name``."""

    def call(store: StoreContext, *args: Any) -> None:
        try:
            StoreImports.of(store).count(name)
            fn(store, *args)
        except PluginError:
            pass
        except BaseException as e:  # noqa: BLE001 - see _guarded
            raise _park(store, e) from None

    return call


def _contained(fn: HostFunc, name: str) -> HostFunc:
    """For functions that cannot fail by contract (``transport``): any exception traps.
    Counted as ``name``."""

    def call(store: StoreContext, *args: Any) -> Any:
        try:
            StoreImports.of(store).count(name)
            return fn(store, *args)
        except BaseException as e:  # noqa: BLE001 - see _guarded
            raise _park(store, e) from None

    return call


# Imported functions that return no result, so cannot carry a plugin-error.
_NO_RESULT = {"close", "unlock"}


def _releaser(t: int) -> Callable[[StoreContext, int], None]:
    """The destructor of host resource type ``t``: close the object behind the dropped handle."""
    return lambda store, rep: StoreImports.of(store).release(t, rep)


def _bind_host_stream(inst: LinkerInstance) -> None:
    t = HOST_STREAM_TYPE
    inst.add_resource("host-stream-handle", ResourceType.host(t), _releaser(t))

    def open_(store: StoreContext, req: Any) -> ResourceHost:
        host = StoreImports.of(store)
        method = field_of(req, "method")
        request = OpenRequest(
            kind=StreamOpenKind(field_of(req, "kind")),
            target=field_of(req, "target"),
            method=HttpMethod(method) if method is not None else None,
            headers=tuple(Header(field_of(h, "name"), field_of(h, "value")) for h in field_of(req, "headers")),
            body=field_of(req, "body"),
            connect_timeout_ms=field_of(req, "connect_timeout_ms"),
            read_timeout_ms=field_of(req, "read_timeout_ms"),
        )
        return host.insert(t, host.context.open_stream(request))

    def method(name: str, fn: Callable[..., Any]) -> None:
        def call(store: StoreContext, handle: ResourceAny, *args: Any) -> Any:
            return fn(StoreImports.of(store).get(t, handle, store), *args)

        counted = f"host-stream-handle.{name}"
        inst.add_func(
            f"[method]host-stream-handle.{name}",
            _best_effort(call, counted) if name in _NO_RESULT else _guarded(call, counted),
        )

    inst.add_func("open", _guarded(open_, "host-stream.open"))
    method("read", lambda s, n: bytes(s.read(n)))
    method("seek", lambda s, off, whence: s.seek(off, SeekWhence(whence)))
    method("tell", lambda s: s.tell())
    method("size", lambda s: s.size())
    method("close", lambda s: s.close())


def _options(values: Any) -> tuple[TransportOption, ...]:
    from ..host.sidecar import TransportOption

    return tuple(
        TransportOption(field_of(v, "kind"), field_of(v, "priority"), field_of(v, "max_frame_bytes")) for v in values
    )


def _bind_sidecar(inst: LinkerInstance) -> None:
    for name, t in (("process", PROCESS_TYPE), ("lock-guard", LOCK_GUARD_TYPE), ("channel", CHANNEL_TYPE)):
        inst.add_resource(name, ResourceType.host(t), _releaser(t))

    def lock(store: StoreContext, name: str, timeout_ms: Optional[int]) -> ResourceHost:
        host = StoreImports.of(store)
        return host.insert(LOCK_GUARD_TYPE, host.context.sidecar_lock(name, timeout_ms))

    def launch(store: StoreContext, spec: Any) -> ResourceHost:
        host = StoreImports.of(store)
        return host.insert(PROCESS_TYPE, host.context.sidecar_launch(spec))

    def method(resource: str, t: int, name: str, fn: Callable[..., Any], *, returns_channel: bool = False) -> None:
        def call(store: StoreContext, handle: ResourceAny, *args: Any) -> Any:
            host = StoreImports.of(store)
            out = fn(host.get(t, handle, store), *args)
            return host.insert(CHANNEL_TYPE, out) if returns_channel else out

        # transport() cannot fail; close/unlock have no result to carry an error.
        counted = f"{resource}.{name}"
        wrapped = (
            _contained(call, counted)
            if name == "transport"
            else _best_effort(call, counted)
            if name in _NO_RESULT
            else _guarded(call, counted)
        )
        inst.add_func(f"[method]{resource}.{name}", wrapped)

    inst.add_func("lock", _guarded(lock, "sidecar.lock"))
    inst.add_func("launch", _guarded(launch, "sidecar.launch"))
    method("process", PROCESS_TYPE, "open-control", lambda p: p.open_control(), returns_channel=True)
    method(
        "process",
        PROCESS_TYPE,
        "open-data",
        lambda p, role, pref: p.open_data(role, _options(pref)),
        returns_channel=True,
    )
    method("process", PROCESS_TYPE, "wait-exit", lambda p, timeout: p.wait_exit(timeout))
    method("process", PROCESS_TYPE, "terminate", lambda p, grace: p.terminate(grace))
    method("lock-guard", LOCK_GUARD_TYPE, "unlock", lambda g: g.unlock())
    method("channel", CHANNEL_TYPE, "transport", lambda c: _enum_value(c.transport()))
    method("channel", CHANNEL_TYPE, "write", lambda c, data: c.write(bytes(data)))
    method("channel", CHANNEL_TYPE, "read", lambda c, n, timeout: bytes(c.read(n, timeout)))
    method("channel", CHANNEL_TYPE, "close", lambda c: c.close())


def _enum_value(value: object) -> object:
    return getattr(value, "value", value)


def _bind_http_client(inst: LinkerInstance) -> None:
    inst.add_func(
        "fetch-json",
        _guarded(lambda store, url: StoreImports.of(store).context.fetch_json(url), "http-client.fetch-json"),
    )


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
