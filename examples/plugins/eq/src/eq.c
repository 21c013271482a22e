/* eq: four-band parametric EQ (low shelf, two peaking bands, high shelf).
 *
 * Biquads in transposed direct form II, coefficients from the RBJ audio-EQ cookbook, computed in
 * double when a parameter changes (never per sample) and stored as float. A band at exactly
 * 0 dB passes samples through unchanged (all bands at 0 dB: the block is just copied). Shelves
 * use slope S = 1. The four bands run side by side on the lanes of a vector (eq_channels). */
#include "stellatune_sdk.h"

enum { LOW, MID1, MID2, HIGH, BANDS };

enum {
    P_LOW_FREQ, P_LOW_GAIN,
    P_MID1_FREQ, P_MID1_GAIN, P_MID1_Q,
    P_MID2_FREQ, P_MID2_GAIN, P_MID2_Q,
    P_HIGH_FREQ, P_HIGH_GAIN,
    P_COUNT
};

static const st_param PARAMS[P_COUNT] = {
    [P_LOW_FREQ] = {"low_freq", 20.0f, 2000.0f, 100.0f},
    [P_LOW_GAIN] = {"low_gain_db", -24.0f, 24.0f, 0.0f},
    [P_MID1_FREQ] = {"mid1_freq", 20.0f, 20000.0f, 500.0f},
    [P_MID1_GAIN] = {"mid1_gain_db", -24.0f, 24.0f, 0.0f},
    [P_MID1_Q] = {"mid1_q", 0.1f, 10.0f, 1.0f},
    [P_MID2_FREQ] = {"mid2_freq", 20.0f, 20000.0f, 2500.0f},
    [P_MID2_GAIN] = {"mid2_gain_db", -24.0f, 24.0f, 0.0f},
    [P_MID2_Q] = {"mid2_q", 0.1f, 10.0f, 1.0f},
    [P_HIGH_FREQ] = {"high_freq", 1000.0f, 20000.0f, 8000.0f},
    [P_HIGH_GAIN] = {"high_gain_db", -24.0f, 24.0f, 0.0f},
};

/* The four bands side by side, lane b = band b (BANDS == 4 == lanes of a vector). */
typedef struct cascade {
    st_f32x4 b0, b1, b2, a1, a2; /* normalised by a0; a 0 dB band is the identity 1, 0, 0, 0, 0 */
} cascade;

typedef struct eq_state {
    uint32_t channels;
    uint32_t sample_rate;
    float params[P_COUNT];
    uint32_t active[BANDS];
    uint32_t active_count;
    cascade c;
    st_f32x4 z1[ST_MAX_CHANNELS], z2[ST_MAX_CHANNELS]; /* TDF-II states, lane = band */
} eq_state;

