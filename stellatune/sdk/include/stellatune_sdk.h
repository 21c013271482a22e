/*
 * stellatune_sdk.h: what a C plugin author writes against (docs/c-sdk.md).
 *
 * A plugin is one C file: a state struct, a parameter table and a few callbacks, bundled in an
 * st_dsp_kernel or st_sink_kernel and registered with ST_DSP_PLUGIN / ST_SINK_PLUGIN. The SDK's
 * glue (stellatune/sdk/glue/) turns that into the hot-path exports (core module and native .so)
 * and into the component-model exports; stellatune/sdk/cbuild.py compiles all three.
 *
 * Build targets, told apart by predefined macros:
 *   __wasm__            wasm32, freestanding (core module or component); memory base B = 0
 *   otherwise           native baseline; B = st_native_memory, a static array
 */
#ifndef STELLATUNE_SDK_H
#define STELLATUNE_SDK_H

#include "stellatune_hotpath.h"

/* --- compile-time limits ---------------------------------------------------------------- */

#define ST_MAX_FRAMES 4096u   /* largest block; the spec's max-frames */
#define ST_MAX_CHANNELS 8u    /* 7.1 */
#define ST_MAX_INSTANCES 4u   /* live contexts per module instance (and processors per component) */
#define ST_MAX_PARAMS 16u
#define ST_MAX_SAMPLE_RATE 768000u

/* --- the arena: a fixed memory map, identical in the core module and the native .so ------
 *
 * The component (a different wasm binary) reports these offsets in describe-hot-path, so they
 * must not depend on how the toolchain lays out data: the arena sits at a fixed address and the
 * linker puts data and stack above ST_ARENA_END (-Wl,--global-base). Nothing below
 * ST_ARENA_BASE is used, so a stray null pointer never aliases audio.
 */
#define ST_ARENA_BASE 1024u
#define ST_NAMES_OFFSET ST_ARENA_BASE /* parameter-name list for st_hot_param_names */
#define ST_NAMES_BYTES 960u
#define ST_SCRATCH_OFFSET (ST_NAMES_OFFSET + ST_NAMES_BYTES) /* host scratch, 64 bytes */
#define ST_IN_OFFSET (ST_SCRATCH_OFFSET + ST_HOT_SCRATCH_SIZE)
#define ST_REGION_BYTES (ST_MAX_FRAMES * ST_MAX_CHANNELS * 4u)
#define ST_OUT_OFFSET (ST_IN_OFFSET + ST_REGION_BYTES)
#define ST_ARENA_END (ST_OUT_OFFSET + ST_REGION_BYTES)

_Static_assert(ST_SCRATCH_OFFSET == 1984u, "arena map changed: update abi.py and the docs");
_Static_assert(ST_IN_OFFSET == 2048u, "arena map changed: update abi.py and the docs");
_Static_assert(ST_OUT_OFFSET == 133120u, "arena map changed: update abi.py and the docs");
_Static_assert(ST_ARENA_END == 264192u, "arena map changed: update cbuild.py's --global-base");
_Static_assert(ST_MAX_PARAMS * 32u + 1u <= ST_NAMES_BYTES, "names of <= 31 chars always fit");

/* ST_EXPORT marks a hot-path export (core module and native .so). The component build
 * (ST_BUILD_COMPONENT) exports only what its world declares, so there it marks nothing. */
#if defined(ST_BUILD_COMPONENT)
#define ST_EXPORT(name)
#define ST_MEM(off) ((unsigned char *)(uintptr_t)(off))
#elif defined(__wasm__)
#define ST_EXPORT(name) __attribute__((export_name(#name), visibility("default")))
/* Linear-memory offset -> pointer. B is 0 in wasm. */
#define ST_MEM(off) ((unsigned char *)(uintptr_t)(off))
#else
#define ST_EXPORT(name) __attribute__((visibility("default")))
extern unsigned char st_native_memory[ST_ARENA_END];
#define ST_MEM(off) (st_native_memory + (off))
#endif

/* --- what a plugin provides ------------------------------------------------------------- */

