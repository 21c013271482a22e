# Mirror of csrc/st_wasmtime.h: our declarations of the wasmtime C API subset.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t

cdef extern from "st_wasmtime.h" nogil:
    ctypedef struct wasmtime_context_t:
        pass
    ctypedef struct wasm_engine_t:
        pass
    ctypedef struct wasm_trap_t:
        pass
    ctypedef struct wasmtime_error_t:
        pass
    ctypedef struct wasmtime_func_t:
        uint64_t store_id
    ctypedef struct wasmtime_memory_t:
        pass
    ctypedef union wasmtime_val_raw_t:
        int32_t i32
    ctypedef struct wasm_byte_vec_t:
        size_t size
        char *data

    ctypedef struct st_wasmtime_api:
        void (*trap_message)(const wasm_trap_t *, wasm_byte_vec_t *)
        void (*trap_delete)(wasm_trap_t *)
        void (*error_message)(const wasmtime_error_t *, wasm_byte_vec_t *)
        void (*error_delete)(wasmtime_error_t *)
        void (*byte_vec_delete)(wasm_byte_vec_t *)

    st_wasmtime_api st_wt
    int st_wasmtime_resolve(const char *path, char *err, size_t errlen)