static void design(eq_state *s, int band) {
    static const int freq_param[BANDS] = {P_LOW_FREQ, P_MID1_FREQ, P_MID2_FREQ, P_HIGH_FREQ};
    static const int gain_param[BANDS] = {P_LOW_GAIN, P_MID1_GAIN, P_MID2_GAIN, P_HIGH_GAIN};
    float gain_db = s->params[gain_param[band]];
    const uint32_t was_active = s->active[band];
    s->active[band] = gain_db != 0.0f;
    s->active_count += s->active[band] - was_active;
    if (!s->active[band]) {
        /* The identity: out = 1 * in + 0, exactly the input (but -0 becomes +0), with states
         * that stay 0. Cheaper than selecting the input in the lane: that would lengthen the
         * lane-to-lane dependency of every step. */
        s->c.b0[band] = 1.0f;
        s->c.b1[band] = s->c.b2[band] = s->c.a1[band] = s->c.a2[band] = 0.0f;
        for (uint32_t ch = 0; ch < ST_MAX_CHANNELS; ch++) s->z1[ch][band] = s->z2[ch][band] = 0.0f;
        return;
    }
    double f = s->params[freq_param[band]], fs = s->sample_rate;
    if (f > 0.45 * fs) f = 0.45 * fs; /* keep the band below Nyquist at low sample rates */
    double A = st_exp(gain_db * (0.11512925464970228420 / 2.0)); /* 10^(dB/40) */
    double w0 = 2.0 * ST_PI * f / fs, cw = st_cos(w0), sw = st_sin(w0);
    double b0, b1, b2, a0, a1, a2;
    if (band == MID1 || band == MID2) {
        double q = s->params[band == MID1 ? P_MID1_Q : P_MID2_Q];
        double alpha = sw / (2.0 * q);
        b0 = 1.0 + alpha * A, b1 = -2.0 * cw, b2 = 1.0 - alpha * A;
        a0 = 1.0 + alpha / A, a1 = -2.0 * cw, a2 = 1.0 - alpha / A;
    } else {
        double k = 2.0 * st_sqrt(A) * (sw / 2.0 * st_sqrt(2.0)); /* 2 sqrt(A) alpha, S = 1 */
        double ap = A + 1.0, am = A - 1.0;
        if (band == LOW) {
            b0 = A * (ap - am * cw + k), b1 = 2.0 * A * (am - ap * cw), b2 = A * (ap - am * cw - k);
            a0 = ap + am * cw + k, a1 = -2.0 * (am + ap * cw), a2 = ap + am * cw - k;
        } else {
            b0 = A * (ap + am * cw + k), b1 = -2.0 * A * (am + ap * cw), b2 = A * (ap + am * cw - k);
            a0 = ap - am * cw + k, a1 = 2.0 * (am - ap * cw), a2 = ap - am * cw - k;
        }
    }
    s->c.b0[band] = (float)(b0 / a0), s->c.b1[band] = (float)(b1 / a0);
    s->c.b2[band] = (float)(b2 / a0);
    s->c.a1[band] = (float)(a1 / a0), s->c.a2[band] = (float)(a2 / a0);
}

static int band_of(uint32_t id) {
    if (id <= P_LOW_GAIN) return LOW;
    if (id <= P_MID1_Q) return MID1;
    if (id <= P_MID2_Q) return MID2;
    return HIGH;
}

static void eq_set_param(void *state, const st_stream *stream, uint32_t id, float value) {
    (void)stream;
    eq_state *s = state;
    s->params[id] = value;
    design(s, band_of(id));
}

static int32_t eq_init(void *state, const st_stream *stream, const float *params) {
    eq_state *s = state;
    s->channels = stream->channels;
    s->sample_rate = stream->sample_rate;
    for (int i = 0; i < P_COUNT; i++) s->params[i] = params[i];
    for (int b = 0; b < BANDS; b++) design(s, b);
    return ST_HOT_OK;
}

static void eq_reset(void *state) {
    eq_state *s = state;
    memset(s->z1, 0, sizeof s->z1);
    memset(s->z2, 0, sizeof s->z2);
}

/*
 * The cascade runs skewed: at step t, lane b (band b) filters frame t - b, the frame lane b - 1
 * produced at step t - 1. So the four bands run side by side on vector lanes, and each band
 * still sees exactly the samples, in the order, it would see running alone over the block: the
 * results are those of one band after the other, bit for bit. A block of n frames takes n + 3
 * steps; in the first and last three some lanes have no frame yet (or any more) and must keep
 * their states (eq_step's `live` mask). The output of frame t - 3 leaves lane 3 at step t.
 *
 * z1 = (b1 x + z2) - a1 o rather than (b1 x - a1 o) + z2: the same value up to rounding, and
 * the recursion through o is then a multiply and a subtract long instead of three operations.
 */
static inline __attribute__((always_inline)) st_f32x4
eq_step(const cascade *c, st_f32x4 *z1, st_f32x4 *z2, st_f32x4 x, st_i32x4 live) {
    st_f32x4 o = c->b0 * x + *z1;
    *z1 = st_select4(live, (c->b1 * x + *z2) - c->a1 * o, *z1);
    *z2 = st_select4(live, c->b2 * x - c->a2 * o, *z2);
    return o;
}

/* The lanes that hold a frame at step t of an n-frame block: 0 <= t - lane < n. */
static inline st_i32x4 live_lanes(uint32_t t, uint32_t n) {
    const st_i32x4 lane = {0, 1, 2, 3};
    return (lane <= (int32_t)t) & (lane > (int32_t)t - (int32_t)n);
}

