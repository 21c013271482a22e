/* The hot-path chain: N core-module stages processing interleaved float32 blocks in place.
 *
 * Everything here may run on the audio thread: no allocation, no locks, no Python, no I/O.
 * Stages are built and freed by _core.pyx on a control thread while no block is running. */
#ifndef ST_CHAIN_H
#define ST_CHAIN_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "st_ring.h"
#include "st_wasmtime.h"

enum st_fault_kind {
    ST_FAULT_NONE = 0,
    ST_FAULT_TRAP = 1,        /* the module trapped (unreachable, out of bounds, ...) */
    ST_FAULT_TIMEOUT = 2,     /* epoch deadline passed on timeout_limit blocks in a row */
    ST_FAULT_BAD_FRAMES = 3,  /* a DSP stage reported out_frames != frames */
    ST_FAULT_MEMORY_GROW = 4, /* linear memory size changed after init */
    ST_FAULT_ERROR_CODE = 5,  /* process/set_param returned a non-zero ABI error code */
    ST_FAULT_NON_FINITE = 6,  /* a DSP stage's output block held a NaN or an infinity */
};

/* ---- sample hygiene at stage boundaries --------------------------------------------------
 * No NaN/Inf may reach an output (a NaN poisons every recursive filter after it and a device
 * plays Inf as full-scale noise), and no subnormal bit pattern may leave a stage (FTZ/DAZ only
 * covers arithmetic; a module can store the bits directly). One read-only pass per block finds
 * both; a subnormal (rare) costs a second, writing pass. Safe on any thread: no allocation. */
#define ST_SAMPLES_NONFINITE 1u /* some sample is NaN or +-Inf */
#define ST_SAMPLES_SUBNORMAL 2u /* some sample is a non-zero subnormal */

/* Which of the two the `n` samples at x hold (0: all finite and normal or zero). */
unsigned st_samples_scan(const float *x, size_t n);
/* Replace each subnormal by a zero of the same sign, in place. */
void st_samples_flush(float *x, size_t n);
/* Replace NaN/Inf by 0 and subnormals by a signed zero, in place; returns how many were NaN/Inf. */
size_t st_samples_sanitize(float *x, size_t n);
/* Index of the first NaN/Inf among the n samples (n when there is none). */
size_t st_samples_first_nonfinite(const float *x, size_t n);

/* The block loop's check, fused into the copies it makes anyway (st_chain.c): copy n samples
 * from src to dst, zeroing subnormals in dst (keeping the sign), and return
 * ST_SAMPLES_NONFINITE when a source sample is NaN/Inf (0 otherwise; subnormals are not
 * reported). dst may equal src (in place); the two must not otherwise overlap. */
unsigned st_samples_copy_check(float *dst, const float *src, size_t n);
/* The same, exactly as the block loop runs it (its FTZ|DAZ set around the call: tests). */
unsigned st_samples_copy_check_daz(float *dst, const float *src, size_t n);
/* Whether any of the n samples is NaN/Inf: a read-only pass, cheaper than st_samples_scan. */
int st_samples_any_nonfinite(const float *x, size_t n);

/* The check's cost per block for a chain of one DSP stage, as the block loop pays it: the
 * fused copy of the chain's input into the stage (the input clean), the test of its output
 * (whose fallback, its input, is `buf` itself) and the flushing copy back. `iterations` times,
 * over `n` samples: buf -> in, then out -> buf; checked = 0 does the same with plain memcpy.
 * Returns the total nanoseconds (the benchmark's figure is the difference of the two). */
uint64_t st_check_time(float *buf, float *in, const float *out, size_t n, uint32_t iterations,
                       int checked);

/* CLOCK_MONOTONIC in ns: the one clock every timing here uses (vDSO, so no syscall). */
static inline uint64_t st_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The per-stage timer of the block loop: the invariant TSC where the CPU has one (a few ns a
 * read, against ~25 for clock_gettime on a VM), else CLOCK_MONOTONIC. st_clock_init picks one
 * and calibrates ticks to ns; until it runs, the fallback is used. Stats stay in ns. */
