/* The block loop of the hot-path chain (see st_chain.h for the rules it lives by). */
#include "st_chain.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "st_fpu.h"
#include "stellatune_hotpath.h" /* the ABI's scratch offsets, flags, roles and codes */

static inline int st_hist_bucket(uint64_t ns)
{
    if (ns < 4)
        return (int)ns;
    int msb = 63 - __builtin_clzll(ns);
    int b = msb * 4 + (int)((ns >> (msb - 2)) & 3);
    return b < ST_HIST_BUCKETS ? b : ST_HIST_BUCKETS - 1;
}

void st_hist_record(uint64_t *hist, uint64_t ns) { hist[st_hist_bucket(ns)]++; }

static void st_stats_record(st_stage_stats *st, uint64_t ns)
{
    st->calls++;
    st->total_ns += ns;
    if (ns < st->min_ns)
        st->min_ns = ns;
    if (ns > st->max_ns)
        st->max_ns = ns;
    st->hist[st_hist_bucket(ns)]++;
}

void st_stage_reset_stats(st_stage *s)
{
    memset(&s->stats, 0, sizeof s->stats);
    s->stats.min_ns = UINT64_MAX;
}

/* ---- stage timer --------------------------------------------------------------------------- */

int st_clock_tsc = 0;
uint64_t st_clock_ns_per_tick_q32 = 1ull << 32; /* the fallback counts ns already */

#if defined(__x86_64__) || defined(__i386__)
/* An invariant TSC ticks at one rate whatever the core's frequency or sleep state. Hypervisors
 * often hide the CPUID bit while the kernel still reports the flags, so either will do. */
static int st_tsc_invariant(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)))
        return 1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0)
            found = strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
    fclose(f);
    return found;
}

/* Some hypervisors trap rdtsc, making it far slower than a vDSO clock read: time both. */
static int st_tsc_cheaper(void)
{
    enum { READS = 256 };
    volatile uint64_t sink = 0;
    uint64_t t0 = st_now_ns();
    for (int i = 0; i < READS; i++)
        sink += __rdtsc();
    uint64_t t1 = st_now_ns();
    for (int i = 0; i < READS; i++)
        sink += st_now_ns();
    uint64_t t2 = st_now_ns();
    (void)sink;
    return t1 - t0 < t2 - t1;
}

int st_clock_init(void)
{
    static int done = 0;
    if (done)
        return st_clock_tsc;
    done = 1;
    if (!st_tsc_invariant() || !st_tsc_cheaper())
        return 0;
    /* Calibrate against CLOCK_MONOTONIC over ~2 ms: a read's jitter is tens of ns, so the rate
     * comes out within a few parts in 10^5. */
    uint64_t n0 = st_now_ns(), c0 = __rdtsc();
    struct timespec pause = {0, 2000000};
    nanosleep(&pause, NULL);
    uint64_t n1 = st_now_ns(), c1 = __rdtsc();
    if (c1 <= c0 || n1 <= n0)
        return 0;
    double ns_per_tick = (double)(n1 - n0) / (double)(c1 - c0);
    if (ns_per_tick < 0.05 || ns_per_tick > 10.0) /* 100 MHz..20 GHz, else the TSC is not sane */
        return 0;
    st_clock_ns_per_tick_q32 = (uint64_t)(ns_per_tick * 4294967296.0 + 0.5);
    st_clock_tsc = 1;
    return 1;
}
#else
int st_clock_init(void) { return 0; }
#endif

/* ---- sample hygiene ------------------------------------------------------------------------ *
 * With a = bits & 0x7fffffff (|x| as an integer, ordered like |x|):
 *   NaN/Inf    <=> a >= 0x7f800000 (exponent all ones)  -> track max(a);
 *   subnormal  <=> 1 <= a <= 0x007fffff                  -> track min(a + 0x7fffffff): the add
 *     wraps 0 to INT32_MAX and moves subnormals to the bottom of the signed range, so one signed
 *     min finds them while +-0 stays out of the way.
 * Two accumulators per pass, no branch per sample; a 128x2 block is 32 AVX2 loads. */

typedef uint32_t __attribute__((may_alias)) st_bits;

static inline unsigned st_scan_result(int32_t hi, int32_t lo)
{
    return (hi >= 0x7f800000 ? ST_SAMPLES_NONFINITE : 0u) |
           (lo < INT32_MIN + 0x7fffff ? ST_SAMPLES_SUBNORMAL : 0u);
}

