/*
 * cabi.c: canonical-ABI helpers shared by dsp_world.c and output_sink_world.c.
 */
#include "cabi.h"

#ifndef ST_PLUGIN_NAME
#error "cbuild.py passes -DST_PLUGIN_NAME=\"<name>\": the core module is wasm/<name>.hotpath.wasm"
#endif

static uint8_t ret_area[96] __attribute__((aligned(8)));
static unsigned char heap[ST_CABI_HEAP_BYTES] __attribute__((aligned(16)));
static uint32_t heap_top, heap_last; /* heap_last: start of the newest block, for in-place grow */

uint8_t *st_cabi_ret(void) {
    memset(ret_area, 0, sizeof ret_area);
    return ret_area;
}

void st_cabi_heap_reset(void) {
    heap_top = heap_last = 0;
}

char *st_cabi_alloc(uint32_t size) {
    uint32_t start = (heap_top + 15u) & ~15u; /* 16: float access and SIMD stay aligned */
    if (start > ST_CABI_HEAP_BYTES || size > ST_CABI_HEAP_BYTES - start) __builtin_trap();
    heap_last = start;
    heap_top = start + size;
    return (char *)heap + start;
}

/* The host allocates arguments through this before calling an export. */
ST_EXPORT_AS("cabi_realloc")
void *cabi_realloc(void *old, uint32_t old_size, uint32_t align, uint32_t new_size) {
    (void)align; /* every block is 16-aligned, and no WIT type needs more */
    if (old && (unsigned char *)old == heap + heap_last) { /* grow the newest block in place */
        if (new_size > ST_CABI_HEAP_BYTES - heap_last) __builtin_trap();
        heap_top = heap_last + new_size;
        return old;
    }
    char *p = st_cabi_alloc(new_size);
    if (old) memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

void st_cabi_put_u32(uint8_t *p, uint32_t off, uint32_t v) {
    memcpy(p + off, &v, 4);
}

void st_cabi_put_str(uint8_t *p, uint32_t off, const char *s, uint32_t len) {
    st_cabi_put_u32(p, off, (uint32_t)(uintptr_t)s);
    st_cabi_put_u32(p, off + 4, len);
}

uint32_t st_cabi_strlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

uint8_t *st_cabi_ok(void) {
    return st_cabi_ret();
}

uint8_t *st_cabi_err(uint8_t pe_case, const char *msg) {
    uint8_t *r = st_cabi_ret();
    r[0] = 1;
    r[4] = pe_case;
    st_cabi_put_str(r, 8, msg, st_cabi_strlen(msg));
    return r;
}

static const char REL_PATH[] = "wasm/" ST_PLUGIN_NAME ".hotpath.wasm";
static const char MEMORY[] = ST_HOT_EXPORT_MEMORY;
static const char INIT[] = ST_HOT_EXPORT_INIT;
static const char PROCESS[] = ST_HOT_EXPORT_PROCESS;
static const char RESET[] = ST_HOT_EXPORT_RESET;
static const char DROP[] = ST_HOT_EXPORT_DROP;

/*
 * result<option<core-module-spec>, plugin-error>: option tag at 4, the spec at 8 (84 bytes):
 * role 0; wasm-rel-path 4/8; abi-version 12; memory 16/20; init 24/28; process 32/36;
 * reset option 40 (string 44/48); drop option 52 (56/60); buffer-layout at 64: in-offset 64,
 * out-offset option 68 (value 72), max-frames 76, channels u16 80, sample-format 82, interleaved 83.
 */
uint8_t *st_cabi_describe_hot_path(uint32_t sample_rate, uint32_t channels, uint8_t wit_role) {
    uint8_t *r = st_cabi_ok();
    if (channels == 0 || channels > ST_MAX_CHANNELS || sample_rate == 0 ||
        sample_rate > ST_MAX_SAMPLE_RATE)
        return r; /* ok(none): the component path handles it */
    r[4] = 1;
    uint8_t *s = r + 8;
    s[0] = wit_role;
    st_cabi_put_str(s, 4, REL_PATH, sizeof REL_PATH - 1);
    st_cabi_put_u32(s, 12, ST_HOT_ABI_VERSION);
    st_cabi_put_str(s, 16, MEMORY, sizeof MEMORY - 1);
    st_cabi_put_str(s, 24, INIT, sizeof INIT - 1);
    st_cabi_put_str(s, 32, PROCESS, sizeof PROCESS - 1);
    s[40] = 1;
    st_cabi_put_str(s, 44, RESET, sizeof RESET - 1);
    s[52] = 1;
    st_cabi_put_str(s, 56, DROP, sizeof DROP - 1);
    st_cabi_put_u32(s, 64, ST_IN_OFFSET);
    if (wit_role == ST_WIT_ROLE_DSP_TRANSFORM) {
        s[68] = 1;
        st_cabi_put_u32(s, 72, ST_OUT_OFFSET);
    }
    st_cabi_put_u32(s, 76, ST_MAX_FRAMES);
    uint16_t ch = (uint16_t)channels;
    memcpy(s + 80, &ch, 2);
    s[82] = ST_WIT_FORMAT_F32LE;
    s[83] = 1;
    return r;
}

#define WHY_BYTES 160u

/* result<config-update-plan, plugin-error>: mode at 4, reason option at 8 (string 12/16).
 * An unusable config is a `reject` with the reason; the old config stays. */
uint8_t *st_cabi_plan_config(st_instance *inst, const char *json, uint32_t len) {
    float values[ST_MAX_PARAMS];
    char *why = st_cabi_alloc(WHY_BYTES);
    int bad = st_instance_check_json(inst, json, len, values, why, WHY_BYTES);
    uint8_t *r = st_cabi_ok();
    r[4] = bad ? ST_WIT_PLAN_REJECT : ST_WIT_PLAN_HOT_APPLY;
    if (bad) {
        r[8] = 1;
        st_cabi_put_str(r, 12, why, st_cabi_strlen(why));
        return r;
    }
    /* A changed parameter marked ST_PARAM_RECREATE needs a new instance (state carried). */
    for (uint32_t i = 0; i < st_plugin_param_count(); i++) {
        const st_param *p = &st_plugin_params()[i];
        if ((p->flags & ST_PARAM_RECREATE) && values[i] != inst->params[i]) {
            uint32_t n = st_put_str(why, 0, WHY_BYTES, p->name);
            st_put_str(why, n, WHY_BYTES, " is fixed at creation");
            r[4] = ST_WIT_PLAN_RECREATE;
            r[8] = 1;
            st_cabi_put_str(r, 12, why, st_cabi_strlen(why));
            break;
        }
    }
    return r;
}

uint8_t *st_cabi_apply_config(st_instance *inst, const char *json, uint32_t len) {
    char *why = st_cabi_alloc(WHY_BYTES);
    if (st_instance_apply_json(inst, json, len, why, WHY_BYTES))
        return st_cabi_err(ST_PE_INVALID_ARG, why);
    return st_cabi_ok();
}

/* result<option<string>, plugin-error>: the current parameters as config JSON. */
uint8_t *st_cabi_export_config(st_instance *inst) {
    uint32_t cap = ST_MAX_PARAMS * 48u + 8u;
    char *buf = st_cabi_alloc(cap);
    uint32_t n = st_instance_export_json(inst, buf, cap);
    uint8_t *r = st_cabi_ok();
    r[4] = 1;
    st_cabi_put_str(r, 8, buf, n);
    return r;
}
