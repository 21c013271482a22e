/* delay: feedback delay with a dry/wet mix.
 *
 *   d = line[t - D];  out = (1 - mix) * x + mix * d;  line[t] = x + feedback * d
 *
 * The delay line is static memory sized for the SDK maximum (a ring of DELAY_MAX_FRAMES per
 * channel, ST_MAX_CHANNELS channels, per context): the hot path never allocates. At sample rates above
 * 96 kHz the longest delay shrinks accordingly. */
#include "stellatune_sdk.h"

#define DELAY_MAX_FRAMES 96000u /* 1 s at 96 kHz */

enum { P_TIME, P_FEEDBACK, P_MIX, P_COUNT };

static const st_param PARAMS[P_COUNT] = {
    [P_TIME] = {"time_ms", 1.0f, 1000.0f, 250.0f},
    [P_FEEDBACK] = {"feedback", 0.0f, 0.95f, 0.35f},
    [P_MIX] = {"mix", 0.0f, 1.0f, 0.3f},
};

typedef struct delay_state {
    uint32_t channels;
    uint32_t sample_rate;
    uint32_t delay_frames; /* D, 1..DELAY_MAX_FRAMES */
    uint32_t write;        /* ring position of the next frame */
    float feedback, wet, dry;
    float line[ST_MAX_CHANNELS][DELAY_MAX_FRAMES]; /* one ring per channel */
} delay_state;

static void delay_set_param(void *state, const st_stream *stream, uint32_t id, float value) {
    (void)stream;
    delay_state *s = state;
    switch (id) {
    case P_TIME: {
        double frames = (double)value * s->sample_rate / 1000.0 + 0.5;
        s->delay_frames = frames < 1.0 ? 1u
                          : frames > DELAY_MAX_FRAMES ? DELAY_MAX_FRAMES : (uint32_t)frames;
        break;
    }
    case P_FEEDBACK: s->feedback = value; break;
    default:
        s->wet = value;
        s->dry = 1.0f - value;
        break;
    }
}

static int32_t delay_init(void *state, const st_stream *stream, const float *params) {
    delay_state *s = state;
    s->channels = stream->channels;
    s->sample_rate = stream->sample_rate;
    for (uint32_t i = 0; i < P_COUNT; i++) delay_set_param(s, stream, i, params[i]);
    return ST_HOT_OK;
}

static void delay_reset(void *state) {
    delay_state *s = state;
    for (uint32_t ch = 0; ch < s->channels; ch++) memset(s->line[ch], 0, sizeof s->line[ch]);
    s->write = 0;
}

/* In segments where neither the write head nor the tap D frames behind it wraps, and no longer
 * than D (so a segment never reads what it writes): plain indexed loops with no per-frame
 * branches, which matters more in wasm than natively. */
static void delay_process(void *state, const float *in, float *out, uint32_t frames) {
    delay_state *s = state;
    const uint32_t C = s->channels, D = s->delay_frames;
    const float fb = s->feedback, wet = s->wet, dry = s->dry;
    uint32_t w = s->write;
    for (uint32_t done = 0; done < frames;) {
        uint32_t r = w >= D ? w - D : w + DELAY_MAX_FRAMES - D;
        uint32_t n = frames - done;
        if (n > DELAY_MAX_FRAMES - w) n = DELAY_MAX_FRAMES - w;
        if (n > DELAY_MAX_FRAMES - r) n = DELAY_MAX_FRAMES - r;
        if (n > D) n = D;
        uint32_t ch = 0;
        for (; ch + 1 < C; ch += 2) { /* channel pairs: half the loop back-edges */
            const float *__restrict ta = s->line[ch] + r, *__restrict tb = s->line[ch + 1] + r;
            float *__restrict ha = s->line[ch] + w, *__restrict hb = s->line[ch + 1] + w;
            const float *x = in + (size_t)done * C + ch;
            float *y = out + (size_t)done * C + ch;
            for (uint32_t k = 0; k < n; k++) {
                float xa = x[k * C], xb = x[k * C + 1], da = ta[k], db = tb[k];
                y[k * C] = dry * xa + wet * da;
                y[k * C + 1] = dry * xb + wet * db;
                ha[k] = st_flush_denormal(xa + fb * da); /* the feedback tail decays to zero */
                hb[k] = st_flush_denormal(xb + fb * db);
            }
        }
        if (ch < C) {
            const float *__restrict tap = s->line[ch] + r;
            float *__restrict head = s->line[ch] + w;
            const float *x = in + (size_t)done * C + ch;
            float *y = out + (size_t)done * C + ch;
            for (uint32_t k = 0; k < n; k++) {
                float xv = x[k * C], d = tap[k];
                y[k * C] = dry * xv + wet * d;
                head[k] = st_flush_denormal(xv + fb * d);
            }
        }
        done += n;
        w += n;
        if (w == DELAY_MAX_FRAMES) w = 0;
    }
    s->write = w;
}

static const st_dsp_kernel DELAY = {
    .params = PARAMS,
    .param_count = P_COUNT,
    .init = delay_init,
    .set_param = delay_set_param,
    .reset = delay_reset,
    .process = delay_process,
};

ST_DSP_PLUGIN(DELAY, delay_state);
