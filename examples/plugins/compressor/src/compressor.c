/* compressor: feed-forward peak compressor, channels linked.
 *
 * Per frame: the detector is the largest |sample| over the channels; a one-pole envelope follows
 * it with the attack coefficient when rising and the release coefficient when falling. Above
 * the threshold the gain is (env / threshold)^(1/ratio - 1) (a hard knee), times makeup. The
 * power runs in the log2 domain through the SDK's fast log2/exp2 (error ~1e-6), so the hot loop
 * has no libm calls. */
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

static void comp_process(void *state, const float *in, float *out, uint32_t frames) {
    comp_state *s = state;
    const uint32_t C = s->channels;
    float env = s->env;
    for (uint32_t i = 0; i < frames; i++) {
        const float *x = in + (size_t)i * C;
        float level = 0.0f;
        for (uint32_t ch = 0; ch < C; ch++) {
            float a = __builtin_fabsf(x[ch]);
            level = st_selectf(a > level, a, level);
        }
        /* Branch-free: on noise a branch here mispredicts about half the time. */
        float coef = st_selectf(level > env, s->attack, s->release);
        env = st_flush_denormal(level + coef * (env - level));
        float g = s->makeup;
        if (env > s->threshold)
            g *= st_fast_exp2f((st_fast_log2f(env) - s->threshold_log2) * s->slope);
        float *y = out + (size_t)i * C;
        for (uint32_t ch = 0; ch < C; ch++) y[ch] = x[ch] * g;
    }
    s->env = env;
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