/* `pair` (a constant after inlining): channels y[0] and y[1] together, two independent
 * recursions per step; else channel y[0] alone. */
static inline __attribute__((always_inline)) void
eq_channels(const cascade *c, st_f32x4 *z1, st_f32x4 *z2, float *y, uint32_t C, uint32_t n,
            int pair) {
    const st_i32x4 all = {-1, -1, -1, -1};
    st_f32x4 oa = st_splat4(0.0f), ob = oa;
    /* Locals, not *z: stores to y could alias the states and force a reload every step. */
    st_f32x4 a1 = z1[0], a2 = z2[0], b1 = pair ? z1[1] : oa, b2 = pair ? z2[1] : oa;
    /* Into lane 0 frame `in`, into lane b the output of lane b - 1; out of lane 3 frame t - 3. */
#define EQ_STEP(t, in, live, has_output)                                                        \
    do {                                                                                        \
        oa = eq_step(c, &a1, &a2, __builtin_shufflevector(oa, st_splat4(y[(in) * C]), 4, 0, 1, 2), live); \
        if (pair)                                                                               \
            ob = eq_step(c, &b1, &b2, __builtin_shufflevector(ob, st_splat4(y[(in) * C + 1]), 4, 0, 1, 2), live); \
        if (has_output) {                                                                       \
            y[((t) - 3) * C] = oa[3];                                                           \
            if (pair) y[((t) - 3) * C + 1] = ob[3];                                             \
        }                                                                                       \
    } while (0)
    /* The edges, three steps each, as straight code (every loop back-edge costs an epoch check
     * in wasm). A lane that is not live ignores its input, so past the end any frame will do. */
    EQ_STEP(0, 0, live_lanes(0, n), 0);
    EQ_STEP(1, n > 1 ? 1 : 0, live_lanes(1, n), 0);
    EQ_STEP(2, n > 2 ? 2 : n - 1, live_lanes(2, n), 0);
    /* Every lane live. Eight steps per loop iteration, so an eighth of the epoch checks: the
     * wasm build with the watchdog measured 1.5x native unrolled by 2, 1.1x by 8. */
    uint32_t t = 3;
#pragma clang loop unroll_count(8)
    for (; t < n; t++) EQ_STEP(t, t, all, 1);
    /* Steps n .. n+2, but none before step 3 (a block of n < 3 frames ended there). */
    if (n >= 3) EQ_STEP(n, n - 1, live_lanes(n, n), 1);
    if (n + 1 >= 3) EQ_STEP(n + 1, n - 1, live_lanes(n + 1, n), 1);
    EQ_STEP(n + 2, n - 1, live_lanes(n + 2, n), 1);
#undef EQ_STEP
    z1[0] = a1, z2[0] = a2;
    if (pair) z1[1] = b1, z2[1] = b2;
}

static void eq_process(void *state, const float *in, float *out, uint32_t frames) {
    eq_state *s = state;
    const uint32_t C = s->channels;
    if (in != out) memcpy(out, in, sizeof(float) * frames * C);
    if (s->active_count == 0) return;
    const cascade c = s->c;
    uint32_t ch = 0;
    for (; ch + 1 < C; ch += 2) eq_channels(&c, &s->z1[ch], &s->z2[ch], out + ch, C, frames, 1);
    if (ch < C) eq_channels(&c, &s->z1[ch], &s->z2[ch], out + ch, C, frames, 0);
    /* Once per block: a decaying tail never lingers in subnormals past one block. */
    for (ch = 0; ch < C; ch++) {
        s->z1[ch] = st_flush_denormal4(s->z1[ch]);
        s->z2[ch] = st_flush_denormal4(s->z2[ch]);
    }
}

static const st_dsp_kernel EQ = {
    .params = PARAMS,
    .param_count = P_COUNT,
    .init = eq_init,
    .set_param = eq_set_param,
    .reset = eq_reset,
    .process = eq_process,
};

ST_DSP_PLUGIN(EQ, eq_state);
