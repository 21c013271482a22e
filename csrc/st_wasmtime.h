/* Our declarations of the small subset of the wasmtime C API the engine calls.
 *
 * libwasmtime is NOT linked: the functions are looked up in the copy wasmtime-py already
 * loaded (dlopen with RTLD_NOLOAD), because a second copy installs its own trap handler and
 * the first trap in the other copy's code kills the process. Layouts follow wasmtime 50's
 * wasmtime/_bindings.py; _core.pyx checks the sizes against ctypes at import.
 */
#ifndef ST_WASMTIME_H
#define ST_WASMTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct wasmtime_context wasmtime_context_t; /* opaque */
typedef struct wasm_engine_t wasm_engine_t;         /* opaque */
typedef struct wasm_trap_t wasm_trap_t;             /* opaque */
typedef struct wasmtime_error wasmtime_error_t;     /* opaque */

typedef struct {
    uint64_t store_id;
    void *private_;
} wasmtime_func_t; /* 16 bytes */

typedef struct {
    struct {
        uint64_t store_id;
        uint32_t private1;
    } anon;
    uint32_t private2;
} wasmtime_memory_t; /* 24 bytes: copied bytewise from wasmtime-py, never interpreted */

typedef union {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
    uint8_t v128[16];
    uint32_t anyref;
    uint32_t externref;
    void *funcref;
} wasmtime_val_raw_t; /* 16 bytes */

typedef struct {
    size_t size;
    char *data;
} wasm_byte_vec_t;

typedef struct st_wasmtime_api {
    wasmtime_error_t *(*func_call_unchecked)(wasmtime_context_t *, const wasmtime_func_t *,
                                             wasmtime_val_raw_t *, size_t, wasm_trap_t **);
    uint8_t *(*memory_data)(const wasmtime_context_t *, const wasmtime_memory_t *);
    size_t (*memory_data_size)(const wasmtime_context_t *, const wasmtime_memory_t *);
    void (*context_set_epoch_deadline)(wasmtime_context_t *, uint64_t);
    void (*engine_increment_epoch)(wasm_engine_t *);
    wasm_engine_t *(*engine_clone)(wasm_engine_t *); /* another reference to the same engine */
    void (*engine_delete)(wasm_engine_t *);
    void (*trap_message)(const wasm_trap_t *, wasm_byte_vec_t *);
    bool (*trap_code)(const wasm_trap_t *, uint8_t *);
    void (*trap_delete)(wasm_trap_t *);
    void (*error_message)(const wasmtime_error_t *, wasm_byte_vec_t *);
    void (*error_delete)(wasmtime_error_t *);
    void (*byte_vec_delete)(wasm_byte_vec_t *);
} st_wasmtime_api;

/* The one process-wide table, filled by st_wasmtime_resolve() before any stage is built. */
extern st_wasmtime_api st_wt;

/* Look every function up in the already-loaded library at `path`.
 * Returns 0, or -1 with a message in err. */
int st_wasmtime_resolve(const char *path, char *err, size_t errlen);

#endif
