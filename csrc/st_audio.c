/* The audio thread side of playback (see st_audio.h). Nothing here allocates, locks or logs. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "st_audio.h"

#include <dlfcn.h>
#include <math.h>
#include <string.h>
#include <time.h>

void st_player_init(st_player *p, st_chain *chain, float *ring_data, uint32_t ring_frames,
                    uint32_t channels, uint32_t frames, double sample_rate, int chain_in_callback,
                    float *scratch)
{
    memset(p, 0, sizeof *p);
    p->chain = chain;
    st_ring_init(&p->ring, ring_data, ring_frames, channels);
    p->channels = channels;
    p->frames = frames;
    p->sample_rate = sample_rate;
    p->chain_in_callback = chain_in_callback;
    p->scratch = scratch;
    p->ring_fill_min = UINT64_MAX;
    p->period_ns = sample_rate > 0 ? (uint64_t)(1e9 * frames / sample_rate) : 0;
    st_player_ctl_setup(p, 240, 0.0f, 0, 0, NULL);
}

/* ---- long-lived player controls --------------------------------------------------------- */

static inline uint32_t st_f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float st_u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

void st_player_ctl_setup(st_player *p, uint32_t fade_frames, float gain_coef, uint32_t prime_frames,
                         int offline, st_ring *out_ring)
{
    p->fade = 1.0f;
    p->fade_step = 1.0f / (float)(fade_frames ? fade_frames : 1);
    p->gain = 1.0f;
    atomic_store(&p->gain_bits, st_f2u(1.0f));
    p->gain_coef = gain_coef > 0.0f && gain_coef <= 1.0f ? gain_coef : 1.0f;
    p->prime_frames = prime_frames;
    p->offline = offline;
    p->out_ring = out_ring;
}

void st_player_ctl_pause(st_player *p, int paused) { atomic_store_explicit(&p->paused, paused, memory_order_release); }

void st_player_ctl_gain(st_player *p, float gain)
{
    atomic_store_explicit(&p->gain_bits, st_f2u(gain), memory_order_release);
}

void st_player_ctl_gain_now(st_player *p, float gain)
{
    p->gain = gain;
    atomic_store_explicit(&p->gain_bits, st_f2u(gain), memory_order_release);
}

uint64_t st_player_ctl_flush(st_player *p)
{
    return atomic_fetch_add_explicit(&p->flush_req, 1, memory_order_acq_rel) + 1;
}

int st_player_ctl_flush_acked(st_player *p, uint64_t gen)
{
    return atomic_load_explicit(&p->flush_ack, memory_order_acquire) >= gen;
}

static void st_player_drain(st_player *p)
{
    uint64_t head = atomic_load_explicit(&p->ring.head, memory_order_acquire);
    atomic_store_explicit(&p->ring.tail, head, memory_order_release);
}

void st_player_ctl_flush_now(st_player *p)
{
    st_player_drain(p);
    uint64_t req = atomic_load(&p->flush_req);
    p->flush_seen = req;
    p->fade = 1.0f;
    p->priming = 0;
    atomic_store(&p->flush_ack, req);
}

int st_player_ctl_post_chain(st_player *p, st_chain *c)
{
    st_chain *expected = NULL;
    return atomic_compare_exchange_strong(&p->pending_chain, &expected, c);
}

int st_player_ctl_chain_pending(st_player *p) { return atomic_load(&p->pending_chain) != NULL; }

void st_player_ctl_set_chain(st_player *p, st_chain *c)
{
    st_chain *pending = atomic_exchange(&p->pending_chain, NULL);
    p->chain = c ? c : (pending ? pending : p->chain);
}

uint32_t st_player_try_push(st_player *p, const float *buf, uint32_t frames)
{
    return st_ring_write(&p->ring, buf, frames);
}

uint64_t st_player_consumed(st_player *p) { return atomic_load_explicit(&p->ring.tail, memory_order_acquire); }
uint64_t st_player_pushed(st_player *p) { return atomic_load_explicit(&p->ring.head, memory_order_acquire); }

