"""Hot-path stages: a core module (wasm, or the native ``.so`` of the same C source) ready for
the C block loop.

The control plane loads and initialises a module here with wasmtime-py (or cffi for native
builds); from then on only the Cython core calls it, on whichever thread runs the chain.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import re
import shutil
import struct
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

import cffi
import wasmtime
import wasmtime._bindings as _wt_bindings
import wasmtime._ffi as _wt_ffi
from wasmtime._extern import wrap_extern

from stellatune import abi, diagnostics
from stellatune.engine import _core
from stellatune.engine.stage import StageLifecycle
from stellatune.engine.stats import StageFault, StageStats, stage_stats
from stellatune.errors import EngineError, HotPathAbiError, HotPathMemoryLimitError, RuntimeStateError

__all__ = ["HotPathEngine", "HotPathStage", "hot_path_engine"]

#: Per-call budget of ``process``/``set_param`` in live playback before the epoch watchdog
#: interrupts it.
DEFAULT_DEADLINE_MS = 10.0
#: Consecutive timeouts after which a stage is bypassed for good. A single timeout only skips
#: that block: the deadline is wall-clock time, and a descheduled thread overruns it too.
DEFAULT_TIMEOUT_LIMIT = 3
#: Linear memory a hot-path core module may have (declared or grown to), unless the manifest
#: (``limits.hot_path_memory_mib``) or the host (``memory_limit_bytes``) says otherwise.
DEFAULT_MEMORY_LIMIT_BYTES = 64 << 20
#: Budget for control-plane calls (init, param names, drop).
_CONTROL_DEADLINE_S = 2.0
#: Compiled core modules each engine keeps after their last stage closed (LRU), so a chain
#: rebuilt with the same plugins does not recompile; each holds one memfd and its code.
MODULE_CACHE_PINNED = 4
_PARAM_NAMES_LIMIT = 4096


def _check_layouts() -> None:
    """Our C declarations must match wasmtime-py's (and so libwasmtime's) struct sizes."""
    ours = _core.struct_sizes()
    theirs = {
        "func": ctypes.sizeof(_wt_bindings.wasmtime_func_t),
        "memory": ctypes.sizeof(_wt_bindings.wasmtime_memory_t),
        "val_raw": ctypes.sizeof(_wt_bindings.wasmtime_val_raw_t),
    }
    if ours != theirs:
        raise EngineError(f"wasmtime C layouts changed: ours {ours}, wasmtime-py's {theirs}")


_check_layouts()
try:
    _core.resolve_wasmtime(str(_wt_ffi.filename), wasmtime.TrapCode.INTERRUPT.value)
except RuntimeError as e:  # a wasmtime-py whose library lacks a function we call
    raise EngineError(f"cannot use wasmtime-py's libwasmtime from the engine: {e}") from e


def _address(ptr: Any) -> int:  # a ctypes pointer of wasmtime-py's (their types are not exported)
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


#: The native baseline's entry points (stellatune/sdk/include/stellatune_hotpath.h), with the
#: spec's export names for the ones a spec may rename.
_NATIVE_CDEF = """
int32_t {init}(uint32_t args_ptr, uint32_t out_ctx_ptr);
int32_t {process}(uint32_t ctx, uint32_t frames, uint32_t out_frames_ptr, uint32_t out_flags_ptr);
{reset}{drop}uint32_t st_hot_param_names(void);
int32_t st_hot_set_param(uint32_t ctx, uint32_t id, float value);
void *st_hot_native_memory(void);
"""
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=8)
def _native_ffi(init: str, process: str, reset: Optional[str], drop: Optional[str]) -> cffi.FFI:
    """The cffi declarations of a native kernel with these export names (parsed once)."""
    names = [n for n in (init, process, reset, drop) if n is not None]
    bad = [n for n in names if not _C_IDENTIFIER.fullmatch(n)]
    if (
        bad
        or len(set(names) | {abi.PARAM_NAMES_EXPORT, abi.SET_PARAM_EXPORT, abi.NATIVE_MEMORY_EXPORT}) != len(names) + 3
    ):
        raise HotPathAbiError(f"export names {names} cannot be distinct C symbols of a native build")
    ffi = cffi.FFI()
    ffi.cdef(
        _NATIVE_CDEF.format(
            init=init,
            process=process,
            reset=f"int32_t {reset}(uint32_t ctx, uint32_t flags);\n" if reset else "",
            drop=f"void {drop}(uint32_t ctx);\n" if drop else "",
        )
    )
    return ffi


class _Unloader:
    """``ffi.dlclose`` a native kernel's private copy once the core stage that calls it is
    freed (each native stage would otherwise leave ~50 KB and 6 mappings), then remove the
    copy's temporary directory."""

    def __init__(self, ffi: cffi.FFI, lib: Any, tmp: str):
        self._ffi, self._lib, self._tmp = ffi, lib, tmp

    def __del__(self) -> None:
        try:
            self._ffi.dlclose(self._lib)
        except (OSError, ValueError):  # already closed
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)


