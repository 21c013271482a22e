/* eq: four-band parametric EQ (low shelf, two peaking bands, high shelf).
 *
 * Biquads in transposed direct form II, coefficients from the RBJ audio-EQ cookbook, computed in
 * double when a parameter changes (never per sample) and stored as float. A band at exactly
 * 0 dB is skipped. Shelves use slope S = 1. */
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

typedef struct biquad {
    float b0, b1, b2, a1, a2; /* normalised by a0 */
} biquad;

typedef struct eq_state {
    uint32_t channels;
    uint32_t sample_rate;
    float params[P_COUNT];
    uint32_t active[BANDS];
    biquad coef[BANDS];
    float z[BANDS][ST_MAX_CHANNELS][2]; /* TDF-II states z1, z2 */
} eq_state;

static void design(eq_state *s, int band) {
    static const int freq_param[BANDS] = {P_LOW_FREQ, P_MID1_FREQ, P_MID2_FREQ, P_HIGH_FREQ};
    static const int gain_param[BANDS] = {P_LOW_GAIN, P_MID1_GAIN, P_MID2_GAIN, P_HIGH_GAIN};
    float gain_db = s->params[gain_param[band]];
    s->active[band] = gain_db != 0.0f;
    if (!s->active[band]) return;
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
    biquad *c = &s->coef[band];
    c->b0 = (float)(b0 / a0), c->b1 = (float)(b1 / a0), c->b2 = (float)(b2 / a0);
    c->a1 = (float)(a1 / a0), c->a2 = (float)(a2 / a0);
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
    memset(s->z, 0, sizeof s->z);
}

/* One band over one channel of the block. */
static void run_band_mono(const biquad *c, float *z, float *y, uint32_t C, uint32_t frames) {
    float z1 = z[0], z2 = z[1];
    for (uint32_t i = 0; i < frames; i++) {
        float x = y[i * C];
        float o = c->b0 * x + z1;
        z1 = c->b1 * x - c->a1 * o + z2;
        z2 = c->b2 * x - c->a2 * o;
        y[i * C] = o;
    }
    z[0] = z1, z[1] = z2;
}

/* One band over two adjacent channels: two independent recursions per iteration keep the FPU
 * busy, and half the iterations halve the loop overhead (in wasm, an epoch check per loop). */
static void run_band_pair(const biquad *c, float *za, float *zb, float *y, uint32_t C,
                          uint32_t frames) {
    float a1 = za[0], a2 = za[1], b1 = zb[0], b2 = zb[1];
    for (uint32_t i = 0; i < frames; i++) {
        float xa = y[i * C], xb = y[i * C + 1];
        float oa = c->b0 * xa + a1, ob = c->b0 * xb + b1;
        a1 = c->b1 * xa - c->a1 * oa + a2;
        b1 = c->b1 * xb - c->a1 * ob + b2;
        a2 = c->b2 * xa - c->a2 * oa;
        b2 = c->b2 * xb - c->a2 * ob;
        y[i * C] = oa, y[i * C + 1] = ob;
    }
    za[0] = a1, za[1] = a2, zb[0] = b1, zb[1] = b2;
}

static void eq_process(void *state, const float *in, float *out, uint32_t frames) {
    eq_state *s = state;
    const uint32_t C = s->channels;
    if (in != out) memcpy(out, in, sizeof(float) * frames * C);
    for (int b = 0; b < BANDS; b++) {
        if (!s->active[b]) continue;
        const biquad c = s->coef[b];
        uint32_t ch = 0;
        for (; ch + 1 < C; ch += 2)
            run_band_pair(&c, s->z[b][ch], s->z[b][ch + 1], out + ch, C, frames);
        if (ch < C) run_band_mono(&c, s->z[b][ch], out + ch, C, frames);
        /* Once per block: a decaying tail never lingers in subnormals past one block. */
        for (ch = 0; ch < C; ch++) {
            s->z[b][ch][0] = st_flush_denormal(s->z[b][ch][0]);
            s->z[b][ch][1] = st_flush_denormal(s->z[b][ch][1]);
        }
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
