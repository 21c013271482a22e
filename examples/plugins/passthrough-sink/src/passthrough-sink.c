/* passthrough-sink: an output sink that plays nothing and remembers what it was given.
 *
 * It counts the frames it consumed and keeps a checksum of them (64-bit FNV-1a over the samples'
 * 32-bit patterns, in order), which a test reads through two extra hot-path exports. The
 * `max_accept` parameter caps the frames taken per call (0 = all), to exercise the host's
 * partial-consumption path: unconsumed frames must be offered again. */
#include "stellatune_sdk.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static const st_param PARAMS[] = {
    {"max_accept", 0.0f, 4096.0f, 0.0f},
};

typedef struct sink_state {
    uint32_t channels;
    uint32_t max_accept;
    uint64_t frames;
    uint64_t checksum;
} sink_state;

static void sink_set_param(void *state, const st_stream *stream, uint32_t id, float value) {
    (void)stream, (void)id;
    ((sink_state *)state)->max_accept = (uint32_t)value;
}

static int32_t sink_init(void *state, const st_stream *stream, const float *params) {
    sink_state *s = state;
    s->channels = stream->channels;
    s->checksum = FNV_OFFSET;
    sink_set_param(s, stream, 0, params[0]);
    return ST_HOT_OK;
}

static void sink_reset(void *state) {
    sink_state *s = state;
    s->frames = 0;
    s->checksum = FNV_OFFSET;
}

static uint32_t sink_consume(void *state, const float *in, uint32_t frames) {
    sink_state *s = state;
    uint32_t n = s->max_accept && s->max_accept < frames ? s->max_accept : frames;
    uint64_t h = s->checksum;
    const uint32_t *words = (const uint32_t *)in;
    for (uint32_t i = 0; i < n * s->channels; i++) h = (h ^ words[i]) * FNV_PRIME;
    s->checksum = h;
    s->frames += n;
    return n;
}

static const st_sink_kernel SINK = {
    .params = PARAMS,
    .param_count = 1,
    .init = sink_init,
    .set_param = sink_set_param,
    .reset = sink_reset,
    .consume = sink_consume,
    .drained = 0, /* nothing is ever buffered */
};

ST_SINK_PLUGIN(SINK, sink_state);

/* Extra hot-path exports for tests (not part of the ABI); 0 for an unknown ctx. */
ST_EXPORT(st_sink_frames_consumed) uint64_t st_sink_frames_consumed(uint32_t ctx) {
    const sink_state *s = st_context_state(ctx);
    return s ? s->frames : 0;
}

ST_EXPORT(st_sink_checksum) uint64_t st_sink_checksum(uint32_t ctx) {
    const sink_state *s = st_context_state(ctx);
    return s ? s->checksum : 0;
}