class HotPathEngine:
    """The wasmtime ``Engine`` hot-path core modules are compiled for, and its epoch ticker.

    SIMD and guard pages are on. With ``epoch_interruption`` (the default) a C thread advances
    the epoch every ``tick_us`` while any chain runs, and every call gets a deadline, so a
    looping module is interrupted instead of hanging the audio thread (at +30-55 % per call).
    """

    def __init__(self, epoch_interruption: bool = True, tick_us: int = 1000):
        config = wasmtime.Config()
        config.wasm_simd = True
        config.epoch_interruption = epoch_interruption
        # The C block loop reads a stage's memory base once (st_stage.base); a grow faults the
        # stage anyway, and this makes wasmtime refuse a grow rather than move the memory.
        config.memory_may_move = False
        self.engine = wasmtime.Engine(config)
        self.epoch_interruption = epoch_interruption
        self.tick_us = tick_us
        self._ticker = _core.EpochTicker()
        self._lock = threading.Lock()
        # Compiled modules by the sha256 of their bytes (docs/engine.md, "Module cache"): weakly,
        # so a module lives exactly as long as a stage uses it, plus a few strong references
        # (most recently used first out) so rebuilding a chain does not recompile.
        self._modules: weakref.WeakValueDictionary[str, wasmtime.Module] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[str, wasmtime.Module] = OrderedDict()
        self.pinned_limit = MODULE_CACHE_PINNED

    def module(self, path: Path) -> wasmtime.Module:
        """Compile (once per content, while any stage or the small LRU holds it) a core module."""
        try:
            wasm = path.read_bytes()
        except OSError as e:
            raise HotPathAbiError(f"{path}: cannot read the core module: {e.strerror}") from e
        key = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            mod = self._modules.get(key)
        if mod is None:
            try:
                mod = wasmtime.Module(self.engine, wasm)
            except wasmtime.WasmtimeError as e:
                raise HotPathAbiError(f"{path}: not a valid core module: {e}") from e
            with self._lock:
                mod = self._modules.setdefault(key, mod)  # another thread may have won the race
            diagnostics.track("hotpath_modules", mod)
        with self._lock:
            self._recent[key] = mod
            self._recent.move_to_end(key)
            while len(self._recent) > self.pinned_limit:
                self._recent.popitem(last=False)
        return mod

    def clear_cache(self) -> None:
        """Drop the LRU's references: a module then lives only while a stage uses it."""
        with self._lock:
            self._recent.clear()

    def cached_modules(self) -> int:
        """Modules alive in the cache (pinned by the LRU or used by a live stage)."""
        with self._lock:
            return len(self._modules)

    def pinned_modules(self) -> int:
        with self._lock:
            return len(self._recent)

    def deadline_ticks(self, seconds: float) -> int:
        """Epoch ticks that cover ``seconds`` (0 when interruption is off)."""
        if not self.epoch_interruption:
            return 0
        return max(2, math.ceil(seconds * 1e6 / self.tick_us) + 1)

    @contextmanager
    def ticking(self) -> Iterator[None]:
        """Keep the epoch ticker running for the duration (reference counted; the thread lingers
        a quarter second after the last user, so the calls that build a stage share one)."""
        if not self.epoch_interruption:
            yield
            return
        self._ticker.acquire(_address(self.engine.ptr()), self.tick_us)
        try:
            yield
        finally:
            self._ticker.release()


_ENGINES: dict[bool, HotPathEngine] = {}
_ENGINES_LOCK = threading.Lock()


def hot_path_engine(epoch_interruption: bool = True) -> HotPathEngine:
    """The process-wide hot-path engine for that watchdog setting."""
    with _ENGINES_LOCK:
        if epoch_interruption not in _ENGINES:
            _ENGINES[epoch_interruption] = HotPathEngine(epoch_interruption)
        return _ENGINES[epoch_interruption]