extern int st_clock_tsc;
extern uint64_t st_clock_ns_per_tick_q32; /* ns per tick in 32.32 fixed point */

/* Pick and calibrate the stage timer (~2 ms); returns 1 when the TSC is used. Idempotent. */
int st_clock_init(void);

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t st_ticks(void) { return st_clock_tsc ? __rdtsc() : st_now_ns(); }
#else
static inline uint64_t st_ticks(void) { return st_now_ns(); }
#endif

/* Nanoseconds between two st_ticks() reads; 0 if the second is earlier (a TSC read on another
 * core can be a few ticks behind). */
static inline uint64_t st_ticks_to_ns(uint64_t t0, uint64_t t1)
{
    if (t1 <= t0)
        return 0;
    return (uint64_t)(((unsigned __int128)(t1 - t0) * st_clock_ns_per_tick_q32) >> 32);
}

/* 4 buckets per octave of nanoseconds: bucket b covers [2^(b/4), 2^((b+1)/4)) ns; 128 buckets
 * reach ~4 s, far beyond any sane block. */
#define ST_HIST_BUCKETS 128

typedef struct {
    uint64_t calls;
    uint64_t total_ns;
    uint64_t min_ns;
    uint64_t max_ns;
    uint64_t soft_errors; /* SOFT_ERROR flag raised: counted, block kept */
    uint64_t short_frames; /* sink stages: frames offered but not consumed */
    uint64_t rejected_params; /* set_param calls the module refused (non-zero status) */
    uint64_t timeouts; /* blocks skipped because the call overran its deadline */
    uint64_t resets;   /* st_hot_reset calls that returned 0 */
    uint64_t sink_frames;   /* sink stages: frames consumed */
    uint64_t dropped_frames; /* sink stages: frames lost (the caller ignored back-pressure) */
    uint64_t hist[ST_HIST_BUCKETS];
} st_stage_stats;

typedef int32_t (*st_native_process_fn)(uint32_t ctx, uint32_t frames, uint32_t out_frames_ptr,
                                        uint32_t out_flags_ptr);
typedef int32_t (*st_native_set_param_fn)(uint32_t ctx, uint32_t id, float value);
typedef int32_t (*st_native_reset_fn)(uint32_t ctx, uint32_t flags);

typedef struct st_stage {
    int is_native;
    int role; /* 1 dsp-transform, 2 output-sink */
    uint32_t guest_ctx;
    uint32_t in_offset, out_offset, scratch_offset;
    uint32_t channels, max_frames;

    /* wasm stages: raw handles copied from wasmtime-py's objects (the store outlives us). */
    wasmtime_context_t *ctx;
    wasmtime_func_t process_fn;
    wasmtime_func_t set_param_fn;
    int has_set_param;
    int set_param_results; /* 0 or 1 (an i32 status) */
    wasmtime_func_t reset_fn;
    int has_reset;
    wasmtime_memory_t memory;
    size_t memory_size;      /* bytes after init: any change is a memory.grow fault */
    /* Epoch ticks per call (0 = interruption off). Python sets it while no chain runs the stage:
     * the live budget for playback, a generous one offline (a descheduled thread is not a
     * looping module). */
    uint64_t deadline_ticks;
    /* A timeout skips the stage for that block only; this many in a row bypass it for good. */
    uint32_t timeout_limit;
    uint32_t timeout_streak;

    /* native stages: the same kernel compiled to a shared object. */
    st_native_process_fn native_process;
    st_native_set_param_fn native_set_param;
    st_native_reset_fn native_reset;

    /* Where the stage's memory starts: the .so's static arena, or the wasm linear memory's base,
     * read once when the stage is made (st_stage_bind_memory). Fetching it per block cost ~8 ns
     * a stage; caching it is sound because the base can only move on a memory.grow, and a grow
     * faults the stage for good (checked after every call), so a moved base is never used. The
     * hot-path engine also sets memory_may_move = false, so wasmtime never moves it at all. */
    uint8_t *base;

    /* Written by the audio thread; `faulted` is published last (release) so a reader who sees it
     * also sees the rest. */
    int user_bypass;
    _Atomic int faulted;
    int fault_kind;
    int32_t fault_code;
    uint64_t fault_block;
    wasm_trap_t *fault_trap;       /* owned; its message is copied out by Python */
    wasmtime_error_t *fault_error; /* owned; likewise */
    st_stage_stats stats;

    /* Flags of the last process call (ST_HOT_FLAG_*); NEED_RESET resets before the next one. */
    _Atomic uint32_t last_flags;
    int need_reset;
    /* Output sinks: frames offered but not taken, kept (in order) and offered again before
     * anything newer (back-pressure). Allocated by the control thread; NULL: not kept. */
    float *pend;
    uint32_t pend_cap; /* frames */
    _Atomic uint32_t pend_frames;
    /* Optional ABI v1 extension (docs/hot-path-abi.md, "State carry"), wasm stages only. */
    int has_state;
    wasmtime_func_t state_size_fn, export_state_fn, state_staging_fn, import_state_fn;
} st_stage;