/* One tunable. Values outside [min, max] (or NaN) are refused, so callbacks never see them. */
typedef struct st_param {
    const char *name; /* the config JSON key; <= 31 chars, [A-Za-z0-9_] */
    float min, max, def;
    uint32_t flags; /* ST_PARAM_*; 0 (the default) for a parameter set between blocks */
} st_param;

/* A change of this parameter needs a new instance: plan-config answers `recreate` (the host
 * builds a new instance with the new config and carries the state over, see import_state). */
#define ST_PARAM_RECREATE 1u

/* What the stream looks like, fixed from init to drop. */
typedef struct st_stream {
    uint32_t sample_rate;
    uint32_t channels;   /* 1..ST_MAX_CHANNELS */
    uint32_t max_frames; /* 1..ST_MAX_FRAMES */
} st_stream;

/*
 * A DSP kernel on interleaved f32. `in` and `out` may be the same buffer (the component path
 * processes in place), so read a frame before writing it. process must produce exactly
 * `frames` frames; it must not allocate, block or use the 64 host scratch bytes.
 */
typedef struct st_dsp_kernel {
    const st_param *params; /* table of param_count entries; an id is an index */
    uint32_t param_count;
    /* Prepare `state` (zeroed by the SDK) for `stream`. params[] holds every current value.
     * Return ST_HOT_OK or ST_HOT_ERR_UNSUPPORTED. */
    int32_t (*init)(void *state, const st_stream *stream, const float *params);
    /* A value already range-checked by the SDK; recompute coefficients here, not per sample. */
    void (*set_param)(void *state, const st_stream *stream, uint32_t id, float value);
    /* Forget the signal history (filters, delay lines, envelopes); keep parameters. */
    void (*reset)(void *state);
    void (*process)(void *state, const float *in, float *out, uint32_t frames);
    /* Optional: extra ST_HOT_FLAG_* (EOF, NEED_RESET, SOFT_ERROR) after each process call. */
    uint32_t (*flags)(void *state);
    /* Optional state carry (a recreate): `old` is the state image (`len` bytes, the state
     * struct) of the instance being replaced, on the same stream; `state` was initialised with
     * the new parameters. NULL: the SDK copies min(len, state size) bytes and then applies
     * every current parameter again (set_param), so the new config wins. Return ST_HOT_OK. */
    int32_t (*import_state)(void *state, const st_stream *stream, const void *old, uint32_t len);
} st_dsp_kernel;

/* A sink kernel: consume up to `frames` interleaved frames, return how many it took. */
typedef struct st_sink_kernel {
    const st_param *params;
    uint32_t param_count;
    int32_t (*init)(void *state, const st_stream *stream, const float *params);
    void (*set_param)(void *state, const st_stream *stream, uint32_t id, float value);
    void (*reset)(void *state);
    uint32_t (*consume)(void *state, const float *in, uint32_t frames);
    /* Optional (NULL = always drained): nonzero once everything consumed has been played.
     * The host polls it at the end of the stream with zero-frame process calls. */
    int32_t (*drained)(void *state);
    uint32_t (*flags)(void *state); /* optional, as for a DSP */
    int32_t (*import_state)(void *state, const st_stream *stream, const void *old, uint32_t len);
} st_sink_kernel;

/* The registration record the glue reads; made by the macros below. */
typedef struct st_plugin {
    uint32_t role; /* ST_HOT_ROLE_* */
    const st_dsp_kernel *dsp;
    const st_sink_kernel *sink;
    unsigned char *states; /* ST_MAX_INSTANCES states of state_size bytes */
    uint32_t state_size;
} st_plugin;

extern const st_plugin st_plugin_def;

/* Register the plugin: one of these, once, in the plugin's C file. */
#define ST_DSP_PLUGIN(kernel, state_type)                                                   \
    static state_type st__states[ST_MAX_INSTANCES];                                         \
    const st_plugin st_plugin_def = {ST_HOT_ROLE_DSP_TRANSFORM, &(kernel), 0,               \
                                     (unsigned char *)st__states, sizeof(state_type)}
