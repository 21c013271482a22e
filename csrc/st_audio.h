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

    _Atomic int source_done; /* set by the feeder after its last frame */
    _Atomic int finished;    /* set by the driver once the source is done and the ring empty */
    _Atomic int stop;

    PaStream *stream;
    double output_latency; /* seconds, as PortAudio reports it */
    pthread_t clock_thread;
    int clock_running;
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

/* No device: a C thread paced by CLOCK_MONOTONIC drives the chain (output-sink stages). */
int st_player_start_clock(st_player *p);
void st_player_stop_clock(st_player *p);

#endif
