/* delay: feedback delay with a dry/wet mix.
 *
 *   d = line[t - D];  out = (1 - mix) * x + mix * d;  line[t] = x + feedback * d
 *
 * The delay line is static memory sized for the SDK maximum (a ring of DELAY_MAX_FRAMES frames of
 * up to ST_MAX_CHANNELS channels, per context): the hot path never allocates. At sample rates
 * above 96 kHz the longest delay shrinks accordingly. The ring holds frames interleaved like the
 * audio, so a run of frames is one flat run of samples whatever the channel count. */
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
    float line[DELAY_MAX_FRAMES * ST_MAX_CHANNELS]; /* frame f at line[f * channels] */
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
    memset(s->line, 0, sizeof(float) * DELAY_MAX_FRAMES * s->channels);
    s->write = 0;
}

/* In segments where neither the write head nor the tap D frames behind it wraps, and no longer
 * than D (so a segment never reads what it writes): one flat loop over the segment's samples,
 * four at a time, with no per-sample branches (which matters more in wasm than natively). */
static void delay_process(void *state, const float *in, float *out, uint32_t frames) {
    delay_state *s = state;
    const uint32_t C = s->channels, D = s->delay_frames;
    const st_f32x4 fb = st_splat4(s->feedback), wet = st_splat4(s->wet), dry = st_splat4(s->dry);
    uint32_t w = s->write;
    for (uint32_t done = 0; done < frames;) {
        uint32_t r = w >= D ? w - D : w + DELAY_MAX_FRAMES - D;
        uint32_t n = frames - done;
        if (n > DELAY_MAX_FRAMES - w) n = DELAY_MAX_FRAMES - w;
        if (n > DELAY_MAX_FRAMES - r) n = DELAY_MAX_FRAMES - r;
        if (n > D) n = D;
        const float *__restrict tap = s->line + (size_t)r * C;
        float *__restrict head = s->line + (size_t)w * C;
        const float *x = in + (size_t)done * C;
        float *y = out + (size_t)done * C;
        const uint32_t samples = n * C;
        uint32_t k = 0;
        /* 64 samples per loop iteration: the watchdog's epoch check at every back-edge costs
         * about as much as a few vector operations. */
#pragma clang loop unroll_count(16)
        for (; k + 4 <= samples; k += 4) {
            st_f32x4 xv = st_load4(x + k), d = st_load4(tap + k);
            st_store4(y + k, dry * xv + wet * d);
            st_store4(head + k, st_flush_denormal4(xv + fb * d)); /* the tail decays to zero */
        }
        for (; k < samples; k++) {
            float xv = x[k], d = tap[k];
            y[k] = s->dry * xv + s->wet * d;
            head[k] = st_flush_denormal(xv + s->feedback * d);
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