static inline void st_scan_scalar(const float *x, size_t n, int32_t *hi, int32_t *lo)
{
    const st_bits *u = (const st_bits *)x;
    for (size_t i = 0; i < n; i++) {
        int32_t a = (int32_t)(u[i] & 0x7fffffffu);
        int32_t b = (int32_t)((uint32_t)a + 0x7fffffffu);
        *hi = a > *hi ? a : *hi;
        *lo = b < *lo ? b : *lo;
    }
}

static unsigned st_scan_portable(const float *x, size_t n)
{
    int32_t hi = 0, lo = INT32_MAX;
    st_scan_scalar(x, n, &hi, &lo);
    return st_scan_result(hi, lo);
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
/* AVX2 (chosen at load time where the CPU has it): 8 samples per op, max/min accumulators. */
__attribute__((target("avx2"))) static unsigned st_scan_avx2(const float *x, size_t n)
{
    const __m256i abs = _mm256_set1_epi32(0x7fffffff);
    __m256i hi0 = _mm256_setzero_si256(), hi1 = hi0;
    __m256i lo0 = _mm256_set1_epi32(INT32_MAX), lo1 = lo0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) { /* two chains: max/min latency does not serialise the loop */
        __m256i a0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), abs);
        __m256i a1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), abs);
        hi0 = _mm256_max_epi32(hi0, a0);
        hi1 = _mm256_max_epi32(hi1, a1);
        lo0 = _mm256_min_epi32(lo0, _mm256_add_epi32(a0, abs));
        lo1 = _mm256_min_epi32(lo1, _mm256_add_epi32(a1, abs));
    }
    __m256i hi = _mm256_max_epi32(hi0, hi1), lo = _mm256_min_epi32(lo0, lo1);
    __m128i h = _mm_max_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
    __m128i l = _mm_min_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    l = _mm_min_epi32(l, _mm_shuffle_epi32(l, 0x4e));
    l = _mm_min_epi32(l, _mm_shuffle_epi32(l, 0xb1));
    int32_t hs = _mm_cvtsi128_si32(h), ls = _mm_cvtsi128_si32(l);
    st_scan_scalar(x + i, n - i, &hs, &ls); /* the tail (block sizes not a multiple of 8) */
    return st_scan_result(hs, ls);
}

/* SSE2 (every x86-64): no 32-bit max/min, so OR-reduce instead: a + 0x00800000 has its sign
 * bit set exactly for NaN/Inf, and a signed compare against the wrapped bound finds subnormals. */
static unsigned st_scan_sse2(const float *x, size_t n)
{
    const __m128i abs = _mm_set1_epi32(0x7fffffff);
    const __m128i exp_carry = _mm_set1_epi32(0x00800000);
    const __m128i sub_bound = _mm_set1_epi32(INT32_MIN + 0x7fffff);
    __m128i nf = _mm_setzero_si128(), sub = nf;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i a0 = _mm_and_si128(_mm_loadu_si128((const __m128i *)(x + i)), abs);
        __m128i a1 = _mm_and_si128(_mm_loadu_si128((const __m128i *)(x + i + 4)), abs);
        nf = _mm_or_si128(nf, _mm_or_si128(_mm_add_epi32(a0, exp_carry), _mm_add_epi32(a1, exp_carry)));
        sub = _mm_or_si128(sub, _mm_or_si128(_mm_cmpgt_epi32(sub_bound, _mm_add_epi32(a0, abs)),
                                             _mm_cmpgt_epi32(sub_bound, _mm_add_epi32(a1, abs))));
    }
    int32_t hs = _mm_movemask_ps(_mm_castsi128_ps(nf)) ? 0x7f800000 : 0;
    int32_t ls = _mm_movemask_ps(_mm_castsi128_ps(sub)) ? INT32_MIN : INT32_MAX;
    st_scan_scalar(x + i, n - i, &hs, &ls);
    return st_scan_result(hs, ls);
}

static unsigned (*st_scan_impl)(const float *, size_t) = st_scan_sse2;

/* Picked once when the extension loads, long before any chain runs. */
__attribute__((constructor)) static void st_scan_pick(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        st_scan_impl = st_scan_avx2;
}
#else
static unsigned (*st_scan_impl)(const float *, size_t) = st_scan_portable;
#endif

unsigned st_samples_scan(const float *x, size_t n) { return st_scan_impl(x, n); }

/* The rare paths below are plain loops: they run only after a scan found something. */
void st_samples_flush(float *x, size_t n)
{
    st_bits *u = (st_bits *)x;
    for (size_t i = 0; i < n; i++)
        if ((u[i] & 0x7f800000u) == 0)
            u[i] &= 0x80000000u; /* keep the sign: -1e-40 becomes -0 */
}

