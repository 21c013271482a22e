"""Component calls whose function types are read from wasmtime once, not on every call.

wasmtime-py's ``Func.__call__`` fetches the function's type on each call, and its type objects
are views over C handles: every ``fields``/``cases``/``element``/``payload``/``ok``/``err``
access builds the type tree below it again through the C API, and lifting a variant, option or
result asks ``_tagged()`` (itself such a walk) once per value. For a large result such as
``describe-hot-path``'s that is most of the call.

:class:`Signature` snapshots a function's type once into *frozen* types: subclasses of
wasmtime-py's own type classes whose structure is plain attributes computed when frozen, so
lowering and lifting still run wasmtime-py's conversion code (and :mod:`.fastbytes`' patch of
it) unchanged. :meth:`Signature.call` does what ``Func.__call__`` does, with that type.
:class:`ExportTable` keeps, per compiled component, each export's component-wide index and
signature: both hold for every instance of that component, unlike a ``Func``, which belongs to
one store.

Everything the typed path needs from wasmtime-py's internals (``Func._func``, its ffi bindings,
``enter_wasm``, the conversion methods and ``VariantLikeType._cases``/``_tagged``) is used here
and nowhere else: wasmtime is pinned (==50.0.1, pyproject.toml) because of such uses, and
tests/executor/test_typedcall.py checks the results against ``Func.__call__`` on our worlds'
functions.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence
from ctypes import byref, pointer
from typing import Any, Optional

from wasmtime import Storelike
from wasmtime import _ffi as ffi
from wasmtime.component import (
    Component,
    ExportIndex,
    Func,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    TupleType,
    ValType,
    VariantType,
)
from wasmtime.component._enter import enter_wasm
from wasmtime.component._types import VariantLikeType

__all__ = ["Signature", "ExportTable", "exports_of", "freeze"]

# `Any` here is a component value (lowered and lifted by wasmtime-py's conversion code), or a
# ctypes pointer of wasmtime-py's bindings.

Cases = tuple[tuple[str, Optional[ValType]], ...]

# --- frozen types ---------------------------------------------------------------------------
# Each subclass shadows its base's structure properties with slots (a slot is a data descriptor,
# so it wins over the inherited property) filled once. No C handle is held: ``Managed`` finds
# no pointer to free, and the conversion methods never ask for one.


class _FrozenList(ListType):
    __slots__ = ("element",)

    def __init__(self, element: ValType):
        self.element = element  # type: ignore[misc]


class _FrozenRecord(RecordType):
    __slots__ = ("fields",)

    def __init__(self, fields: Sequence[tuple[str, ValType]]):
        self.fields = list(fields)  # type: ignore[misc]


class _FrozenTuple(TupleType):
    __slots__ = ("elements",)

    def __init__(self, elements: Sequence[ValType]):
        self.elements = list(elements)  # type: ignore[misc]


class _FrozenVariantLike(VariantLikeType):
    """``_cases()`` and ``_tagged()`` from attributes (set by :meth:`_freeze_cases`)."""

    __slots__ = ()
    _case_list: list[tuple[str, Optional[ValType]]]
    _is_tagged: bool

    def _freeze_cases(self, cases: Cases) -> None:
        self._case_list = list(cases)
        self._is_tagged = VariantLikeType._tagged(self)  # wasmtime-py's rule, asked once

    def _cases(self) -> list[tuple[str, Optional[ValType]]]:
        return self._case_list

    def _tagged(self) -> bool:
        return self._is_tagged


class _FrozenVariant(_FrozenVariantLike, VariantType):
    __slots__ = ("cases",)

    def __init__(self, cases: Cases):
        self.cases = list(cases)  # type: ignore[misc]
        self._freeze_cases(cases)


class _FrozenOption(_FrozenVariantLike, OptionType):
    __slots__ = ("payload",)

    def __init__(self, payload: ValType):
        self.payload = payload  # type: ignore[misc]
        self._freeze_cases((("none", None), ("some", payload)))


class _FrozenResult(_FrozenVariantLike, ResultType):
    __slots__ = ("err", "ok")

    def __init__(self, ok: Optional[ValType], err: Optional[ValType]):
        self.ok = ok  # type: ignore[misc]
        self.err = err  # type: ignore[misc]
        self._freeze_cases((("ok", ok), ("err", err)))


def freeze(ty: ValType) -> ValType:
    """``ty`` with its structure read once. Primitives, enums, flags and resource handles come
    back as they are: their conversions read no structure."""
    if isinstance(ty, ListType):
        return _FrozenList(freeze(ty.element))
    if isinstance(ty, RecordType):
        return _FrozenRecord([(name, freeze(t)) for name, t in ty.fields])
    if isinstance(ty, TupleType):
        return _FrozenTuple([freeze(t) for t in ty.elements])
    if isinstance(ty, VariantType):
        return _FrozenVariant(tuple((name, _maybe_freeze(t)) for name, t in ty.cases))
    if isinstance(ty, OptionType):
        return _FrozenOption(freeze(ty.payload))
    if isinstance(ty, ResultType):
        return _FrozenResult(_maybe_freeze(ty.ok), _maybe_freeze(ty.err))
    return ty


def _maybe_freeze(ty: Optional[ValType]) -> Optional[ValType]:
    return None if ty is None else freeze(ty)


# --- calls ----------------------------------------------------------------------------------


class Signature:
    """A component function's parameter and result types, frozen."""

    __slots__ = ("params", "result")

    def __init__(self, params: Sequence[ValType], result: Optional[ValType]):
        self.params = tuple(params)
        self.result = result

    @classmethod
    def of(cls, func: Func, store: Storelike) -> Signature:
        fty = func.type(store)
        return cls([freeze(t) for _, t in fty.params], _maybe_freeze(fty.result))

    def call(self, store: Storelike, func: Func, *params: Any) -> Any:
        """``func(store, *params)``, as wasmtime-py's ``Func.__call__`` runs it (same lowering,
        call, lifting, clean-up and errors), with this signature's types."""
        param_tys = self.params
        if len(params) != len(param_tys):
            raise TypeError(f"wrong number of parameters provided: given {len(params)}, expected {len(param_tys)}")
        param_capi = (ffi.wasmtime_component_val_t * len(params))()
        n = 0
        try:
            for ty, val in zip(param_tys, params, strict=True):
                ty.convert_to_c(store, val, pointer(param_capi[n]))
                n += 1
            result_ty = self.result
            result_space = ffi.wasmtime_component_val_t() if result_ty is not None else None
            result_capi = byref(result_space) if result_space is not None else None
            context = store._context()

            def run() -> ctypes._Pointer[ffi.wasmtime_error_t]:
                return ffi.wasmtime_component_func_call(
                    byref(func._func), context, param_capi, n, result_capi, 1 if result_capi is not None else 0
                )

            enter_wasm(run)
            if result_ty is None or result_space is None:
                return None
            return result_ty.convert_from_c(result_space)
        finally:
            for i in range(n):
                ffi.wasmtime_component_val_delete(byref(param_capi[i]))


