/* compressor: feed-forward peak compressor, channels linked.
 *
 * Per frame: the detector is the largest |sample| over the channels; a one-pole envelope follows
 * it with the attack coefficient when rising and the release coefficient when falling. Above
 * the threshold the gain is (env / threshold)^(1/ratio - 1) (a hard knee), times makeup. The
 * power runs in the log2 domain through the SDK's fast log2/exp2 (errors ~1e-6 and ~2e-7), four
 * frames at a time on vector lanes, so the hot loop has no libm calls. */
#include "stellatune_sdk.h"

enum { P_THRESHOLD, P_RATIO, P_ATTACK, P_RELEASE, P_MAKEUP, P_COUNT };

static const st_param PARAMS[P_COUNT] = {
    [P_THRESHOLD] = {"threshold_db", -60.0f, 0.0f, -18.0f},
    [P_RATIO] = {"ratio", 1.0f, 20.0f, 4.0f},
    [P_ATTACK] = {"attack_ms", 0.1f, 500.0f, 10.0f},
    [P_RELEASE] = {"release_ms", 1.0f, 5000.0f, 100.0f},
    [P_MAKEUP] = {"makeup_db", 0.0f, 24.0f, 0.0f},
};

typedef struct comp_state {
    uint32_t channels;
    uint32_t sample_rate;
    float params[P_COUNT];
    float env;
    float attack, release; /* one-pole coefficients exp(-1 / (t * fs)) */
    float threshold;       /* linear */
    float threshold_log2;
    float slope;           /* 1/ratio - 1 (<= 0) */
    float makeup;          /* linear */
} comp_state;

static float time_coefficient(float ms, uint32_t sample_rate) {
    return (float)st_exp(-1000.0 / ((double)ms * sample_rate));
}

static void derive(comp_state *s) {
    s->threshold = st_db_to_gain(s->params[P_THRESHOLD]);
    s->threshold_log2 = (float)(s->params[P_THRESHOLD] * (3.32192809488736234787 / 20.0));
    s->slope = 1.0f / s->params[P_RATIO] - 1.0f;
    s->attack = time_coefficient(s->params[P_ATTACK], s->sample_rate);
    s->release = time_coefficient(s->params[P_RELEASE], s->sample_rate);
    s->makeup = st_db_to_gain(s->params[P_MAKEUP]);
}

static void comp_set_param(void *state, const st_stream *stream, uint32_t id, float value) {
    (void)stream;
    comp_state *s = state;
    s->params[id] = value;
    derive(s);
}

static int32_t comp_init(void *state, const st_stream *stream, const float *params) {
    comp_state *s = state;
    s->channels = stream->channels;
    s->sample_rate = stream->sample_rate;
    for (int i = 0; i < P_COUNT; i++) s->params[i] = params[i];
    derive(s);
    return ST_HOT_OK;
}

static void comp_reset(void *state) {
    ((comp_state *)state)->env = 0.0f;
}

/* A block runs in chunks of up to CHUNK frames, in three passes over a stack buffer: the
 * detector level of every frame; the envelope (the only serial part) and from it the gain; the
 * gain applied to the samples. The costly log2/exp2 run on four lanes, and the serial part is
 * short and branch-free. */
#define CHUNK 256u

/* level[i] = the largest |sample| of frame i (0 when all are 0 or NaN). */
static void detect(const float *x, uint32_t C, uint32_t n, float *level) {
    uint32_t i = 0;
    if (C == 2) { /* four stereo frames per step: split left and right, compare lane-wise */
        const st_i32x4 magnitude = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
#pragma clang loop unroll_count(2)
        for (; i + 4 <= n; i += 4) {
            st_f32x4 a = (st_f32x4)((st_i32x4)st_load4(x + 2 * i) & magnitude);
            st_f32x4 b = (st_f32x4)((st_i32x4)st_load4(x + 2 * i + 4) & magnitude);
            st_f32x4 left = __builtin_shufflevector(a, b, 0, 2, 4, 6);
            st_f32x4 right = __builtin_shufflevector(a, b, 1, 3, 5, 7);
            st_f32x4 l = st_select4(left > 0.0f, left, st_splat4(0.0f));
            st_store4(level + i, st_select4(right > l, right, l));
        }
    }
    for (; i < n; i++) {
        float l = 0.0f;
        for (uint32_t ch = 0; ch < C; ch++) {
            float a = __builtin_fabsf(x[(size_t)i * C + ch]);
            l = st_selectf(a > l, a, l);
        }
        level[i] = l;
    }
}