size_t st_samples_sanitize(float *x, size_t n)
{
    st_bits *u = (st_bits *)x;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t e = u[i] & 0x7f800000u;
        if (e == 0x7f800000u) {
            u[i] = 0;
            bad++;
        } else if (e == 0) {
            u[i] &= 0x80000000u;
        }
    }
    return bad;
}

size_t st_samples_first_nonfinite(const float *x, size_t n)
{
    const st_bits *u = (const st_bits *)x;
    for (size_t i = 0; i < n; i++)
        if ((u[i] & 0x7f800000u) == 0x7f800000u)
            return i;
    return n;
}

/* The chain's input: a decoder or a component stage may hand over NaN/Inf, which no stage
 * should see (a recursive filter would keep the NaN forever). Replaced by 0 and counted. */
static void st_chain_clean_input(st_chain *c, float *x, size_t n)
{
    if (st_samples_scan(x, n))
        c->input_nonfinite += st_samples_sanitize(x, n);
}

/* wasmtime's interrupt trap code, set once by _core.pyx from wasmtime.TrapCode.INTERRUPT. */
static uint8_t st_interrupt_code = 10;

void st_set_interrupt_code(uint8_t code) { st_interrupt_code = code; }

static void st_fault(st_stage *s, int kind, int32_t code, uint64_t block)
{
    s->fault_kind = kind;
    s->fault_code = code;
    s->fault_block = block;
    atomic_store_explicit(&s->faulted, 1, memory_order_release);
}

/* A call into wasm failed. A timeout skips the stage for this block only, unless it is the
 * timeout_limit-th in a row: the epoch deadline is wall-clock time, so a thread descheduled
 * inside the call times out as surely as a looping module, but only the loop repeats. A trap,
 * or the last timeout, bypasses the stage for good; its trap/error objects are kept for Python
 * to read the message later (formatting it here would allocate on the audio thread). */
static void st_call_failed(st_stage *s, wasmtime_error_t *err, wasm_trap_t *trap, uint64_t block)
{
    int kind = ST_FAULT_TRAP;
    uint8_t code = 0;
    int has_code = trap && st_wt.trap_code(trap, &code);
    if (has_code && code == st_interrupt_code) {
        kind = ST_FAULT_TIMEOUT;
        s->stats.timeouts++;
        if (++s->timeout_streak < s->timeout_limit) {
            /* wasmtime allocated these on this thread already; freeing them costs far less
             * than the deadline this block has overrun. */
            st_wt.trap_delete(trap);
            if (err)
                st_wt.error_delete(err);
            return;
        }
    }
    s->fault_trap = trap;
    s->fault_error = err;
    st_fault(s, kind, has_code ? code : -1, block);
}

/* Whether the stage's linear memory changed size since init. Checked once right after every
 * call into the module (process, set_param, reset), so a memory that never grew after any call
 * still has the size, and the base, that the block loop fetches before its call. */
static int st_memory_grew(st_stage *s)
{
    return st_wt.memory_data_size(s->ctx, &s->memory) != s->memory_size;
}

/* One unchecked call with up to 4 raw args; returns 0 and the i32 result, or -1 after a fault
 * (or a skipped block). A call that grew the memory faults the stage even when it succeeded. */
static int st_wasm_call(st_stage *s, const wasmtime_func_t *fn, wasmtime_val_raw_t *args,
                        size_t nargs, uint64_t block)
{
    if (s->deadline_ticks)
        st_wt.context_set_epoch_deadline(s->ctx, s->deadline_ticks);
    wasm_trap_t *trap = NULL;
    wasmtime_error_t *err = st_wt.func_call_unchecked(s->ctx, fn, args, nargs, &trap);
    if (err || trap) {
        st_call_failed(s, err, trap, block);
        /* A call skipped after a timeout may have grown the memory before the deadline hit. */
        if (!atomic_load_explicit(&s->faulted, memory_order_relaxed) && st_memory_grew(s))
            st_fault(s, ST_FAULT_MEMORY_GROW, 0, block);
        return -1;
    }
    if (st_memory_grew(s)) {
        st_fault(s, ST_FAULT_MEMORY_GROW, 0, block);
        return -1;
    }
    s->timeout_streak = 0;
    return 0;
}

