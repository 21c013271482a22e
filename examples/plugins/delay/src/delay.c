/* delay: feedback delay with a dry/wet mix.
 *
 *   d = line[t - D];  out = (1 - mix) * x + mix * d;  line[t] = x + feedback * d
 *
 * The delay line is static memory sized for the SDK maximum (a ring of DELAY_MAX_FRAMES frames of
 * up to ST_MAX_CHANNELS channels, per context): the hot path never allocates. At sample rates
 * above 96 kHz the longest delay shrinks accordingly. The ring holds frames interleaved like the
 * audio, so a run of frames is one flat run of samples whatever the channel count.
 *
 * `max_delay_ms` sizes the ring (up to that static maximum); changing it needs a new instance
 * (ST_PARAM_RECREATE), and the delay line is carried into it (delay_import_state), so an echo
 * tail goes on across the swap. */
#include "stellatune_sdk.h"

#define DELAY_MAX_FRAMES 96000u /* 1 s at 96 kHz */

enum { P_TIME, P_FEEDBACK, P_MIX, P_MAX, P_COUNT };

static const st_param PARAMS[P_COUNT] = {
    [P_TIME] = {"time_ms", 1.0f, 1000.0f, 250.0f, 0},
    [P_FEEDBACK] = {"feedback", 0.0f, 0.95f, 0.35f, 0},
    [P_MIX] = {"mix", 0.0f, 1.0f, 0.3f, 0},
    [P_MAX] = {"max_delay_ms", 1.0f, 1000.0f, 1000.0f, ST_PARAM_RECREATE},
};

typedef struct delay_state {
    uint32_t channels;
    uint32_t sample_rate;
    uint32_t ring;         /* ring length in frames, from max_delay_ms: 1..DELAY_MAX_FRAMES */
    float time_ms;
    uint32_t delay_frames; /* D, 1..ring */
    uint32_t write;        /* ring position of the next frame */
    float feedback, wet, dry;
    float line[DELAY_MAX_FRAMES * ST_MAX_CHANNELS]; /* frame f at line[f * channels] */
} delay_state;

static uint32_t ms_to_frames(const delay_state *s, float ms, uint32_t limit) {
    double frames = (double)ms * s->sample_rate / 1000.0 + 0.5;
    return frames < 1.0 ? 1u : frames > limit ? limit : (uint32_t)frames;
}

static void delay_set_param(void *state, const st_stream *stream, uint32_t id, float value) {
    (void)stream;
    delay_state *s = state;
    switch (id) {
    case P_TIME:
        s->time_ms = value;
        s->delay_frames = ms_to_frames(s, value, s->ring);
        break;
    case P_MAX: {
        /* A new ring length: the line starts over (hosts recreate instead, carrying it). */
        uint32_t ring = ms_to_frames(s, value, DELAY_MAX_FRAMES);
        if (ring != s->ring) {
            s->ring = ring;
            memset(s->line, 0, sizeof(float) * ring * s->channels);
            s->write = 0;
        }
        s->delay_frames = ms_to_frames(s, s->time_ms, s->ring);
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
    s->ring = ms_to_frames(s, params[P_MAX], DELAY_MAX_FRAMES);
    for (uint32_t i = 0; i < P_COUNT; i++) delay_set_param(s, stream, i, params[i]);
    return ST_HOT_OK;
}

/* The carried state of a recreate: the newest min(old ring, new ring) frames of the old line,
 * laid out so that they end just behind the new write position (0). */
static int32_t delay_import_state(void *state, const st_stream *stream, const void *old_image,
                                  uint32_t len) {
    (void)stream;
    delay_state *s = state;
    const delay_state *o = old_image;
    if (len != sizeof(delay_state) || o->channels != s->channels || o->ring == 0 ||
        o->ring > DELAY_MAX_FRAMES || o->write >= o->ring)
        return ST_HOT_ERR_INVALID_ARG;
    const uint32_t C = s->channels;
    uint32_t keep = o->ring < s->ring ? o->ring : s->ring;
    memset(s->line, 0, sizeof(float) * s->ring * C);
    for (uint32_t k = 0; k < keep; k++) {
        uint32_t from = (o->write + o->ring - keep + k) % o->ring;
        memcpy(s->line + (size_t)(s->ring - keep + k) * C, o->line + (size_t)from * C,
               sizeof(float) * C);
    }
    s->write = 0;
    return ST_HOT_OK;
}

static void delay_reset(void *state) {
    delay_state *s = state;
    memset(s->line, 0, sizeof(float) * s->ring * s->channels);
    s->write = 0;
}

/* In segments where neither the write head nor the tap D frames behind it wraps, and no longer
 * than D (so a segment never reads what it writes): one flat loop over the segment's samples,
 * four at a time, with no per-sample branches (which matters more in wasm than natively). */
static void delay_process(void *state, const float *in, float *out, uint32_t frames) {
    delay_state *s = state;
    const uint32_t C = s->channels, D = s->delay_frames, R = s->ring;
    const st_f32x4 fb = st_splat4(s->feedback), wet = st_splat4(s->wet), dry = st_splat4(s->dry);
    uint32_t w = s->write;
    for (uint32_t done = 0; done < frames;) {
        uint32_t r = w >= D ? w - D : w + R - D;
        uint32_t n = frames - done;
        if (n > R - w) n = R - w;
        if (n > R - r) n = R - r;
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
        if (w == R) w = 0;
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
    .import_state = delay_import_state,
};

ST_DSP_PLUGIN(DELAY, delay_state);