/* level -> gain, in place. The envelope is a one-pole filter,
 * env = c * env + (1 - c) * level, with c the attack coefficient when the level is above the
 * envelope and the release one otherwise: both candidates are computed and one is selected, so
 * the serial dependency per frame is a multiply, an add and a bit select (vector registers even
 * for one value, because a vector select is bit operations where Cranelift would branch on a
 * float `?:`). The gain of four frames (log2, exp2) does not feed back, so the CPU overlaps it
 * with the next frames' envelope. `level` is padded to a multiple of 4 values (the caller zeroes
 * the padding); returns the envelope after frame n-1. */
static float envelope_and_gain(const comp_state *s, float env, float *level, uint32_t n) {
    const st_f32x4 a = st_splat4(s->attack), ra = st_splat4(1.0f - s->attack);
    const st_f32x4 r = st_splat4(s->release), rr = st_splat4(1.0f - s->release);
    const st_f32x4 threshold = st_splat4(s->threshold), makeup = st_splat4(s->makeup);
    st_f32x4 e = st_splat4(env), e0, e1, e2;
    float last = env;
#define ST_ENVELOPE_STEP(lane, out)                                                          \
    do {                                                                                     \
        st_f32x4 lv = __builtin_shufflevector(l4, l4, lane, lane, lane, lane);                \
        e = st_select4(lv > e, a * e + ra * lv, r * e + rr * lv);                            \
        out = e;                                                                             \
    } while (0)
#pragma clang loop unroll_count(2)
    for (uint32_t i = 0; i < n; i += 4) { /* 8 frames per iteration: an eighth of the epoch checks */
        st_f32x4 l4 = st_load4(level + i);
        ST_ENVELOPE_STEP(0, e0);
        ST_ENVELOPE_STEP(1, e1);
        ST_ENVELOPE_STEP(2, e2);
        ST_ENVELOPE_STEP(3, e);
        st_f32x4 env4 = __builtin_shufflevector(__builtin_shufflevector(e0, e1, 0, 4, 0, 4),
                                                __builtin_shufflevector(e2, e, 0, 4, 0, 4),
                                                0, 1, 4, 5);
        if (i + 4 >= n) last = env4[(n - 1) & 3];
        /* Above the threshold: (env / threshold)^slope, in the log2 domain. */
        st_f32x4 over = st_fast_exp2f4((st_fast_log2f4(env4) - s->threshold_log2) * s->slope);
        st_store4(level + i, makeup * st_select4(env4 > threshold, over, st_splat4(1.0f)));
    }
#undef ST_ENVELOPE_STEP
    return last;
}

static void apply(const float *x, float *y, uint32_t C, uint32_t n, const float *gain) {
    uint32_t i = 0;
    if (C == 2) {
#pragma clang loop unroll_count(2)
        for (; i + 4 <= n; i += 4) {
            st_f32x4 g = st_load4(gain + i);
            st_store4(y + 2 * i, st_load4(x + 2 * i) * __builtin_shufflevector(g, g, 0, 0, 1, 1));
            st_store4(y + 2 * i + 4, st_load4(x + 2 * i + 4) * __builtin_shufflevector(g, g, 2, 2, 3, 3));
        }
    }
    for (; i < n; i++)
        for (uint32_t ch = 0; ch < C; ch++) y[(size_t)i * C + ch] = x[(size_t)i * C + ch] * gain[i];
}

static void comp_process(void *state, const float *in, float *out, uint32_t frames) {
    comp_state *s = state;
    const uint32_t C = s->channels;
    float buffer[CHUNK + 4];
    for (uint32_t done = 0; done < frames; done += CHUNK) {
        const uint32_t n = frames - done < CHUNK ? frames - done : CHUNK;
        const float *x = in + (size_t)done * C;
        detect(x, C, n, buffer);
        st_store4(buffer + n, st_splat4(0.0f)); /* lanes past the end; no loop, no epoch check */
        /* Flushed once per chunk, not per frame: off the serial path. An envelope below 1e-30
         * is far below the threshold (>= 1e-3), so it only ever gives the makeup gain, and what
         * it adds to later frames is below float32 resolution. Within one chunk it cannot reach
         * the subnormals unless the release is under ~4 frames (e.g. 1 ms below 4 kHz). */
        s->env = st_flush_denormal(envelope_and_gain(s, s->env, buffer, n));
        apply(x, out + (size_t)done * C, C, n, buffer);
    }
}

static const st_dsp_kernel COMPRESSOR = {
    .params = PARAMS,
    .param_count = P_COUNT,
    .init = comp_init,
    .set_param = comp_set_param,
    .reset = comp_reset,
    .process = comp_process,
};

ST_DSP_PLUGIN(COMPRESSOR, comp_state);