int32_t st_stage_set_param(st_stage *s, uint32_t id, float value, uint64_t block)
{
    if (atomic_load_explicit(&s->faulted, memory_order_acquire) || !s->has_set_param)
        return -1;
    if (s->is_native) {
        int32_t rc = s->native_set_param(s->guest_ctx, id, value);
        if (rc != 0)
            s->stats.rejected_params++;
        return rc;
    }
    wasmtime_val_raw_t args[3];
    args[0].i32 = (int32_t)s->guest_ctx;
    args[1].i32 = (int32_t)id;
    args[2].f32 = value;
    if (st_wasm_call(s, &s->set_param_fn, args, 3, block) != 0)
        return -1;
    /* A non-zero status rejects the value (e.g. out of range); the stage keeps running. */
    int32_t rc = s->set_param_results ? args[0].i32 : 0;
    if (rc != 0)
        s->stats.rejected_params++;
    return rc;
}

int32_t st_stage_reset(st_stage *s, uint64_t block)
{
    if (atomic_load_explicit(&s->faulted, memory_order_acquire) || !s->has_reset)
        return -1;
    int32_t rc;
    if (s->is_native) {
        rc = s->native_reset(s->guest_ctx, 0);
    } else {
        wasmtime_val_raw_t args[2];
        args[0].i32 = (int32_t)s->guest_ctx;
        args[1].i32 = 0; /* flags: none defined in ABI v1 */
        if (st_wasm_call(s, &s->reset_fn, args, 2, block) != 0)
            return -1;
        rc = args[0].i32;
    }
    if (rc == 0)
        s->stats.resets++;
    return rc;
}

/* One block through one stage. `*block` points at the block's current contents: the chain's
 * buffer, or the output region of the previous live stage (read straight from there, saving a
 * copy per boundary). Returns 0 when the stage processed the block (the caller times it; a DSP
 * stage then points `*block` at its own output region and `*block_base` at its memory), -1 when
 * it faulted or skipped the block (which then passes on unchanged). */
static int st_stage_run(st_chain *c, st_stage *s, const float **block, uint8_t **block_base,
                        float *buf, uint32_t frames)
{
    size_t bytes = (size_t)frames * c->channels * sizeof(float);
    uint32_t at_frames = s->scratch_offset + ST_HOT_SCRATCH_OUT_FRAMES;
    uint32_t at_flags = s->scratch_offset + ST_HOT_SCRATCH_OUT_FLAGS;
    /* wasm: the base can move after a memory.grow, so it is fetched every block; the size was
     * checked after the stage's last call (st_wasm_call), so this base is the current one. */
    uint8_t *base = s->is_native ? s->native_base : st_wt.memory_data(s->ctx, &s->memory);
    if (*block_base == base) {
        /* The block sits in this stage's own memory, which its call may overwrite; should the
         * stage then fault, the block must still pass on intact, so move it out first. */
        memcpy(buf, *block, bytes);
        *block = buf;
        *block_base = NULL;
    }
    memcpy(base + s->in_offset, *block, bytes);
    uint32_t zero = 0;
    memcpy(base + at_frames, &zero, 4);
    memcpy(base + at_flags, &zero, 4);

    int32_t rc;
    if (s->is_native) {
        rc = s->native_process(s->guest_ctx, frames, at_frames, at_flags);
    } else {
        wasmtime_val_raw_t args[4];
        args[0].i32 = (int32_t)s->guest_ctx;
        args[1].i32 = (int32_t)frames;
        args[2].i32 = (int32_t)at_frames;
        args[3].i32 = (int32_t)at_flags;
        if (st_wasm_call(s, &s->process_fn, args, 4, c->blocks) != 0)
            return -1;
        rc = args[0].i32;
    }

    if (rc != 0) {
        if (rc == ST_HOT_ERR_WOULD_BLOCK && s->role == ST_HOT_ROLE_OUTPUT_SINK) {
            /* A full sink consumed nothing this block: a state the ABI allows, not a fault. */
            s->stats.short_frames += frames;
            return 0;
        }
        st_fault(s, ST_FAULT_ERROR_CODE, rc, c->blocks);
        return -1;
    }
    uint32_t out_frames, flags;
    memcpy(&out_frames, base + at_frames, 4);
    memcpy(&flags, base + at_flags, 4);
    if (flags & ST_HOT_FLAG_SOFT_ERROR)
        s->stats.soft_errors++;
    if (s->role == ST_HOT_ROLE_DSP_TRANSFORM) {
        if (out_frames != frames) {
            st_fault(s, ST_FAULT_BAD_FRAMES, (int32_t)out_frames, c->blocks);
            return -1;
        }
        /* The output must be finite before anything downstream sees it. A NaN/Inf faults the
         * stage like a trap: `*block` still points at this stage's input, which lives outside
         * its memory (moved to buf above otherwise), so the input passes on intact. Subnormal
         * bit patterns are zeroed in the out region (the block handed on, nothing else). */
        float *out = (float *)(base + s->out_offset);
        size_t n = (size_t)frames * c->channels;
        unsigned found = st_samples_scan(out, n);
        if (found & ST_SAMPLES_NONFINITE) {
            st_fault(s, ST_FAULT_NON_FINITE, (int32_t)st_samples_first_nonfinite(out, n), c->blocks);
            return -1;
        }
        if (found & ST_SAMPLES_SUBNORMAL)
            st_samples_flush(out, n);
        *block = out;
        *block_base = base;
    } else if (out_frames > frames) {
        st_fault(s, ST_FAULT_BAD_FRAMES, (int32_t)out_frames, c->blocks);
        return -1;
    } else {
        s->stats.short_frames += frames - out_frames;
    }
    return 0;
}

