/* Resolve our wasmtime function table from the copy of libwasmtime wasmtime-py loaded. */
#include "st_wasmtime.h"

#include <dlfcn.h>
#include <stdio.h>

st_wasmtime_api st_wt;

int st_wasmtime_resolve(const char *path, char *err, size_t errlen)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) {
        snprintf(err, errlen, "libwasmtime is not loaded from %s (import wasmtime first): %s",
                 path, dlerror());
        return -1;
    }
#define ST_SYM(field, name)                                                  \
    do {                                                                     \
        *(void **)(&st_wt.field) = dlsym(lib, name);                         \
        if (!st_wt.field) {                                                  \
            snprintf(err, errlen, "libwasmtime at %s lacks %s", path, name); \
            dlclose(lib);                                                    \
            return -1;                                                       \
        }                                                                    \
    } while (0)
    ST_SYM(func_call_unchecked, "wasmtime_func_call_unchecked");
    ST_SYM(memory_data, "wasmtime_memory_data");
    ST_SYM(memory_data_size, "wasmtime_memory_data_size");
    ST_SYM(context_set_epoch_deadline, "wasmtime_context_set_epoch_deadline");
    ST_SYM(engine_increment_epoch, "wasmtime_engine_increment_epoch");
    ST_SYM(engine_clone, "wasmtime_engine_clone");
    ST_SYM(engine_delete, "wasm_engine_delete");
    ST_SYM(trap_message, "wasm_trap_message");
    ST_SYM(trap_code, "wasmtime_trap_code");
    ST_SYM(trap_delete, "wasm_trap_delete");
    ST_SYM(error_message, "wasmtime_error_message");
    ST_SYM(error_delete, "wasmtime_error_delete");
    ST_SYM(byte_vec_delete, "wasm_byte_vec_delete");
#undef ST_SYM
    /* NOLOAD only bumped the refcount of wasmtime-py's mapping; dropping ours keeps it mapped. */
    dlclose(lib);
    return 0;
}