/* Top of a block: take a posted chain (the old one is no longer run once pending reads NULL). */
static void st_player_take_chain(st_player *p)
{
    if (atomic_load_explicit(&p->pending_chain, memory_order_relaxed) == NULL)
        return;
    st_chain *next = atomic_exchange_explicit(&p->pending_chain, NULL, memory_order_acq_rel);
    if (next) {
        st_chain_xfade_carry(next); /* a recreate: the old stage's state, at this boundary */
        p->chain = next;
        atomic_fetch_add_explicit(&p->swaps, 1, memory_order_relaxed);
    }
}

/* Fade (pause/flush) and volume, per frame; nothing to do at unity (bit-exact playback). */
static void st_player_ramp(st_player *p, float *out, uint32_t frames, float fade_target)
{
    float target = st_u2f(atomic_load_explicit(&p->gain_bits, memory_order_acquire));
    if (p->fade == fade_target && p->fade == 1.0f && p->gain == target && target == 1.0f)
        return;
    uint32_t ch = p->channels;
    float fade = p->fade, gain = p->gain, k = p->gain_coef, step = p->fade_step;
    for (uint32_t i = 0; i < frames; i++) {
        if (fade < fade_target) {
            fade += step;
            if (fade > fade_target)
                fade = fade_target;
        } else if (fade > fade_target) {
            fade -= step;
            if (fade < fade_target)
                fade = fade_target;
        }
        gain += (target - gain) * k;
        if (fabsf(gain - target) < 1e-7f)
            gain = target;
        float m = fade * gain;
        for (uint32_t c = 0; c < ch; c++)
            out[(size_t)i * ch + c] *= m;
    }
    p->fade = fade;
    p->gain = gain;
}

static void st_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

uint64_t st_player_push(st_player *p, float *buf, uint64_t frames)
{
    if (!p->chain_in_callback)
        st_chain_process(p->chain, buf, (uint32_t)frames);
    uint64_t done = 0;
    while (done < frames && !atomic_load_explicit(&p->stop, memory_order_acquire)) {
        uint64_t want = frames - done;
        uint32_t n = st_ring_write(&p->ring, buf + done * p->channels,
                                   want > UINT32_MAX ? UINT32_MAX : (uint32_t)want);
        done += n;
        if (done < frames)
            st_sleep_us(1000); /* ring full: the driver frees a block every few ms */
    }
    return done;
}

uint32_t st_player_buffered(st_player *p) { return st_ring_readable(&p->ring); }

/* One driver block: pop from the ring, run the chain (design A), pad with silence; pause and
 * flush fade out first, a flush then drains the ring and the next audio fades in. t0: when the
 * driver began the block (its duration is timed from there). */