def clear_module_caches() -> None:
    """Drop every engine's LRU of compiled modules (modules of live stages stay)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
    for engine in engines:
        engine.clear_cache()


diagnostics.register_gauge("hotpath_modules_pinned", lambda: sum(e.pinned_modules() for e in list(_ENGINES.values())))


def _init_args(spec: abi.CoreModuleSpec, sample_rate: int) -> bytes:
    b = spec.buffer
    return abi.pack_init_args(
        spec.role, sample_rate, b.channels, b.max_frames, b.in_offset, b.out_offset, b.sample_format
    )


def _parse_param_names(raw: bytes) -> tuple[str, ...]:
    # The table ends at its first empty name (an empty string or two NULs in a row). Split only
    # up to there: splitting the whole read window makes an object per trailing NUL (~70 us).
    end = raw.find(b"\0\0")
    names = []
    for part in (raw if end < 0 else raw[:end]).split(b"\0"):
        if not part:
            break
        names.append(part.decode("utf-8", errors="replace"))
    return tuple(names)


def _instance_export(store: wasmtime.Store, instance: wasmtime.Instance, name: str) -> Optional[Any]:
    """The export ``name`` of ``instance`` (a ``Func``, ``Memory``...), or None. Looked up alone:
    wasmtime-py's ``Instance.exports`` wraps every export of the module first, through ctypes,
    where a build needs a few (~25 us a stage)."""
    try:
        raw = name.encode()
    except UnicodeEncodeError:  # a lone surrogate: no export name (UTF-8) is that
        return None
    item = _wt_ffi.wasmtime_extern_t()
    if not _wt_ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(instance._instance), raw, len(raw), ctypes.byref(item)
    ):
        return None
    return wrap_extern(item)


def _validate(spec: abi.CoreModuleSpec, sample_rate: int, channels: int, where: str) -> None:
    problems = spec.problems()
    b = spec.buffer
    if b.channels != channels:
        problems.append(f"spec has {b.channels} channels, the stage runs {channels}")
    if b.sample_format is not abi.SampleFormat.F32LE or not b.interleaved:
        problems.append("the engine drives interleaved f32le buffers only")
    if not 0 < sample_rate <= 0xFFFF_FFFF:  # a u32 in st_hot_init_args
        problems.append(f"sample rate {sample_rate} is outside 1..4294967295")
    if problems:
        raise HotPathAbiError(f"{where}: " + "; ".join(problems))


class HotPathStage(StageLifecycle):
    """A loaded, initialised core module, ready to be placed in a :class:`Chain`.

    Build one with :meth:`from_wasm` or :meth:`from_native`. Parameters are set by name
    (:meth:`set_param`); while a pipeline plays, the change is queued to the audio thread and
    applied between blocks. After :meth:`close` (the module's ``drop`` has run) every control
    call raises :class:`~stellatune.errors.RuntimeStateError` and never reaches the module;
    ``fault`` and ``stats()`` stay readable. One garbage-collected unclosed emits a
    ``ResourceWarning`` (neither ``drop`` nor the held closers run from the finalizer).
    """

    _live: Optional[tuple[_core.Chain, int]]  # (its C chain, index there)

    def __init__(
        self,
        *,
        name: str,
        spec: abi.CoreModuleSpec,
        sample_rate: int,
        channels: int,
        core: _core.CoreStage,
        param_names: tuple[str, ...],
        native: bool,
        drop: Optional[Callable[[], object]] = None,
    ):
        """Internal: use :meth:`from_wasm` or :meth:`from_native`."""
        self._init_lifecycle()  # _lock, _live, _closed
        self.name = name
        self.spec = spec
        self.sample_rate = sample_rate
        self.channels = channels
        self.native = native
        self.param_names = param_names
        self.fallback_reason: Optional[str] = None
        """Always None: a hot-path stage is what a fallback falls back from."""
        self._core = core
        self._drop = drop
        self._held: list[Callable[[], object]] = []
        self._live_ticks = 0  # wasm stages: the per-call deadline in playback
        self._engine: Optional[HotPathEngine] = None  # wasm stages: whose ticker guards calls
        self._wasm_memory: Optional[tuple[wasmtime.Store, wasmtime.Memory]] = None
        # Wasm stages: the linear memory's size after init (fixed from then on: the C block loop
        # faults a stage whose memory changed, kind memory-grow) and the store's cap on it.
        self._memory_bytes: Optional[int] = None
        self._memory_limit_bytes: Optional[int] = None
        diagnostics.track("hotpath_stages", self)

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_wasm(
        cls,
        path: Union[str, Path],
        spec: abi.CoreModuleSpec,
        sample_rate: int,
        channels: int,
        config: Optional[Mapping[str, float]] = None,
        *,
        epoch_interruption: bool = True,
        deadline_ms: float = DEFAULT_DEADLINE_MS,
        timeout_limit: int = DEFAULT_TIMEOUT_LIMIT,
        name: Optional[str] = None,
        memory_limit_bytes: Optional[int] = None,
    ) -> HotPathStage:
        """Compile and instantiate the core module at ``path`` in its own Store, run ``init``
        and apply ``config`` (parameter name → value).

        The store's linear memory is capped at ``memory_limit_bytes`` (None: 64 MiB,
        :data:`DEFAULT_MEMORY_LIMIT_BYTES`): a module declaring more is refused before it is
        instantiated, and one whose ``init`` fails after a ``memory.grow`` past the cap was
        refused inside wasm, with :class:`~stellatune.errors.HotPathMemoryLimitError`.

        ``deadline_ms`` is each call's budget in live playback (offline rendering uses the
        pipeline's generous ``offline_deadline_ms``); ``timeout_limit`` consecutive overruns
        bypass the stage for good, fewer only skip the blocks that overran.
        """
        path = Path(path)
        where = name or path.name
        _validate(spec, sample_rate, channels, where)
        engine = hot_path_engine(epoch_interruption)
        module = engine.module(path)
        shape = _module_shape(module)
        if shape.imports:
            raise HotPathAbiError(
                f"{where}: a hot-path core module must not import anything ({', '.join(shape.imports)})"
            )
        cap = _memory_cap(memory_limit_bytes, where)
        _check_declared_memory(shape, cap, where)  # before instantiating: nothing is reserved
        store = diagnostics.track("hotpath_stores", wasmtime.Store(engine.engine))
        # The same mechanism as the component cap: wasmtime's store limiter fails instantiation
        # of a bigger memory and makes memory.grow past the cap return -1 inside wasm.
        store.set_limits(memory_size=cap)
        control_ticks = engine.deadline_ticks(_CONTROL_DEADLINE_S)
        with engine.ticking():
            if control_ticks:
                store.set_epoch_deadline(control_ticks)
            try:
                instance = wasmtime.Instance(store, module, [])
            except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
                if "exceeds memory limits" in str(e):  # e.g. a memory the module does not export
                    raise HotPathMemoryLimitError(
                        f"{where}: core module needs more memory than the {_mib(cap)} cap ({e}; {_RAISE_CAP})", cap
                    ) from e
                raise HotPathAbiError(f"{where}: instantiation failed: {e}") from e

            def export(export_name: Optional[str], kind: type, required: bool):
                item = _instance_export(store, instance, export_name) if export_name else None
                if item is None and required:
                    raise HotPathAbiError(f"{where}: missing export {export_name!r}")
                if item is not None and not isinstance(item, kind):
                    raise HotPathAbiError(f"{where}: export {export_name!r} is not a {kind.__name__}")
                return item

            memory = export(spec.memory_export, wasmtime.Memory, True)
            init = export(spec.init_export, wasmtime.Func, True)
            process = export(spec.process_export, wasmtime.Func, True)
            set_param = export(abi.SET_PARAM_EXPORT, wasmtime.Func, False)
            names_fn = export(abi.PARAM_NAMES_EXPORT, wasmtime.Func, False)
            drop = export(spec.drop_export, wasmtime.Func, False)
            reset = export(spec.reset_export, wasmtime.Func, False)
            _check_signature(where, shape, spec.process_export, ["i32"] * 4, [["i32"]])
            if reset is not None:
                _check_signature(where, shape, spec.reset_export, ["i32", "i32"], [["i32"]])
            _check_signature(where, shape, spec.init_export, ["i32", "i32"], [["i32"]])
            if set_param is not None:
                _check_signature(where, shape, abi.SET_PARAM_EXPORT, ["i32", "i32", "f32"], [[], ["i32"]])
            if names_fn is not None:
                _check_signature(where, shape, abi.PARAM_NAMES_EXPORT, [], [["i32"]])
            if drop is not None:
                _check_signature(where, shape, spec.drop_export, ["i32"], [[]])
            # Optional state carry (docs/hot-path-abi.md): all four, with these signatures, or none.
            state_sigs = {
                "st_hot_state_size": ["i32"],
                "st_hot_export_state": ["i32"],
                "st_hot_state_staging": ["i32", "i32"],
                "st_hot_import_state": ["i32", "i32", "i32"],
            }
            found = [_instance_export(store, instance, n) for n in state_sigs]
            state_fns = [f for f in found if isinstance(f, wasmtime.Func)]
            if len(state_fns) == len(state_sigs):
                for state_name, params in state_sigs.items():
                    _check_signature(where, shape, state_name, params, [["i32"]])
            else:
                state_fns = []

            b = spec.buffer
            size = memory.data_len(store)
            ends = [b.in_offset + b.buffer_bytes] + ([b.out_offset + b.buffer_bytes] if b.out_offset else [])
            if max(ends) > size:
                raise HotPathAbiError(f"{where}: buffers end at {max(ends)} but memory is {size} bytes")
            scratch = b.in_offset - abi.HOST_SCRATCH_SIZE
            memory.write(store, _init_args(spec, sample_rate), scratch)
            try:
                rc = init(store, scratch, scratch + abi.SCRATCH_OUT_CTX)
                names: tuple[str, ...] = ()
                offset = names_fn(store) if names_fn is not None else 0
                if offset:  # 0: the module has no parameters (nothing to read at address 0)
                    table = memory.read(store, offset, min(size, offset + _PARAM_NAMES_LIMIT))
                    names = _parse_param_names(table)
            except wasmtime.Trap as e:
                _init_failed(where, store, memory, cap, f"init trapped: {e}", e)
            if rc != 0:
                _init_failed(where, store, memory, cap, f"init returned error code {rc}", None)
            out_ctx = scratch + abi.SCRATCH_OUT_CTX
            guest_ctx = struct.unpack("<I", memory.read(store, out_ctx, out_ctx + 4))[0]
            memory_size = memory.data_len(store)  # after init: any later change is a memory.grow

        keep = (engine, module, store, instance, memory, process, set_param, reset, *state_fns)
        core = _core.CoreStage.wasm(
            context=_address(store._context()),
            process_func=ctypes.addressof(process._func),
            set_param_func=ctypes.addressof(set_param._func) if set_param is not None else 0,
            set_param_results=len(shape.signatures[abi.SET_PARAM_EXPORT][1]) if set_param is not None else 0,
            reset_func=ctypes.addressof(reset._func) if reset is not None else 0,
            memory=ctypes.addressof(memory._memory),
            memory_size=memory_size,
            guest_ctx=guest_ctx,
            role=int(spec.role),
            in_offset=b.in_offset,
            out_offset=b.out_offset or 0,
            channels=channels,
            max_frames=b.max_frames,
            deadline_ticks=engine.deadline_ticks(deadline_ms / 1000.0),
            timeout_limit=timeout_limit,
            keepalive=keep,
            state_funcs=tuple(ctypes.addressof(f._func) for f in state_fns),
        )

        def drop_guest() -> None:
            if drop is not None and not core.faulted:
                with engine.ticking():
                    if control_ticks:
                        store.set_epoch_deadline(control_ticks)
                    try:
                        drop(store, guest_ctx)
                    except wasmtime.Trap:
                        pass  # the instance is discarded right after; nothing to recover

        stage = cls(
            name=where,
            spec=spec,
            sample_rate=sample_rate,
            channels=channels,
            core=core,
            param_names=names,
            native=False,
            drop=drop_guest,
        )
        stage._wasm_memory = (store, memory)
        stage._memory_bytes, stage._memory_limit_bytes = memory_size, cap
        stage._engine = engine
        stage._live_ticks = core.deadline_ticks
        return stage._configured(config)

    @classmethod
    def from_native(
        cls,
        so_path: Union[str, Path],
        spec: abi.CoreModuleSpec,
        sample_rate: int,
        channels: int,
        config: Optional[Mapping[str, float]] = None,
        *,
        name: Optional[str] = None,
    ) -> HotPathStage:
        """Load the native build of a kernel (trusted, unsandboxed: the speed baseline).

        Each stage loads a private copy of the ``.so`` so two stages never share its statics.
        """
        so_path = Path(so_path)
        where = name or so_path.name
        _validate(spec, sample_rate, channels, where)
        try:
            ffi = _native_ffi(spec.init_export, spec.process_export, spec.reset_export, spec.drop_export)
        except HotPathAbiError as e:
            raise HotPathAbiError(f"{where}: {e}") from None
        tmp = tempfile.mkdtemp(prefix="stellatune-native-")
        private = Path(tmp) / so_path.name
        try:
            shutil.copyfile(so_path, private)
            lib = ffi.dlopen(str(private), os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise HotPathAbiError(f"{where}: cannot load native kernel: {e}") from e
        unloader = _Unloader(ffi, lib, tmp)

        def fn(symbol: Optional[str], required: bool = True):
            if symbol is None:
                return None
            try:
                return getattr(lib, symbol)
            except AttributeError:  # cffi: "function/symbol ... not found in library"
                if required:
                    raise HotPathAbiError(f"{where}: missing symbol {symbol!r}") from None
                return None

        def address(f: Any) -> int:  # what the C block loop calls
            return int(ffi.cast("uintptr_t", f)) if f is not None else 0

        try:
            memory_fn = fn(abi.NATIVE_MEMORY_EXPORT)
            init = fn(spec.init_export)
            process = fn(spec.process_export)
            set_param = fn(abi.SET_PARAM_EXPORT, required=False)
            names_fn = fn(abi.PARAM_NAMES_EXPORT, required=False)
            drop = fn(spec.drop_export, required=False)
            reset = fn(spec.reset_export, required=False)
            base = address(memory_fn())
            if not base:
                raise HotPathAbiError(f"{where}: st_hot_native_memory() returned NULL")
            b = spec.buffer
            scratch = b.in_offset - abi.HOST_SCRATCH_SIZE
            args = _init_args(spec, sample_rate)
            ffi.memmove(ffi.cast("char *", base + scratch), args, len(args))
            rc = init(scratch, scratch + abi.SCRATCH_OUT_CTX)
            if rc != 0:
                raise HotPathAbiError(f"{where}: init returned error code {rc}")
            guest_ctx = int(ffi.cast("uint32_t *", base + scratch + abi.SCRATCH_OUT_CTX)[0])
            names: tuple[str, ...] = ()
            offset = names_fn() if names_fn is not None else 0
            if offset:  # 0: no parameters
                names = _parse_param_names(ffi.buffer(ffi.cast("char *", base + offset), _PARAM_NAMES_LIMIT)[:])
        except BaseException:
            del unloader  # dlclose and remove the copy now
            raise
        core = _core.CoreStage.native(
            process_fn=address(process),
            set_param_fn=address(set_param),
            reset_fn=address(reset),
            base=base,
            guest_ctx=guest_ctx,
            role=int(spec.role),
            in_offset=b.in_offset,
            out_offset=b.out_offset or 0,
            channels=channels,
            max_frames=b.max_frames,
            keepalive=(unloader, lib, process, set_param, reset),  # first: freed last
        )
        del unloader  # the core stage owns it now
        stage = cls(
            name=where,
            spec=spec,
            sample_rate=sample_rate,
            channels=channels,
            core=core,
            param_names=names,
            native=True,
            drop=(lambda: drop(guest_ctx)) if drop is not None else None,
        )
        return stage._configured(config)

    def _configured(self, config: Optional[Mapping[str, float]]) -> HotPathStage:
        """Apply the initial config; a refused one closes the stage (its ``drop`` runs)."""
        try:
            self.configure(config or {})
        except BaseException:
            self.close()
            raise
        return self

    # --- parameters and control --------------------------------------------------------

    def param_id(self, name: str) -> int:
        """The id of a parameter (its index in the module's name table)."""
        try:
            return self.param_names.index(name)
        except ValueError:
            known = ", ".join(self.param_names) or "none"
            raise EngineError(f"{self.name}: unknown parameter {name!r} (known: {known})") from None

    def configure(self, config: Mapping[str, float]) -> None:
        """Apply several parameters; every key is checked before any is applied."""
        self._check_open("configure")
        if not isinstance(config, Mapping):
            raise EngineError(f"{self.name}: config must be an object of parameter values")
        ids = {key: self.param_id(key) for key in config}
        values = {}
        for key, value in config.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EngineError(f"{self.name}: parameter {key!r} must be a number, got {value!r}")
            values[key] = float(value)
        if not values:
            return
        with self._ticking():  # once for the batch: each acquire of the watchdog costs ~3 us
            for key in config:
                self._set(ids[key], values[key])

    def set_param(self, name: str, value: float) -> None:
        """Set a parameter by name: now when idle, or queued for the next block when live."""
        self._check_open("set_param")
        self.configure({name: value})

    def _set(self, param_id: int, value: float) -> None:
        """Apply one parameter (under :meth:`configure`'s ``_ticking``)."""
        if not self._core.has_set_param:
            raise EngineError(f"{self.name}: the module exports no {abi.SET_PARAM_EXPORT}")
        with self._lock:
            self._check_open("set_param")  # again under the lock: close() may have won the race
            if self._live is not None:
                chain, index = self._live
                if not chain.send("set_param", index, param_id, value):
                    raise EngineError(f"{self.name}: command queue full, parameter not applied")
                return
            rc = self._core.set_param_now(param_id, value)
        if rc == 0:
            return
        pname = self.param_names[param_id]
        fault = self.fault
        if fault is not None:
            raise EngineError(
                f"{self.name}: set_param({pname!r}) failed: stage bypassed after {fault.kind} {fault.message}".rstrip()
            )
        try:
            why = abi.ErrorCode(rc).name.lower().replace("_", "-")
        except ValueError:
            why = "unknown"
        raise EngineError(f"{self.name}: the module refused {pname}={value} (error code {rc}, {why})")

    def bypass(self, bypassed: bool = True) -> None:
        """Skip (or resume) this stage; blocks pass through it unchanged."""
        with self._lock:
            self._check_open("bypass")
            if self._live is not None:
                chain, index = self._live
                if not chain.send("bypass", index, 0, 1.0 if bypassed else 0.0):
                    raise EngineError(f"{self.name}: command queue full, bypass not applied")
                return
            self._core.user_bypass = bypassed

    def reset(self) -> None:
        """Clear the module's signal history (``st_hot_reset``), e.g. on a seek; parameters stay.

        Queued to the audio thread between blocks while a pipeline plays. A module without the
        export has nothing to reset.
        """
        self._check_open("reset")
        if not self._core.has_reset:
            return
        with self._lock:
            self._check_open("reset")
            if self._live is not None:
                chain, index = self._live
                if not chain.send("reset", index):
                    raise EngineError(f"{self.name}: command queue full, reset not applied")
                return
            with self._ticking():
                rc = self._core.reset_now()
        if rc != 0:
            fault = self.fault
            why = f"stage bypassed after {fault.kind}" if fault is not None else f"error code {rc}"
            raise EngineError(f"{self.name}: reset failed ({why})")

    @property
    def route(self) -> str:
        """How blocks reach the plugin: ``native`` for the native build, else ``hot-path``."""
        return "native" if self.native else "hot-path"

    @property
    def role(self) -> abi.Role:
        """DSP transform or output sink, from the spec."""
        return self.spec.role

    @property
    def max_frames(self) -> int:
        """Largest block the module accepts."""
        return self.spec.buffer.max_frames

    @property
    def memory_bytes(self) -> Optional[int]:
        """The module's linear memory in bytes, as ``init`` left it; None for a native build.

        Known without touching the store the audio thread runs: the size cannot change after
        init (a ``memory.grow`` faults the stage with ``memory-grow`` and bypasses it), so this
        is the size while the stage runs."""
        return self._memory_bytes

    @property
    def memory_limit_bytes(self) -> Optional[int]:
        """The store's cap on the linear memory (``memory_limit_bytes`` at build); None for a
        native build."""
        return self._memory_limit_bytes

    def hold(self, close: Callable[[], object]) -> None:
        """Keep something alive as long as this stage: ``close`` runs when the stage closes
        (after the module's ``drop``). The plugin's component processor, for one."""
        self._check_open("hold a resource")
        self._held.append(close)

    def _use_deadline(self, offline_ticks: Optional[int]) -> None:
        """Chain: per-call budget for the coming run (None: the live one)."""
        if self._engine is not None:
            self._core.deadline_ticks = self._live_ticks if offline_ticks is None else offline_ticks

    @contextmanager
    def _ticking(self) -> Iterator[None]:
        if self._engine is None:
            yield
        else:
            with self._engine.ticking():
                yield

    # --- state -------------------------------------------------------------------------

    @property
    def fault(self) -> Optional[StageFault]:
        """Why the engine bypassed this stage, or None while it is healthy."""
        raw = self._core.fault()
        return StageFault(*raw) if raw else None

    def stats(self) -> StageStats:
        """Process-time statistics and fault state."""
        return stage_stats(self.name, self._core.timing(), self._core.fault())

    def timing(self) -> dict[str, Any]:
        """The raw C counters (``CoreStage.timing()``: calls, total/min/max ns, the log-bucket
        histogram ``hist``, ...), read without touching the audio thread; may lag a block."""
        return self._core.timing()

    def time_calls(self, frames: int, iterations: int = 10_000) -> dict[str, float]:
        """Diagnostics: mean ns of the parts of one ``process`` call, each looped alone in C.

        ``call`` is the call as the block loop makes it (for wasm: the epoch-deadline set, the
        wasmtime call and the memory-grow check), ``timer`` one stage-timer read; wasm stages add
        ``entry`` (the bare wasmtime call), ``grow_check`` and ``deadline``. The module processes
        whatever its input region holds, ``iterations`` times per part, so time it idle (not in a
        playing chain) and expect its state to move on. A fault while timed is recorded as in a
        chain and raises :class:`~stellatune.errors.EngineError`.
        """
        if not 0 < frames <= self.max_frames:
            raise ValueError(f"frames must be 1..{self.max_frames}, got {frames}")
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        with self._lock:
            self._check_open("time_calls")
            if self._live is not None:
                raise RuntimeStateError(f"{self.name}: time_calls needs the stage idle, not in a running chain")
            try:
                with self._ticking():
                    return self._core.time_calls(frames, iterations)
            except RuntimeError:
                fault = self.fault
                what = f"{fault.kind} {fault.message}".rstrip() if fault else "a fault"
                raise EngineError(f"{self.name}: faulted while its calls were timed: {what}") from None

    def close(self) -> None:
        """Call the module's ``drop`` (if any) and close what the stage holds; the stage is
        unusable afterwards (idempotent)."""
        if not self._begin_close():
            return
        diagnostics.release("hotpath_stages", self)
        try:
            if self._drop is not None:
                self._drop()
        finally:
            for close in reversed(self._held):
                close()

    def _release_unclosed(self) -> None:
        # Never closed. No guest code (drop), held closers (executor locks) or diagnostics
        # (its lock) from a finalizer: the store, or the native copy (dlclosed by _Unloader),
        # goes with the core stage, and the counter with this object.
        self._drop = None
        self._held.clear()

    def __repr__(self) -> str:
        kind = "native" if self.native else "wasm"
        return f"<HotPathStage {self.name} ({kind}, {self.spec.role.wit_name})>"


_RAISE_CAP = "manifest limits.hot_path_memory_mib or memory_limit_bytes raise it"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _memory_cap(memory_limit_bytes: Optional[int], where: str) -> int:
    if memory_limit_bytes is None:
        return DEFAULT_MEMORY_LIMIT_BYTES
    if isinstance(memory_limit_bytes, bool) or not isinstance(memory_limit_bytes, int) or memory_limit_bytes <= 0:
        raise EngineError(f"{where}: memory_limit_bytes must be a positive integer, got {memory_limit_bytes!r}")
    return memory_limit_bytes


class _ModuleShape:
    """What the checks of :meth:`HotPathStage.from_wasm` need to know about a compiled module:
    its imports, its exported memories' declared minimum and its exported functions'
    signatures. Read once per module (the type queries cost ~0.2 ms a stage in wasmtime-py) and
    kept as long as the module lives."""

    def __init__(self, module: wasmtime.Module):
        self.imports = tuple(f"{i.module}.{i.name}" for i in module.imports)
        self.memory_min_bytes: dict[str, int] = {}
        self.signatures: dict[str, tuple[list[str], list[str]]] = {}
        for item in module.exports:
            ty = item.type
            if isinstance(ty, wasmtime.MemoryType):
                self.memory_min_bytes[item.name] = ty.limits.min * ty.page_size
            elif isinstance(ty, wasmtime.FuncType):
                self.signatures[item.name] = ([str(p) for p in ty.params], [str(r) for r in ty.results])


_SHAPES: weakref.WeakKeyDictionary[wasmtime.Module, _ModuleShape] = weakref.WeakKeyDictionary()
_SHAPES_LOCK = threading.Lock()


def _module_shape(module: wasmtime.Module) -> _ModuleShape:
    with _SHAPES_LOCK:
        shape = _SHAPES.get(module)
    if shape is None:
        shape = _ModuleShape(module)
        with _SHAPES_LOCK:
            _SHAPES[module] = shape
    return shape


def _check_declared_memory(shape: _ModuleShape, cap: int, where: str) -> None:
    """Refuse a module whose exported memories declare a minimum over ``cap`` (the limiter
    would refuse it at instantiation too, with a message that names neither side)."""
    for needed in shape.memory_min_bytes.values():
        if needed > cap:
            raise HotPathMemoryLimitError(
                f"{where}: core module needs {_mib(needed)} of memory, over the {_mib(cap)} cap ({_RAISE_CAP})",
                cap,
                needed,
            )


def _init_failed(
    where: str, store: wasmtime.Store, memory: wasmtime.Memory, cap: int, what: str, trap: Optional[wasmtime.Trap]
) -> None:
    """Raise for a failed ``init``. The cap makes a ``memory.grow`` past it return -1 inside
    wasm, which the host cannot observe; a module that then used the memory it did not get
    traps out of bounds. So: an out-of-bounds trap in a memory that may grow past the cap (no
    declared maximum within it) is a :class:`HotPathMemoryLimitError`; any other failure of
    such a module names the cap as a possible cause but stays a :class:`HotPathAbiError`."""
    ty = memory.type(store)
    limit = ty.limits.max
    could_grow_past = limit is None or limit * ty.page_size > cap
    if not could_grow_past:
        raise HotPathAbiError(f"{where}: {what}") from trap
    if trap is not None and trap.trap_code is wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS:
        raise HotPathMemoryLimitError(
            f"{where}: core module needs more memory than the {_mib(cap)} cap: a memory.grow past"
            f" it fails inside wasm, and {what.replace(chr(10), ' ')} ({_RAISE_CAP})",
            cap,
        ) from trap
    raise HotPathAbiError(
        f"{where}: {what} (its memory is capped at {_mib(cap)}, where memory.grow fails;"
        f" if it needs more, {_RAISE_CAP})"
    ) from trap


def _check_signature(
    where: str, shape: _ModuleShape, name: Optional[str], params: list[str], results_options: list[list[str]]
) -> None:
    """``name`` is an export the caller found as a function (so it is in ``shape``)."""
    got_params, got_results = shape.signatures[name or ""]
    if got_params != params or got_results not in results_options:
        raise HotPathAbiError(
            f"{where}: export {name!r} has signature ({', '.join(got_params)}) -> ({', '.join(got_results)}),"
            f" expected ({', '.join(params)}) -> ({' | '.join(', '.join(r) for r in results_options)})"
        )