#define ST_SINK_PLUGIN(kernel, state_type)                                                  \
    static state_type st__states[ST_MAX_INSTANCES];                                         \
    const st_plugin st_plugin_def = {ST_HOT_ROLE_OUTPUT_SINK, 0, &(kernel),                 \
                                     (unsigned char *)st__states, sizeof(state_type)}

/* The state of live context `ctx` (a hot-path ctx or a component resource rep), or NULL: for a
 * plugin's own extra exports, e.g. a counter a test reads. */
void *st_context_state(uint32_t ctx);

/* --- helpers (stellatune/sdk/glue/st_runtime.c) ------------------------------------------
 *
 * Our own math, not libm: the wasm build is freestanding, and one implementation of plain IEEE
 * double arithmetic (no -ffast-math, no FMA on either target) gives the wasm and native builds
 * bit-identical coefficients.
 */
double st_exp(double x);  /* relative error < 1e-15 */
double st_log(double x);  /* x > 0; relative error < 1e-15 */
double st_sin(double x);  /* |x| <= 2*pi is plenty for audio */
double st_cos(double x);
double st_sqrt(double x); /* the wasm/SSE2 sqrt instruction: correctly rounded */
float st_db_to_gain(float db);  /* 10^(db/20), correctly rounded to float in practice */
float st_fast_log2f(float x);   /* x > 0; abs error ~1e-6 (float32 rounding); per-sample use */
float st_fast_exp2f(float x);   /* relative error <= 2e-7; per-sample use */

#define ST_PI 3.14159265358979323846

/* Tiny values to zero: filter and delay states decay into subnormals, which cost ~50x per
 * operation on x86 unless FTZ/DAZ is set. |x| < 1e-30 becomes +0; NaN and everything else pass.
 * Integer masking, not a float compare: Cranelift turns `cond ? 0.0f : x` into a branch, which
 * mispredicts on audio (measured 5x slower in a delay loop); an and-mask cannot. */
static inline float st_flush_denormal(float x) {
    union {
        float f;
        uint32_t u;
    } b = {x};
    uint32_t keep = (b.u & 0x7fffffffu) >= 0x0da24260u; /* 0x0da24260 is 1e-30f */
    b.u &= 0u - keep;
    return b.f;
}

/* cond ? a : b without a branch, for data-dependent choices in per-sample loops (see above). */
static inline float st_selectf(int cond, float a, float b) {
    union {
        float f;
        uint32_t u;
    } x = {a}, y = {b};
    uint32_t mask = 0u - (uint32_t)(cond != 0);
    x.u = (x.u & mask) | (y.u & ~mask);
    return x.f;
}