typedef struct st_chain {
    st_stage **stages;
    int n_stages;
    uint32_t channels;
    uint32_t max_block; /* largest block every stage accepts */
    uint64_t blocks;
    /* Samples of the chain's own input (a decoder's, a component stage's) that were NaN/Inf and
     * were replaced by 0 before the first stage; written by the thread running the chain. */
    uint64_t input_nonfinite;
    st_cmdq cmds;
    /* A recreate swap: slot xf_index runs xf_old too, on the same input, for xf_len frames,
     * the two outputs mixed with equal-power (cos/sin) gains; xf_in/xf_out hold max_block
     * frames each (allocated by the control thread). xf_carry: carry the old stage's state into
     * the new one before the first faded block (its result in xf_carry_rc). */
    st_stage *xf_old;
    int xf_index;
    uint32_t xf_len, xf_pos;
    int xf_carry;
    int32_t xf_carry_rc;
    _Atomic int xf_done;
    float *xf_in, *xf_out;
} st_chain;

/* What one stage call costs, in parts (st_stage_time_calls, for the benchmark): the call as the
 * block loop makes it (wasm: deadline set, call, grow check), a stage-timer read, and for wasm
 * the bare wasmtime call, the grow check and the deadline set alone. Total ns over `iterations`
 * per part (0 where not applicable); returns -1 (nothing timed past that part) if the stage is
 * or becomes faulted. Control thread, stage idle (in no running chain). */
enum { ST_CALL_WHOLE, ST_CALL_TIMER, ST_CALL_ENTRY, ST_CALL_GROW_CHECK, ST_CALL_DEADLINE, ST_CALL_PARTS };
int st_stage_time_calls(st_stage *s, uint32_t frames, uint32_t iterations, uint64_t out_ns[ST_CALL_PARTS]);

void st_stage_reset_stats(st_stage *s);

/* A wasm stage: read its memory's base into s->base (once ctx and memory are set). */
void st_stage_bind_memory(st_stage *s);

/* wasmtime's trap code for an epoch interrupt (from wasmtime.TrapCode.INTERRUPT). */
void st_set_interrupt_code(uint8_t code);

/* Call set_param now (control thread, chain idle; or audio thread via the command queue).
 * Returns the module's status (0 ok; a refusal is counted, not a fault), or -1 when the stage
 * has faulted, lacks the export, or faulted during this call. */
int32_t st_stage_set_param(st_stage *s, uint32_t id, float value, uint64_t block);

