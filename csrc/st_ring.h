/* Lock-free single-producer/single-consumer rings.
 *
 * st_ring carries interleaved float32 frames from the feeder thread to the audio thread;
 * st_cmdq carries control commands (set_param, bypass, reset) from Python to the audio thread.
 * Capacities are powers of two; head and tail only grow, and each side publishes its index with
 * release semantics after touching the data, so neither side ever waits for the other. */
#ifndef ST_RING_H
#define ST_RING_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    float *data;           /* capacity * channels samples, owned by the caller */
    uint32_t capacity;     /* frames, power of two */
    uint32_t channels;
    _Atomic uint64_t head; /* frames written (producer) */
    _Atomic uint64_t tail; /* frames read (consumer) */
} st_ring;

static inline void st_ring_init(st_ring *r, float *data, uint32_t capacity, uint32_t channels)
{
    r->data = data;
    r->capacity = capacity;
    r->channels = channels;
    atomic_store(&r->head, 0);
    atomic_store(&r->tail, 0);
}

static inline uint32_t st_ring_readable(st_ring *r)
{
    return (uint32_t)(atomic_load_explicit(&r->head, memory_order_acquire) -
                      atomic_load_explicit(&r->tail, memory_order_relaxed));
}

static inline uint32_t st_ring_writable(st_ring *r)
{
    return r->capacity - (uint32_t)(atomic_load_explicit(&r->head, memory_order_relaxed) -
                                    atomic_load_explicit(&r->tail, memory_order_acquire));
}

/* Copy `frames` frames between the ring at frame index `at` and `buf`, wrapping once. */
static inline void st_ring_copy(st_ring *r, uint64_t at, float *buf, uint32_t frames, int to_ring)
{
    uint32_t start = (uint32_t)(at & (r->capacity - 1));
    uint32_t first = r->capacity - start;
    if (first > frames)
        first = frames;
    size_t ch = r->channels;
    float *ring_at = r->data + start * ch;
    if (to_ring) {
        memcpy(ring_at, buf, first * ch * sizeof(float));
        memcpy(r->data, buf + first * ch, (frames - first) * ch * sizeof(float));
    } else {
        memcpy(buf, ring_at, first * ch * sizeof(float));
        memcpy(buf + first * ch, r->data, (frames - first) * ch * sizeof(float));
    }
}

/* Producer side: write up to `frames`; returns frames written. */
static inline uint32_t st_ring_write(st_ring *r, const float *src, uint32_t frames)
{
    uint32_t room = st_ring_writable(r);
    if (frames > room)
        frames = room;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    st_ring_copy(r, head, (float *)src, frames, 1);
    atomic_store_explicit(&r->head, head + frames, memory_order_release);
    return frames;
}

/* Consumer side: read up to `frames`; returns frames read. */
static inline uint32_t st_ring_read(st_ring *r, float *dst, uint32_t frames)
{
    uint32_t avail = st_ring_readable(r);
    if (frames > avail)
        frames = avail;
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    st_ring_copy(r, tail, dst, frames, 0);
    atomic_store_explicit(&r->tail, tail + frames, memory_order_release);
    return frames;
}

/* ---- command queue ---------------------------------------------------------------------- */

enum st_cmd_kind { ST_CMD_SET_PARAM = 1, ST_CMD_BYPASS = 2, ST_CMD_RESET = 3 };

typedef struct {
    int32_t kind;
    int32_t stage;
    uint32_t param_id;
    float value; /* parameter value; for BYPASS: non-zero = bypass, zero = resume; RESET: unused */
} st_cmd;

#define ST_CMDQ_CAPACITY 256

typedef struct {
    st_cmd slots[ST_CMDQ_CAPACITY];
    _Atomic uint32_t head;
    _Atomic uint32_t tail;
} st_cmdq;

/* Producer side (one control thread at a time; _core.pyx serialises producers with the GIL). */
static inline int st_cmdq_push(st_cmdq *q, st_cmd cmd)
{
    uint32_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (head - tail >= ST_CMDQ_CAPACITY)
        return 0;
    q->slots[head & (ST_CMDQ_CAPACITY - 1)] = cmd;
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return 1;
}

static inline int st_cmdq_pop(st_cmdq *q, st_cmd *out)
{
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    if (head == tail)
        return 0;
    *out = q->slots[tail & (ST_CMDQ_CAPACITY - 1)];
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return 1;
}

#endif