static inline float st_clampf(float x, float lo, float hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* --- four lanes at a time ----------------------------------------------------------------
 *
 * clang's vector extensions: simd128 in the wasm builds, SSE2 natively, from the same C. Lane-wise
 * add, sub, mul, div, compares, int<->float conversions of in-range values and bit operations are
 * exact IEEE operations on both, so vector code stays bit-identical between the builds (and to
 * the same operations done one lane at a time). Vector ops also sidestep two costs of the wasm
 * build: a loop handles four samples per epoch check, and a vector select is a bit operation, never
 * a branch. Avoid the vector min/max of either ISA (their NaN and -0 rules differ): use selects.
 */
typedef float st_f32x4 __attribute__((vector_size(16)));
typedef int32_t st_i32x4 __attribute__((vector_size(16)));
/* For loads and stores at any float-aligned address (interleaved audio is only 4-byte aligned). */
typedef float st_f32x4_unaligned __attribute__((vector_size(16), aligned(4), may_alias));

static inline st_f32x4 st_load4(const float *p) {
    return *(const st_f32x4_unaligned *)p;
}
static inline void st_store4(float *p, st_f32x4 v) {
    *(st_f32x4_unaligned *)p = v;
}
static inline st_f32x4 st_splat4(float x) {
    return (st_f32x4){x, x, x, x};
}
/* Lane-wise mask ? a : b; `mask` lanes are all ones or all zeros (a vector compare's result). */
static inline st_f32x4 st_select4(st_i32x4 mask, st_f32x4 a, st_f32x4 b) {
    return (st_f32x4)(((st_i32x4)a & mask) | ((st_i32x4)b & ~mask));
}
/* st_flush_denormal on every lane: a lane with |x| < 1e-30 becomes +0 (NaN compares false, so
 * it passes). A float compare here, not the scalar version's integer one: clang would turn that
 * into an unsigned vector compare, which x86 lacks (several instructions on both targets). */
static inline st_f32x4 st_flush_denormal4(st_f32x4 x) {
    st_f32x4 magnitude = (st_f32x4)((st_i32x4)x & 0x7fffffff);
    return (st_f32x4)((st_i32x4)x & ~(magnitude < 1e-30f));
}

/* st_fast_log2f and st_fast_exp2f on every lane, with the same results lane for lane (the scalar
 * versions are these on one lane). */
static inline st_f32x4 st_fast_log2f4(st_f32x4 x) {
    st_i32x4 bits = (st_i32x4)x;
    st_i32x4 e = ((bits >> 23) & 0xff) - 127;
    st_f32x4 m = (st_f32x4)((bits & 0x007fffff) | 0x3f800000); /* mantissa in [1, 2) */
    st_i32x4 big = m > 1.41421356f;   /* fold m into [sqrt(1/2), sqrt(2)] */
    m = st_select4(big, m * 0.5f, m);
    e -= big;                          /* true lanes are -1 */
    st_f32x4 s = (m - 1.0f) / (m + 1.0f), s2 = s * s, s4 = s2 * s2;
    /* s2/3 + s4/5 + s6/7 + s8/9 (atanh series), in pairs (Estrin) rather than nested (Horner):
     * a shorter chain of dependent operations, so more of a loop's iterations overlap. */
    st_f32x4 p = s2 * ((1.0f / 3 + s2 * (1.0f / 5)) + s4 * (1.0f / 7 + s2 * (1.0f / 9)));
    st_f32x4 r = __builtin_convertvector(e, st_f32x4) + 2.88539008f * s * (1.0f + p); /* 2/ln2 */
    return st_select4(x > 1e-30f, r, st_splat4(-99.657842846f)); /* log2(1e-30): "silence" */
}

static inline st_f32x4 st_fast_exp2f4(st_f32x4 x) {
    x = st_select4(x < -126.0f, st_splat4(-126.0f), st_select4(x > 126.0f, st_splat4(126.0f), x));
    st_i32x4 i = __builtin_convertvector(x, st_i32x4);       /* truncates */
    i += __builtin_convertvector(i, st_f32x4) > x;            /* floor: -1 where truncation rounded up */
    st_f32x4 f = x - __builtin_convertvector(i, st_f32x4); /* [0, 1) */
    /* 2^f: a degree-5 fit of the relative error on [0, 1) (max 8e-8; 2e-7 with float32
     * rounding), exactly 1 at f = 0 so whole powers of two come out exact. */
    st_f32x4 f2 = f * f;
    st_f32x4 p = (1.0f + f * 6.931512952e-01f)
                 + f2 * ((2.401644439e-01f + f * 5.579993129e-02f)
                         + f2 * (9.017005563e-03f + f * 1.867141691e-03f)); /* Estrin, as above */
    return p * (st_f32x4)((i + 127) << 23);
}

/*
 * Allocation-free JSON reader for flat config objects like {"gain_db": -6, "mix": 0.5}.
 * st_json_number looks up a top-level key: 1 = found a number (stored in *out), 0 = key absent,
 * -1 = malformed JSON or the value is not a number.
 */
int st_json_number(const char *json, uint32_t len, const char *key, double *out);
/* Every top-level key must be one of the `count` params: the position (0-based, in document
 * order) of the first key that is not, `count` when all are known, or -1 on malformed JSON. */
int st_json_check_keys(const char *json, uint32_t len, const st_param *params, uint32_t count);

/* memcpy/memset for the freestanding build (clang may emit calls to them). */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);

#endif /* STELLATUNE_SDK_H */
