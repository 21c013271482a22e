"""A fast path for ``list<u8>`` in wasmtime-py's component value conversion.

wasmtime-py 50 converts a ``list<u8>`` one element at a time through ctypes (≈ 2–3 µs per
*byte*), so one 4096-frame stereo PCM chunk costs about 100 ms and decoding runs slower than
real time. Each element of the C value list is a fixed-size ``wasmtime_component_val_t`` whose
``kind`` byte is at offset 0 and whose ``u8`` payload sits at the start of ``of``; numpy fills or
reads those two columns for the whole list in one step. Everything else, and every non-byte
list, still goes through wasmtime-py's own code. The layout is checked at import; if it ever
differs, the patch is not applied and the slow path keeps working.
"""

from __future__ import annotations

import ctypes
from ctypes import byref
from typing import Any

import numpy as np
import numpy.typing as npt
from wasmtime import Storelike
from wasmtime import _ffi as ffi
from wasmtime.component import _types

__all__ = ["install"]

_VAL = ffi.wasmtime_component_val_t
_ELEM = ctypes.sizeof(_VAL)
_KIND_AT = _VAL.kind.offset
_PAYLOAD_AT = _VAL.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value
_original_to_c = _types.ListType.convert_to_c
_original_from_c = _types.ListType.convert_from_c


# `Any` here: a list's component value (bytes in, bytes out), and the ctypes pointers of its C form.


def _columns(data_ptr: Any, n: int) -> npt.NDArray[np.uint8]:
    buf = (ctypes.c_uint8 * (n * _ELEM)).from_address(ctypes.addressof(data_ptr.contents))
    return np.frombuffer(memoryview(buf), dtype=np.uint8).reshape(n, _ELEM)


def _to_c(self: _types.ListType, store: Storelike, val: Any, ptr: Any) -> None:
    if not self._is_bytes():
        return _original_to_c(self, store, val, ptr)
    if not isinstance(val, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes value")
    data = np.frombuffer(val, dtype=np.uint8)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, len(data))
    if len(data):
        cols = _columns(raw.data, len(data))
        cols[:, _KIND_AT] = _U8
        cols[:, _PAYLOAD_AT] = data
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = raw


def _from_c(self: _types.ListType, c: Any) -> Any:
    if not self._is_bytes():
        return _original_from_c(self, c)
    try:
        n = c.of.list.size
        return _columns(c.of.list.data, n)[:, _PAYLOAD_AT].tobytes() if n else b""
    finally:
        ffi.wasmtime_component_vallist_delete(byref(c.of.list))


def _layout_ok() -> bool:
    return _KIND_AT == 0 and ctypes.sizeof(ffi.wasmtime_component_valkind_t) == 1 and _PAYLOAD_AT > 0


def install() -> bool:
    """Patch the conversion (idempotent); returns whether the fast path is active."""
    if not _layout_ok():
        return False
    _types.ListType.convert_to_c = _to_c  # type: ignore[method-assign]
    _types.ListType.convert_from_c = _from_c  # type: ignore[method-assign]
    return True