static void st_player_render(st_player *p, float *out, uint32_t frames, uint64_t t0)
{
    st_player_take_chain(p);
    uint64_t req = atomic_load_explicit(&p->flush_req, memory_order_acquire);
    int flush = req != p->flush_seen;
    int quiet = flush || atomic_load_explicit(&p->paused, memory_order_acquire);
    if (quiet && p->fade <= 0.0f) {
        if (flush) {
            st_player_drain(p);
            if (p->chain_in_callback)
                st_chain_drop_pending(p->chain); /* kept sink frames belong to the old position */
            p->flush_seen = req;
            p->priming = !p->offline && p->prime_frames > 0;
            atomic_store_explicit(&p->flush_ack, req, memory_order_release);
        }
        memset(out, 0, (size_t)frames * p->channels * sizeof(float));
        if (p->chain_in_callback) /* commands still land while silent (a chain swap waits on them) */
            st_chain_apply_commands(p->chain);
        atomic_fetch_add_explicit(&p->callbacks, 1, memory_order_relaxed);
        return;
    }
    if (p->priming) {
        if (st_ring_readable(&p->ring) >= p->prime_frames ||
            atomic_load_explicit(&p->source_done, memory_order_acquire)) {
            p->priming = 0;
        } else {
            memset(out, 0, (size_t)frames * p->channels * sizeof(float));
            if (p->chain_in_callback)
                st_chain_apply_commands(p->chain);
            atomic_fetch_add_explicit(&p->callbacks, 1, memory_order_relaxed);
            return;
        }
    }
    if (p->chain_in_callback && st_chain_sink_pending(p->chain)) {
        /* A sink kept frames: offer them again first; new audio waits for the next tick. */
        st_chain_offer_pending(p->chain);
        if (st_chain_sink_pending(p->chain)) {
            memset(out, 0, (size_t)frames * p->channels * sizeof(float));
            atomic_fetch_add_explicit(&p->sink_waits, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->callbacks, 1, memory_order_relaxed);
            return;
        }
    }
    uint32_t fill = st_ring_readable(&p->ring);
    p->ring_fill_sum += fill;
    if (fill < p->ring_fill_min)
        p->ring_fill_min = fill;
    uint32_t got = st_ring_read(&p->ring, out, frames);
    if (got < frames) {
        memset(out + (size_t)got * p->channels, 0, (size_t)(frames - got) * p->channels * sizeof(float));
        if (quiet) {
            /* fading out for a pause or a flush: a short ring is no underrun */
        } else if (!atomic_load_explicit(&p->source_done, memory_order_acquire)) {
            atomic_fetch_add_explicit(&p->ring_underruns, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->ring_underrun_frames, frames - got, memory_order_relaxed);
        } else if (st_ring_readable(&p->ring) == 0) {
            atomic_store_explicit(&p->finished, 1, memory_order_release);
            if (got == 0 && p->chain_in_callback)
                st_chain_poll_sinks(p->chain); /* the end: sinks say when they have drained */
        }
    }
    if (p->ramp_first)
        st_player_ramp(p, out, frames, quiet ? 0.0f : 1.0f);
    if (p->chain_in_callback && got > 0)
        st_chain_process(p->chain, out, got);
    if (!p->ramp_first)
        st_player_ramp(p, out, frames, quiet ? 0.0f : 1.0f);
    if (p->out_ring) {
        uint32_t want = p->offline ? got : frames; /* offline: no padding in the output */
        uint32_t n = st_ring_write(p->out_ring, out, want);
        if (n < want)
            atomic_fetch_add_explicit(&p->out_dropped, want - n, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&p->frames_out, got, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->callbacks, 1, memory_order_relaxed);
    uint64_t dt = st_now_ns() - t0;
    st_hist_record(p->render_hist, dt);
    if (dt > p->period_ns)
        p->late_renders++;
    if (dt > p->render_max_ns)
        p->render_max_ns = dt;
}

/* ---- PortAudio driver ------------------------------------------------------------------- */

static int st_pa_callback(const void *input, void *output, unsigned long frames,
                          const PaStreamCallbackTimeInfo *time_info, PaStreamCallbackFlags flags,
                          void *user)
{
    (void)time_info;
    st_player *p = user;
    /* The device calls once a period whatever we do (paused too), so a longer gap is its own.
     * The same clock read times the block (st_player_render). */
    uint64_t start = st_now_ns();
    if (p->last_start_ns && start - p->last_start_ns > p->period_ns + p->period_ns / 2)
        p->late_wakeups++;
    p->last_start_ns = start;
    if (flags & paOutputUnderflow)
        atomic_fetch_add_explicit(&p->output_underflows, 1, memory_order_relaxed);
    if (flags & paInputOverflow)
        atomic_fetch_add_explicit(&p->input_overflows, 1, memory_order_relaxed);
    if (input && p->capture) {
        uint64_t pos = atomic_load_explicit(&p->capture_pos, memory_order_relaxed);
        uint64_t n = p->capture_capacity - pos;
        if (n > frames)
            n = frames;
        memcpy(p->capture + pos * p->in_channels, input, n * p->in_channels * sizeof(float));
        atomic_store_explicit(&p->capture_pos, pos + n, memory_order_release);
    }
    st_player_render(p, output, (uint32_t)frames, start);
    return paContinue;
}

PaError st_player_open_device(st_player *p, PaDeviceIndex out_device, PaDeviceIndex in_device,
                              PaTime suggested_latency)
{
    PaStreamParameters out = {out_device, (int)p->channels, paFloat32, suggested_latency, NULL};
    PaStreamParameters in = {in_device, (int)p->in_channels, paFloat32, suggested_latency, NULL};
    PaError err = Pa_OpenStream(&p->stream, in_device == paNoDevice ? NULL : &in, &out,
                                p->sample_rate, p->frames, paClipOff, st_pa_callback, p);
    if (err != paNoError) {
        p->stream = NULL;
        return err;
    }
    const PaStreamInfo *info = Pa_GetStreamInfo(p->stream);
    p->output_latency = info ? info->outputLatency : 0.0;
    return paNoError;
}

PaError st_player_start_device(st_player *p) { return Pa_StartStream(p->stream); }

PaError st_player_close_device(st_player *p)
{
    if (!p->stream)
        return paNoError;
    atomic_store(&p->stop, 1);
    PaError err = Pa_StopStream(p->stream);
    PaError err2 = Pa_CloseStream(p->stream);
    p->stream = NULL;
    return err != paNoError ? err : err2;
}

/* ---- engine clock driver ---------------------------------------------------------------- */

static void *st_clock_main(void *arg)
{
    st_player *p = arg;
    long period_ns = (long)(1e9 * p->frames / p->sample_rate);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load_explicit(&p->stop, memory_order_acquire)) {
        if (p->offline) {
            /* As fast as it goes, but deterministic: a block only when it is whole (or the
             * source's last), never a pad for a feeder that is merely behind. */
            st_player_take_chain(p);
            int flush = atomic_load_explicit(&p->flush_req, memory_order_acquire) != p->flush_seen;
            int paused = atomic_load_explicit(&p->paused, memory_order_acquire);
            uint32_t fill = st_ring_readable(&p->ring);
            int ready = fill >= p->frames || (fill > 0 && atomic_load(&p->source_done));
            int room = !p->out_ring || st_ring_writable(p->out_ring) >= p->frames;
            uint32_t pend = p->chain_in_callback ? st_chain_sink_pending(p->chain) : 0;
            if (pend && !flush && !paused) {
                /* A sink kept frames: offer them again (and go on once it took them). */
                st_chain_offer_pending(p->chain);
                atomic_fetch_add_explicit(&p->sink_waits, 1, memory_order_relaxed);
                if (st_chain_sink_pending(p->chain) >= pend)
                    st_sleep_us(100); /* no progress: the sink is full, wait a little */
                continue;
            }
            if (!room || (!flush && (paused ? p->fade <= 0.0f : !ready))) {
                if (!flush && !paused && fill == 0 && atomic_load(&p->source_done)) {
                    atomic_store_explicit(&p->finished, 1, memory_order_release);
                    if (p->chain_in_callback)
                        st_chain_poll_sinks(p->chain);
                }
                if (p->chain_in_callback)
                    st_chain_apply_commands(p->chain);
                st_sleep_us(100);
                continue;
            }
            st_player_render(p, p->scratch, p->frames, st_now_ns());
            continue;
        }
        st_player_render(p, p->scratch, p->frames, st_now_ns());
        next.tv_nsec += period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return NULL;
}

int st_player_start_clock(st_player *p)
{
    if (pthread_create(&p->clock_thread, NULL, st_clock_main, p) != 0)
        return -1;
    p->clock_running = 1;
    return 0;
}

void st_player_stop_clock(st_player *p)
{
    atomic_store(&p->stop, 1);
    if (p->clock_running)
        pthread_join(p->clock_thread, NULL);
    p->clock_running = 0;
}

/* ---- quiet initialisation --------------------------------------------------------------- */

typedef void (*st_alsa_error_handler)(const char *file, int line, const char *function, int err,
                                      const char *fmt, ...);

static void st_alsa_ignore(const char *file, int line, const char *function, int err,
                           const char *fmt, ...)
{
    (void)file, (void)line, (void)function, (void)err, (void)fmt;
}

PaError st_pa_initialize_quietly(void)
{
    /* libasound comes in through PortAudio; looked up rather than linked so a PortAudio built
     * without ALSA still loads. */
    int (*set_handler)(st_alsa_error_handler) = 0;
    *(void **)(&set_handler) = dlsym(RTLD_DEFAULT, "snd_lib_error_set_handler");
    if (set_handler)
        set_handler(st_alsa_ignore);
    PaError err = Pa_Initialize();
    if (set_handler)
        set_handler(0); /* ALSA's default handler again: later errors (opening a stream) print */
    return err;
}