/* Call st_hot_reset(ctx, 0) now (same threading rules as st_stage_set_param). Returns the
 * module's status, or -1 when the stage has faulted, lacks the export, or faulted now. */
int32_t st_stage_reset(st_stage *s, uint64_t block);

/* State carry (optional ABI extension): export `from`'s state image, copy it into `to`'s staging
 * area and import it there. Returns the import's status, -1 when a call faulted, -2 when either
 * stage lacks the exports (or is native), 2 when `to` has no room. Between blocks only. */
int32_t st_stage_carry_state(st_stage *from, st_stage *to, uint64_t block);

/* Run a crossfade's pending state carry now (the chain is about to run; between blocks). */
void st_chain_xfade_carry(st_chain *c);

/* Back-pressure (sinks): frames kept for the live sinks of the chain (0: none). */
uint32_t st_chain_sink_pending(st_chain *c);
/* Offer every live sink its kept frames once (one process call each). */
void st_chain_offer_pending(st_chain *c);
/* Drop the kept frames (a flush: they belong to the old position). */
void st_chain_drop_pending(st_chain *c);
/* At the end of the stream: ask each live sink with nothing kept for its flags with a
 * zero-frame process call (a drain poll; docs/hot-path-abi.md). */
void st_chain_poll_sinks(st_chain *c);
/* 1 when every live sink has nothing kept and last reported DRAINED (or EOF); 1 with no sinks. */
int st_chain_sinks_drained(st_chain *c);

/* Apply every queued command, in order. st_chain_process does this before each call; the
 * control thread calls it once the chain's driver has stopped, so a command queued after the
 * last block is neither lost nor applied later over a newer idle-time change. */
void st_chain_apply_commands(st_chain *c);

/* Process `frames` interleaved frames of buf in place through every live stage, draining the
 * command queue first. Splits into sub-blocks of at most max_block frames. */
void st_chain_process(st_chain *c, float *buf, uint32_t frames);

/* `iterations` times: copy `src` into `buf`, then st_chain_process(c, buf, frames) unless
 * `run_chain` is 0 (to time the copies alone). Returns the total nanoseconds. */
uint64_t st_chain_time(st_chain *c, float *buf, const float *src, uint32_t frames,
                       uint32_t iterations, int run_chain);

/* The log-bucket histogram both stage and callback timings use. */
void st_hist_record(uint64_t *hist, uint64_t ns);

/* ---- epoch ticker: a C thread that advances the hot-path engine's epoch ---------------- *
 * Users (a running chain, a control call into a module) acquire and release it. The thread
 * starts with the first user and lingers for ST_TICKER_LINGER_TICKS after the last one leaves,
 * so the handful of control calls that build a stage reuse one thread instead of creating and
 * joining one per call (a join used to wait out the thread's sleep: ~0.4 ms a call). It sleeps
 * on a condition variable, so st_ticker_close wakes it at once. It advances the epoch at most
 * once per wake-up: after a stall (the thread was descheduled) it resynchronises instead of
 * bursting the missed ticks, which would expire every running call's deadline at once. */

#define ST_TICKER_LINGER_TICKS 250u

typedef struct {
    wasm_engine_t *engine; /* the thread's own reference (wasmtime_engine_clone), while it runs */
    uint32_t period_us;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int ready;    /* lock and wake initialised */
    int alive;    /* the thread runs (under lock) */
    int joinable; /* a thread was created and not joined yet */
    int closing;
    uint32_t users;
    pthread_t thread;
} st_ticker;

int st_ticker_acquire(st_ticker *t, wasm_engine_t *engine, uint32_t period_us);
void st_ticker_release(st_ticker *t);
/* Stop the thread now and free the ticker's resources (its owner is being freed). */
void st_ticker_close(st_ticker *t);
/* Whether the thread is running (for tests of the linger). */
int st_ticker_alive(st_ticker *t);

#endif
