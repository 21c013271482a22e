/* Playback: a feeder fills a lock-free ring, a driver (PortAudio callback or the engine clock)
 * drains it once per block and runs the chain, either in the callback (design A) or on the
 * feeder before the ring (design B). See docs/engine.md for the measurements between them. */
#ifndef ST_AUDIO_H
#define ST_AUDIO_H

#include <portaudio.h>
#include <pthread.h>
#include <stdint.h>

#include "st_chain.h"
#include "st_ring.h"

typedef struct st_player {
    st_chain *chain;
    st_ring ring;
    uint32_t channels;
    uint32_t frames; /* frames per driver block */
    double sample_rate;
    int chain_in_callback; /* 1: design A (chain in the driver), 0: design B (chain on feeder) */
    float *scratch;        /* one block, for the clock driver */

    /* Optional capture of the device input (loopback verification); owned by Python. */
    float *capture;
    uint64_t capture_capacity; /* frames */
    uint32_t in_channels;
    _Atomic uint64_t capture_pos;

    /* Counters, written only by the driver thread. */
    _Atomic uint64_t callbacks;
    _Atomic uint64_t output_underflows; /* device said it ran dry (paOutputUnderflow) */
    _Atomic uint64_t input_overflows;
    _Atomic uint64_t ring_underruns;    /* callbacks that found the ring short (source not done) */
    _Atomic uint64_t ring_underrun_frames;
    _Atomic uint64_t frames_out;
    uint64_t ring_fill_sum; /* sum over callbacks of frames waiting in the ring */
    uint64_t ring_fill_min;
    uint64_t render_max_ns; /* slowest driver block (ring pop + chain) */
    uint64_t render_hist[ST_HIST_BUCKETS]; /* driver block durations, log buckets as st_chain's */
    /* What an xrun can be blamed on: a block that took longer than its period (ours), or a
     * device callback that began over 1.5 periods after the one before (the device's own
     * thread woke late: a scheduler or hypervisor delay, not our work). */
    uint64_t period_ns;
    uint64_t last_start_ns;
    uint64_t late_renders;
    uint64_t late_wakeups;

    _Atomic int source_done; /* set by the feeder after its last frame */
    _Atomic int finished;    /* set by the driver once the source is done and the ring empty */
    _Atomic int stop;

    PaStream *stream;
    double output_latency; /* seconds, as PortAudio reports it */
    pthread_t clock_thread;
    int clock_running;

    /* ---- long-lived player controls (stellatune.compose.player) ---------------------------
     * Each is a lock-free handoff the driver polls at the top of a block (st_player_ctl_*). */
    _Atomic int paused;             /* control: fade out, then silence; the ring is left alone */
    _Atomic uint64_t flush_req;     /* control bumps it: fade out, drain the ring, ack */
    _Atomic uint64_t flush_ack;     /* driver: the last flush request done */
    uint64_t flush_seen;            /* driver-owned */
    _Atomic uint32_t gain_bits;     /* target volume (linear, float bits), smoothed per sample */
    float gain;                     /* driver-owned: current volume */
    float gain_coef;                /* one-pole smoothing coefficient per frame */
    float fade;                     /* driver-owned: 0..1, ramped by fade_step per frame */
    float fade_step;
    uint32_t prime_frames;          /* after a flush: silence until this much is in the ring */
    int priming;
    int offline;                    /* clock driver: no sleeping, never pad, wait for audio */
    st_chain *_Atomic pending_chain; /* control posts; the driver swaps at a block boundary */
    _Atomic uint64_t swaps;
    st_ring *out_ring;              /* optional: rendered blocks for a writer thread (file:) */
    _Atomic uint64_t out_dropped;   /* frames the out ring had no room for (real-time only) */
    /* Output sinks (sink: outputs): volume and fades go before the chain (the chain ends in
     * the sink), and a block a sink did not take whole is offered again on the next ticks
     * before the ring is read again (back-pressure; docs/engine.md). */
    int ramp_first;
    _Atomic uint64_t sink_waits;    /* ticks spent offering kept frames again (no new audio) */
} st_player;

void st_player_init(st_player *p, st_chain *chain, float *ring_data, uint32_t ring_frames,
                    uint32_t channels, uint32_t frames, double sample_rate, int chain_in_callback,
                    float *scratch);

/* Feeder side: push all `frames` (blocking with short sleeps while the ring is full, until
 * stop). Design B runs the chain over `buf` first, in place. Returns frames pushed. */
uint64_t st_player_push(st_player *p, float *buf, uint64_t frames);

/* Frames waiting in the ring. */
uint32_t st_player_buffered(st_player *p);

/* Open a PortAudio stream on `out_device` (and `in_device` for capture, or paNoDevice).
 * Pa_Initialize must have been called. Returns a PaError. */
PaError st_player_open_device(st_player *p, PaDeviceIndex out_device, PaDeviceIndex in_device,
                              PaTime suggested_latency);
PaError st_player_start_device(st_player *p);
PaError st_player_close_device(st_player *p);

/* Pa_Initialize without ALSA's probe chatter: on a machine without a sound card, probing the
 * ALSA configuration prints dozens of "ALSA lib ..." lines to stderr that mean nothing (the
 * devices simply are not there). Only messages during the probe are dropped; a failure still
 * comes back as the PaError. */
PaError st_pa_initialize_quietly(void);

/* ---- long-lived player controls (all lock-free; any control thread, one at a time) ---- */

/* Fade length for pause/flush (frames), the volume's one-pole coefficient per frame (1: no
 * smoothing), how much a flushed ring must hold again before the driver plays from it, the
 * offline clock, and an optional ring for the rendered blocks. Call before the driver starts. */
void st_player_ctl_setup(st_player *p, uint32_t fade_frames, float gain_coef, uint32_t prime_frames,
                         int offline, st_ring *out_ring);
void st_player_ctl_pause(st_player *p, int paused);
void st_player_ctl_gain(st_player *p, float gain);
/* Only while no driver runs: the volume is ``gain`` from the first frame on (no ramp from 1). */
void st_player_ctl_gain_now(st_player *p, float gain);
/* Ask for a flush; returns its generation (done once st_player_ctl_flush_acked says so). */
uint64_t st_player_ctl_flush(st_player *p);
int st_player_ctl_flush_acked(st_player *p, uint64_t gen);
/* With no driver running: drain the ring and ack every flush request at once. */
void st_player_ctl_flush_now(st_player *p);
/* Post a chain for the driver to take at its next block; 0 when one is still pending. */
int st_player_ctl_post_chain(st_player *p, st_chain *c);
int st_player_ctl_chain_pending(st_player *p);
/* With no driver running: take the pending chain (or `c`) now. */
void st_player_ctl_set_chain(st_player *p, st_chain *c);
/* Non-blocking push of up to `frames` (design A only: no chain run); returns frames pushed. */
uint32_t st_player_try_push(st_player *p, const float *buf, uint32_t frames);
/* Frames the driver has taken from the ring (played or drained) / the feeder has pushed. */
uint64_t st_player_consumed(st_player *p);
uint64_t st_player_pushed(st_player *p);

/* No device: a C thread paced by CLOCK_MONOTONIC drives the chain (output-sink stages). */
int st_player_start_clock(st_player *p);
void st_player_stop_clock(st_player *p);

#endif
