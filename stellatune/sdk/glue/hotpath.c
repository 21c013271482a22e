/*
 * hotpath.c: the hot-path ABI v1 exports (docs/hot-path-abi.md) over the plugin's kernel.
 * Linked into the core module (wasm32, memory base 0) and into the native baseline .so
 * (memory base st_native_memory, returned by st_hot_native_memory).
 */
#include "st_glue.h"

#if !defined(__wasm__)
unsigned char st_native_memory[ST_ARENA_END] __attribute__((aligned(64)));

ST_EXPORT(st_hot_native_memory) void *st_hot_native_memory(void) {
    return st_native_memory;
}
#endif

/* Pointers the host hands over must lie in its scratch: anything else is a host bug, and in the
 * native build an unchecked offset would be a wild write. */
static int in_scratch(uint32_t ptr, uint32_t size) {
    return ptr % 4 == 0 && ptr >= ST_SCRATCH_OFFSET && ptr <= ST_IN_OFFSET - size;
}

static void put_u32(uint32_t ptr, uint32_t value) {
    memcpy(ST_MEM(ptr), &value, 4);
}

ST_EXPORT(st_hot_init) int32_t st_hot_init(uint32_t args_ptr, uint32_t out_ctx_ptr) {
    if (!in_scratch(args_ptr, sizeof(st_hot_init_args)) || !in_scratch(out_ctx_ptr, 4))
        return ST_HOT_ERR_INVALID_ARG;
    st_hot_init_args a;
    memcpy(&a, ST_MEM(args_ptr), sizeof a);
    if (a.abi_version != ST_HOT_ABI_VERSION || a.role != st_plugin_def.role)
        return ST_HOT_ERR_INVALID_ARG;
    if (a.sample_format != ST_HOT_FORMAT_F32LE) return ST_HOT_ERR_UNSUPPORTED;
    if (a.in_offset != ST_IN_OFFSET ||
        (a.role == ST_HOT_ROLE_DSP_TRANSFORM && a.out_offset != ST_OUT_OFFSET) ||
        a.buffer_bytes != a.max_frames * a.channels * 4u)
        return ST_HOT_ERR_INVALID_ARG;
    st_instance *inst = st_instance_create();
    if (!inst) return ST_HOT_ERR_NOT_READY; /* all ST_MAX_INSTANCES contexts are live */
    st_stream stream = {a.sample_rate, a.channels, a.max_frames};
    int32_t rc = st_instance_start(inst, &stream);
    if (rc != ST_HOT_OK) {
        st_instance_destroy(inst);
        return rc;
    }
    put_u32(out_ctx_ptr, st_instance_id(inst));
    return ST_HOT_OK;
}

ST_EXPORT(st_hot_process)
int32_t st_hot_process(uint32_t ctx, uint32_t frames, uint32_t out_frames_ptr,
                       uint32_t out_flags_ptr) {
    st_instance *inst = st_instance_get(ctx);
    if (!inst || !inst->started || frames > inst->stream.max_frames ||
        !in_scratch(out_frames_ptr, 4) || !in_scratch(out_flags_ptr, 4))
        return ST_HOT_ERR_INVALID_ARG;
    const float *in = (const float *)ST_MEM(ST_IN_OFFSET);
    if (st_plugin_def.dsp) {
        if (frames) st_instance_process(inst, in, (float *)ST_MEM(ST_OUT_OFFSET), frames);
        put_u32(out_frames_ptr, frames);
        put_u32(out_flags_ptr, st_plugin_def.dsp->flags ? st_plugin_def.dsp->flags(inst->state) : 0);
        return ST_HOT_OK;
    }
    /* frames == 0 is the host's drain poll at the end of the stream: the kernel sees it too. */
    uint32_t taken = st_instance_consume(inst, in, frames);
    int drained = !st_plugin_def.sink->drained || st_plugin_def.sink->drained(inst->state);
    uint32_t extra = st_plugin_def.sink->flags ? st_plugin_def.sink->flags(inst->state) : 0;
    put_u32(out_frames_ptr, taken);
    put_u32(out_flags_ptr, (drained ? ST_HOT_FLAG_DRAINED : 0) | extra);
    return taken == 0 && frames > 0 ? ST_HOT_ERR_WOULD_BLOCK : ST_HOT_OK;
}

ST_EXPORT(st_hot_reset) int32_t st_hot_reset(uint32_t ctx, uint32_t flags) {
    (void)flags; /* none defined in v1 */
    st_instance *inst = st_instance_get(ctx);
    if (!inst) return ST_HOT_ERR_INVALID_ARG;
    st_instance_reset(inst);
    return ST_HOT_OK;
}

ST_EXPORT(st_hot_drop) void st_hot_drop(uint32_t ctx) {
    st_instance *inst = st_instance_get(ctx);
    if (inst) st_instance_destroy(inst);
}

ST_EXPORT(st_hot_param_names) uint32_t st_hot_param_names(void) {
    uint32_t count = st_plugin_param_count();
    if (count == 0) return 0;
    char *names = (char *)ST_MEM(ST_NAMES_OFFSET);
    uint32_t pos = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *name = st_plugin_params()[i].name;
        uint32_t n = 0;
        while (name[n]) n++;
        if (n == 0 || pos + n + 2 > ST_NAMES_BYTES) return 0; /* cannot describe: no params */
        memcpy(names + pos, name, n + 1);
        pos += n + 1;
    }
    names[pos] = 0;
    return ST_NAMES_OFFSET;
}

ST_EXPORT(st_hot_set_param) int32_t st_hot_set_param(uint32_t ctx, uint32_t id, float value) {
    st_instance *inst = st_instance_get(ctx);
    if (!inst) return ST_HOT_ERR_INVALID_ARG;
    return st_instance_set_param(inst, id, value);
}

/* --- state carry (optional ABI v1 extension, docs/hot-path-abi.md) ------------------------
 * The image is the kernel's state struct. The host copies it from the old module's memory into
 * the new one's staging area (a free state slot) and imports it there. Native builds have no
 * linear memory for the host to copy between, so they export no image (size 0). */

ST_EXPORT(st_hot_state_size) uint32_t st_hot_state_size(uint32_t ctx) {
#if defined(__wasm__)
    st_instance *inst = st_instance_get(ctx);
    return inst && inst->started ? st_plugin_def.state_size : 0;
#else
    (void)ctx;
    return 0;
#endif
}

ST_EXPORT(st_hot_export_state) uint32_t st_hot_export_state(uint32_t ctx) {
    st_instance *inst = st_instance_get(ctx);
    if (!inst || !inst->started) return 0;
    return (uint32_t)((unsigned char *)inst->state - ST_MEM(0));
}

ST_EXPORT(st_hot_state_staging) uint32_t st_hot_state_staging(uint32_t ctx, uint32_t len) {
    st_instance *inst = st_instance_get(ctx);
    void *spare = st_instance_spare_state();
    if (!inst || !spare || len > st_plugin_def.state_size) return 0;
    return (uint32_t)((unsigned char *)spare - ST_MEM(0));
}

ST_EXPORT(st_hot_import_state) int32_t st_hot_import_state(uint32_t ctx, uint32_t ptr, uint32_t len) {
    st_instance *inst = st_instance_get(ctx);
    if (!inst || len > st_plugin_def.state_size) return ST_HOT_ERR_INVALID_ARG;
    return st_instance_import_state(inst, ST_MEM(ptr), len);
}
