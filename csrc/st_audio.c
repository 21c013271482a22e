/* The audio thread side of playback (see st_audio.h). Nothing here allocates, locks or logs. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "st_audio.h"

#include <dlfcn.h>
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

/* One driver block: pop from the ring, run the chain (design A), pad with silence. */
static void st_player_render(st_player *p, float *out, uint32_t frames)
{
    uint64_t t0 = st_now_ns();
    uint32_t fill = st_ring_readable(&p->ring);
    p->ring_fill_sum += fill;
    if (fill < p->ring_fill_min)
        p->ring_fill_min = fill;
    uint32_t got = st_ring_read(&p->ring, out, frames);
    if (got < frames) {
        memset(out + (size_t)got * p->channels, 0, (size_t)(frames - got) * p->channels * sizeof(float));
        if (!atomic_load_explicit(&p->source_done, memory_order_acquire)) {
            atomic_fetch_add_explicit(&p->ring_underruns, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->ring_underrun_frames, frames - got, memory_order_relaxed);
        } else if (st_ring_readable(&p->ring) == 0) {
            atomic_store_explicit(&p->finished, 1, memory_order_release);
        }
    }
    if (p->chain_in_callback && got > 0)
        st_chain_process(p->chain, out, got);
    atomic_fetch_add_explicit(&p->frames_out, got, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->callbacks, 1, memory_order_relaxed);
    uint64_t dt = st_now_ns() - t0;
    st_hist_record(p->render_hist, dt);
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
    st_player_render(p, output, (uint32_t)frames);
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
        st_player_render(p, p->scratch, p->frames);
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