void st_chain_apply_commands(st_chain *c)
{
    st_cmd cmd;
    while (st_cmdq_pop(&c->cmds, &cmd)) {
        if (cmd.stage < 0 || cmd.stage >= c->n_stages)
            continue;
        st_stage *s = c->stages[cmd.stage];
        if (cmd.kind == ST_CMD_SET_PARAM)
            st_stage_set_param(s, cmd.param_id, cmd.value, c->blocks);
        else if (cmd.kind == ST_CMD_BYPASS)
            s->user_bypass = cmd.value != 0.0f;
        else if (cmd.kind == ST_CMD_RESET)
            st_stage_reset(s, c->blocks);
    }
}

void st_chain_process(st_chain *c, float *buf, uint32_t frames)
{
    st_fpu_state fpu = st_fpu_flush_denormals();
    st_chain_apply_commands(c);
    while (frames > 0) {
        uint32_t n = frames < c->max_block ? frames : c->max_block;
        /* One timer read per stage boundary (N live stages: N + 1 reads; none when every stage
         * is bypassed): a stage's time is from the end of the previous one to its own end,
         * copies included. */
        uint64_t t = 0;
        st_chain_clean_input(c, buf, (size_t)n * c->channels);
        const float *block = buf;
        uint8_t *block_base = NULL; /* the memory `block` lives in; NULL: buf itself */
        for (int i = 0; i < c->n_stages; i++) {
            st_stage *s = c->stages[i];
            if (s->user_bypass || atomic_load_explicit(&s->faulted, memory_order_relaxed))
                continue; /* bypassed: the block passes through unchanged */
            if (t == 0)
                t = st_ticks();
            int ran = st_stage_run(c, s, &block, &block_base, buf, n);
            uint64_t t1 = st_ticks();
            if (ran == 0)
                st_stats_record(&s->stats, st_ticks_to_ns(t, t1));
            t = t1;
        }
        /* The last DSP stage's output, copied back once (untimed: it belongs to no stage). */
        if (block != buf)
            memcpy(buf, block, (size_t)n * c->channels * sizeof(float));
        c->blocks++;
        buf += (size_t)n * c->channels;
        frames -= n;
    }
    st_fpu_restore(fpu);
}

uint64_t st_chain_time(st_chain *c, float *buf, const float *src, uint32_t frames,
                       uint32_t iterations, int run_chain)
{
    size_t bytes = (size_t)frames * c->channels * sizeof(float);
    uint64_t t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++) {
        memcpy(buf, src, bytes);
        if (run_chain)
            st_chain_process(c, buf, frames);
    }
    return st_now_ns() - t0;
}

/* ---- epoch ticker ----------------------------------------------------------------------- */

static void *st_ticker_main(void *arg)
{
    st_ticker *t = arg;
    uint64_t period_ns = (uint64_t)t->period_us * 1000u;
    uint64_t next = st_now_ns();
    while (atomic_load_explicit(&t->running, memory_order_acquire)) {
        next += period_ns;
        struct timespec ts = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        uint64_t now = st_now_ns();
        if (now > next + period_ns)
            next = now; /* woke late (descheduled): resync rather than burst the missed ticks */
        st_wt.engine_increment_epoch(t->engine);
    }
    return NULL;
}

int st_ticker_start(st_ticker *t, wasm_engine_t *engine, uint32_t period_us)
{
    t->engine = engine;
    t->period_us = period_us;
    atomic_store(&t->running, 1);
    if (pthread_create(&t->thread, NULL, st_ticker_main, t) != 0) {
        atomic_store(&t->running, 0);
        return -1;
    }
    return 0;
}

void st_ticker_stop(st_ticker *t)
{
    if (!atomic_exchange(&t->running, 0))
        return;
    pthread_join(t->thread, NULL);
}