class ExportTable:
    """The exported functions of one compiled component: each one's component-wide export index
    (valid in every instance of the component) and, once a store has been asked, its signature.
    It holds no reference to the component (the weak table of :func:`exports_of` keys on it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str], ExportIndex] = {}
        self._signatures: dict[tuple[str, str], Signature] = {}

    def index(self, component: Component, instance_name: str, name: str) -> Optional[ExportIndex]:
        """The index of function ``name`` in exported instance ``instance_name`` of ``component``
        (this table's); None if there is none (not remembered: a missing export is an error path)."""
        key = (instance_name, name)
        with self._lock:
            found = self._indexes.get(key)
            if found is None:
                parent = component.get_export_index(instance_name)
                found = component.get_export_index(name, parent) if parent is not None else None
                if found is not None:
                    self._indexes[key] = found
            return found

    def signature(self, instance_name: str, name: str, func: Func, store: Storelike) -> Signature:
        """The signature of the export ``func`` is (read from ``store`` the first time)."""
        key = (instance_name, name)
        with self._lock:
            sig = self._signatures.get(key)
            if sig is None:
                sig = self._signatures[key] = Signature.of(func, store)
            return sig


_TABLES: weakref.WeakKeyDictionary[Component, ExportTable] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def exports_of(component: Component) -> ExportTable:
    """The export table of ``component`` (made once; it goes when the component does)."""
    with _TABLES_LOCK:
        table = _TABLES.get(component)
        if table is None:
            table = _TABLES[component] = ExportTable()
        return table
