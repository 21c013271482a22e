/* The block loop of the hot-path chain (see st_chain.h for the rules it lives by). */
#include "st_chain.h"

#include <math.h>
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

void st_stage_bind_memory(st_stage *s) { s->base = st_wt.memory_data(s->ctx, &s->memory); }

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

/* ---- the check fused into the block loop's copies ---------------------------------------- *
 * Every block the loop hands on is copied anyway (into the next stage's in region, or back to
 * the caller's buffer), so the check rides on that copy: per 8 samples one `x - x` (NaN for
 * NaN/Inf, +-0 otherwise) OR-ed into an accumulator, and the store goes through `x * 1.0f`,
 * which under DAZ (st_chain_process sets FTZ|DAZ) turns a subnormal into a zero of its sign and
 * leaves every other value's bits alone. The copy is store-bound; the two float ops hide behind
 * the stores. Without DAZ (a caller outside the chain, a non-x86 CPU) the integer variant masks
 * subnormals and compares exponents instead. */

static unsigned st_copy_scalar(float *dst, const float *src, size_t n)
{
    const st_bits *s = (const st_bits *)src;
    st_bits *d = (st_bits *)dst;
    uint32_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = s[i], e = u & 0x7f800000u;
        nf |= e == 0x7f800000u;
        d[i] = e ? u : (u & 0x80000000u);
    }
    return nf ? ST_SAMPLES_NONFINITE : 0u;
}

static int st_any_nonfinite_scalar(const float *x, size_t n)
{
    return st_samples_first_nonfinite(x, n) != n;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
#define ST_MXCSR_DAZ 0x0040u

/* A 1.0f the compiler cannot see through: it must not fold `x * 1.0f` into `x` (the product is
 * what flushes a subnormal under DAZ). */
#define ST_OPAQUE(v) __asm__("" : "+x"(v))

__attribute__((target("avx2"))) static unsigned st_copy_avx2(float *dst, const float *src, size_t n)
{
    __m256 one = _mm256_set1_ps(1.0f);
    ST_OPAQUE(one);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) { /* 4 vectors a turn, like memcpy: the loop is store-bound */
        __m256 x0 = _mm256_loadu_ps(src + i), x1 = _mm256_loadu_ps(src + i + 8);
        __m256 x2 = _mm256_loadu_ps(src + i + 16), x3 = _mm256_loadu_ps(src + i + 24);
        a0 = _mm256_or_ps(a0, _mm256_or_ps(_mm256_sub_ps(x0, x0), _mm256_sub_ps(x1, x1)));
        a1 = _mm256_or_ps(a1, _mm256_or_ps(_mm256_sub_ps(x2, x2), _mm256_sub_ps(x3, x3)));
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(x0, one));
        _mm256_storeu_ps(dst + i + 8, _mm256_mul_ps(x1, one));
        _mm256_storeu_ps(dst + i + 16, _mm256_mul_ps(x2, one));
        _mm256_storeu_ps(dst + i + 24, _mm256_mul_ps(x3, one));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 x0 = _mm256_loadu_ps(src + i);
        a0 = _mm256_or_ps(a0, _mm256_sub_ps(x0, x0));
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(x0, one));
    }
    __m256 a = _mm256_or_ps(a0, a1);
    unsigned nf = _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)) ? ST_SAMPLES_NONFINITE : 0u;
    return i == n ? nf : nf | st_copy_scalar(dst + i, src + i, n - i);
}

__attribute__((target("avx2"))) static int st_any_nonfinite_avx2(const float *x, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
        a0 = _mm256_or_ps(a0, _mm256_sub_ps(x0, x0));
        a1 = _mm256_or_ps(a1, _mm256_sub_ps(x1, x1));
        a2 = _mm256_or_ps(a2, _mm256_sub_ps(x2, x2));
        a3 = _mm256_or_ps(a3, _mm256_sub_ps(x3, x3));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 x0 = _mm256_loadu_ps(x + i);
        a0 = _mm256_or_ps(a0, _mm256_sub_ps(x0, x0));
    }
    __m256 a = _mm256_or_ps(_mm256_or_ps(a0, a1), _mm256_or_ps(a2, a3));
    if (_mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)))
        return 1;
    return i < n && st_any_nonfinite_scalar(x + i, n - i);
}

static unsigned st_copy_sse2(float *dst, const float *src, size_t n)
{
    __m128 one = _mm_set1_ps(1.0f);
    ST_OPAQUE(one);
    __m128 a0 = _mm_setzero_ps(), a1 = a0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 x0 = _mm_loadu_ps(src + i), x1 = _mm_loadu_ps(src + i + 4);
        a0 = _mm_or_ps(a0, _mm_sub_ps(x0, x0));
        a1 = _mm_or_ps(a1, _mm_sub_ps(x1, x1));
        _mm_storeu_ps(dst + i, _mm_mul_ps(x0, one));
        _mm_storeu_ps(dst + i + 4, _mm_mul_ps(x1, one));
    }
    __m128 a = _mm_or_ps(a0, a1);
    unsigned nf = _mm_movemask_ps(_mm_cmpunord_ps(a, a)) ? ST_SAMPLES_NONFINITE : 0u;
    return nf | st_copy_scalar(dst + i, src + i, n - i);
}

static int st_any_nonfinite_sse2(const float *x, size_t n)
{
    __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
        __m128 x2 = _mm_loadu_ps(x + i + 8), x3 = _mm_loadu_ps(x + i + 12);
        a0 = _mm_or_ps(a0, _mm_sub_ps(x0, x0));
        a1 = _mm_or_ps(a1, _mm_sub_ps(x1, x1));
        a2 = _mm_or_ps(a2, _mm_sub_ps(x2, x2));
        a3 = _mm_or_ps(a3, _mm_sub_ps(x3, x3));
    }
    __m128 a = _mm_or_ps(_mm_or_ps(a0, a1), _mm_or_ps(a2, a3));
    return _mm_movemask_ps(_mm_cmpunord_ps(a, a)) || st_any_nonfinite_scalar(x + i, n - i);
}

static unsigned (*st_copy_impl)(float *, const float *, size_t) = st_copy_sse2;
static int (*st_any_nonfinite_impl)(const float *, size_t) = st_any_nonfinite_sse2;

__attribute__((constructor)) static void st_copy_pick(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        st_copy_impl = st_copy_avx2;
        st_any_nonfinite_impl = st_any_nonfinite_avx2;
    }
}

/* The block loop's copy: st_chain_process has set FTZ|DAZ (st_fpu.h), so no MXCSR read here (on
 * this machine `stmxcsr` costs ~5 ns, a third of the copy). */
static inline unsigned st_copy_daz(float *dst, const float *src, size_t n)
{
    return st_copy_impl(dst, src, n);
}

unsigned st_samples_copy_check(float *dst, const float *src, size_t n)
{
    /* Any caller: the float path is exact only under DAZ, so look first. */
    if (_mm_getcsr() & ST_MXCSR_DAZ)
        return st_copy_impl(dst, src, n);
    return st_copy_scalar(dst, src, n);
}

int st_samples_any_nonfinite(const float *x, size_t n) { return st_any_nonfinite_impl(x, n); }
#else
unsigned st_samples_copy_check(float *dst, const float *src, size_t n)
{
    return st_copy_scalar(dst, src, n);
}

int st_samples_any_nonfinite(const float *x, size_t n) { return st_any_nonfinite_scalar(x, n); }

static inline unsigned st_copy_daz(float *dst, const float *src, size_t n)
{
    return st_copy_scalar(dst, src, n);
}
#endif

/* The chain's input when no stage copied it (every stage bypassed, or the block never left buf):
 * a decoder or a component stage may hand over NaN/Inf, which must not reach the output.
 * Replaced by 0 and counted; subnormals flushed. */
static void st_chain_clean_input(st_chain *c, float *x, size_t n)
{
    if (st_samples_scan(x, n))
        c->input_nonfinite += st_samples_sanitize(x, n);
}

static void st_fault(st_stage *s, int kind, int32_t code, uint64_t block);

/* Where the block is between stages, and what is still unchecked about it. */
typedef struct {
    const float *src;     /* the block's current contents */
    uint8_t *base;        /* the memory src lives in; NULL: the chain's buffer */
    int raw;              /* src is the chain's own input in buf, not yet checked */
    /* The DSP stage that wrote src, while its output is unchecked (NULL once checked), with its
     * input: checked, and outside that stage's memory, so intact whatever the call did. */
    st_stage *prod;
    const float *prod_in;
    uint8_t *prod_in_base;
    uint64_t prod_ns; /* its time, recorded once its output passes (a faulted block is no call) */
} st_flow;

/* The pending producer's output held a NaN/Inf: fault it, and the block is its input again. */
static void st_flow_fault(st_chain *c, st_flow *f, size_t n)
{
    st_fault(f->prod, ST_FAULT_NON_FINITE, (int32_t)st_samples_first_nonfinite(f->src, n), c->blocks);
    f->src = f->prod_in;
    f->base = f->prod_in_base;
    f->prod = NULL;
}

/* Hand the block on: copy it into dst, checked (no NaN/Inf) and flushed (no subnormal), in one
 * pass. Raw chain input with a NaN/Inf is sanitized in buf (counted) and copied again; a
 * producer's output with one faults the producer and its input is copied instead. Afterwards
 * f->src holds the block dst got (checked; it may still hold subnormal bits at its source,
 * which every later copy flushes). */
static void st_pass(st_chain *c, st_flow *f, float *dst, size_t n)
{
    st_stage *prod = f->prod;
    if (prod && dst == f->prod_in) {
        /* dst is the producer's fallback itself (the copy back into buf when its input was buf):
         * overwriting it before the test would lose the input, so test first (read-only). */
        if (st_samples_any_nonfinite(f->src, n))
            st_flow_fault(c, f, n);
        st_copy_daz(dst, f->src, n); /* in place after a fault: flushes only */
    } else if (st_copy_daz(dst, f->src, n) & ST_SAMPLES_NONFINITE) {
        if (prod) {
            st_flow_fault(c, f, n);
            st_copy_daz(dst, f->src, n);
        } else {
            /* The raw input (the only other unchecked block): cleaned where it lies, since a
             * stage that faults later passes it on from there. */
            c->input_nonfinite += st_samples_sanitize((float *)f->src, n);
            memcpy(dst, f->src, n * sizeof(float));
        }
    }
    if (f->prod) {
        st_stats_record(&f->prod->stats, f->prod_ns);
        f->prod = NULL;
    }
    f->raw = 0;
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

/* One block through one stage. `f->src` points at the block's current contents: the chain's
 * buffer, or the output region of the previous live DSP stage (read straight from there, saving
 * a copy per boundary). The copy into this stage's in region is also the check of the block
 * (st_pass), which settles the previous producer. Returns 0 when the stage processed the block
 * (a DSP stage then becomes the pending producer: `f->src` is its output region, unchecked), -1
 * when it faulted or skipped the block (which then passes on unchanged). */
/* Keep `frames` frames at src (checked) behind what the sink already keeps; what does not fit
 * is lost and counted (only when the caller offers new blocks despite back-pressure). src may
 * lie inside s->pend itself (the kept frames offered again). */
static void st_sink_keep(st_stage *s, const float *src, uint32_t frames)
{
    if (!s->pend) {
        s->stats.dropped_frames += frames;
        return;
    }
    uint32_t have = atomic_load_explicit(&s->pend_frames, memory_order_relaxed);
    uint32_t room = s->pend_cap - have;
    uint32_t take = frames < room ? frames : room;
    memmove(s->pend + (size_t)have * s->channels, src, (size_t)take * s->channels * sizeof(float));
    s->stats.dropped_frames += frames - take;
    atomic_store_explicit(&s->pend_frames, have + take, memory_order_release);
}

/* The raw arguments of st_hot_process(ctx, frames, out_frames_ptr, out_flags_ptr). */
static inline void st_process_args(wasmtime_val_raw_t args[4], const st_stage *s, uint32_t frames,
                                   uint32_t at_frames, uint32_t at_flags)
{
    args[0].i32 = (int32_t)s->guest_ctx;
    args[1].i32 = (int32_t)frames;
    args[2].i32 = (int32_t)at_frames;
    args[3].i32 = (int32_t)at_flags;
}

static int st_stage_run(st_chain *c, st_stage *s, st_flow *f, float *buf, uint32_t frames)
{
    size_t n = (size_t)frames * c->channels;
    uint32_t at_frames = s->scratch_offset + ST_HOT_SCRATCH_OUT_FRAMES;
    uint32_t at_flags = s->scratch_offset + ST_HOT_SCRATCH_OUT_FLAGS;
    if (s->need_reset) {
        /* The module raised NEED_RESET after its last block: reset before this one. */
        s->need_reset = 0;
        st_stage_reset(s, c->blocks);
        if (atomic_load_explicit(&s->faulted, memory_order_relaxed))
            return -1;
    }
    uint8_t *base = s->base; /* never stale: see st_stage.base */
    if (f->base == base || (f->prod && f->prod_in_base == base)) {
        /* The block, or the input its producer would fall back to, sits in this stage's own
         * memory (a stage that runs twice in the chain), which its call may overwrite; should
         * the stage then fault, the block must still pass on intact, so move it out first. */
        st_pass(c, f, buf, n);
        f->src = buf;
        f->base = NULL;
        if (atomic_load_explicit(&s->faulted, memory_order_relaxed))
            return -1; /* this very stage wrote the bad block it was about to get again */
    }
    st_pass(c, f, (float *)(base + s->in_offset), n);
    uint32_t zero = 0;
    memcpy(base + at_frames, &zero, 4);
    memcpy(base + at_flags, &zero, 4);

    int32_t rc;
    if (s->is_native) {
        rc = s->native_process(s->guest_ctx, frames, at_frames, at_flags);
    } else {
        wasmtime_val_raw_t args[4];
        st_process_args(args, s, frames, at_frames, at_flags);
        if (st_wasm_call(s, &s->process_fn, args, 4, c->blocks) != 0)
            return -1;
        rc = args[0].i32;
    }

    if (rc != 0) {
        if (rc == ST_HOT_ERR_WOULD_BLOCK && s->role == ST_HOT_ROLE_OUTPUT_SINK) {
            /* A full sink consumed nothing this block: a state the ABI allows, not a fault.
             * The frames are kept and offered again (back-pressure). */
            s->stats.short_frames += frames;
            st_sink_keep(s, f->src, frames);
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
    if (flags & ST_HOT_FLAG_NEED_RESET)
        s->need_reset = 1;
    atomic_store_explicit(&s->last_flags, flags, memory_order_relaxed);
    if (s->role == ST_HOT_ROLE_DSP_TRANSFORM) {
        if (out_frames != frames) {
            st_fault(s, ST_FAULT_BAD_FRAMES, (int32_t)out_frames, c->blocks);
            return -1;
        }
        /* The output is checked when it is handed on (the next copy, st_pass): until then this
         * stage is the pending producer, and `f->src` (its input, outside its memory: moved to
         * buf above otherwise) is what passes on if the output turns out to hold a NaN/Inf. */
        f->prod = s;
        f->prod_in = f->src;
        f->prod_in_base = f->base;
        f->src = (const float *)(base + s->out_offset);
        f->base = base;
    } else if (out_frames > frames) {
        st_fault(s, ST_FAULT_BAD_FRAMES, (int32_t)out_frames, c->blocks);
        return -1;
    } else {
        s->stats.sink_frames += out_frames;
        if (out_frames < frames) {
            s->stats.short_frames += frames - out_frames;
            st_sink_keep(s, f->src + (size_t)out_frames * c->channels, frames - out_frames);
        }
    }
    return 0;
}

static inline int st_stage_live(st_stage *s)
{
    return !s->user_bypass && !atomic_load_explicit(&s->faulted, memory_order_relaxed);
}

/* Offer a sink the frames it kept (once); what it does not take stays kept, in order. */
static void st_sink_offer_pending(st_chain *c, st_stage *s, float *scratch)
{
    uint32_t n = atomic_load_explicit(&s->pend_frames, memory_order_relaxed);
    if (!n || !st_stage_live(s))
        return;
    st_flow f = {.src = s->pend, .base = NULL, .raw = 0, .prod = NULL};
    atomic_store_explicit(&s->pend_frames, 0, memory_order_relaxed);
    uint64_t t = st_ticks();
    if (st_stage_run(c, s, &f, scratch, n) == 0)
        st_stats_record(&s->stats, st_ticks_to_ns(t, st_ticks()));
    else if (!st_stage_live(s))
        atomic_store_explicit(&s->pend_frames, 0, memory_order_release); /* faulted: nothing to offer to */
    else
        atomic_store_explicit(&s->pend_frames, n, memory_order_release); /* skipped (a timeout): kept */
}

/* A sink's block while it keeps frames: those go first, and the new block queues behind them
 * if they are not all taken (the driver avoids this by offering the kept frames alone). */
static int st_sink_block(st_chain *c, st_stage *s, st_flow *f, float *buf, uint32_t frames)
{
    st_sink_offer_pending(c, s, buf);
    if (atomic_load_explicit(&s->pend_frames, memory_order_relaxed) == 0 || !st_stage_live(s))
        return st_stage_run(c, s, f, buf, frames);
    /* Settle (check) the block where it is, then keep it. */
    size_t n = (size_t)frames * c->channels;
    if (f->src == buf) {
        if (f->raw)
            st_chain_clean_input(c, buf, n);
        f->raw = 0;
    } else {
        st_pass(c, f, buf, n);
        f->src = buf;
        f->base = NULL;
    }
    st_sink_keep(s, f->src, frames);
    s->stats.short_frames += frames;
    return 0;
}

uint32_t st_chain_sink_pending(st_chain *c)
{
    uint32_t n = 0;
    for (int i = 0; i < c->n_stages; i++) {
        st_stage *s = c->stages[i];
        if (s->role == ST_HOT_ROLE_OUTPUT_SINK && st_stage_live(s))
            n += atomic_load_explicit(&s->pend_frames, memory_order_acquire);
    }
    return n;
}

void st_chain_offer_pending(st_chain *c)
{
    st_fpu_state fpu = st_fpu_flush_denormals();
    st_chain_apply_commands(c);
    for (int i = 0; i < c->n_stages; i++) {
        st_stage *s = c->stages[i];
        if (s->role == ST_HOT_ROLE_OUTPUT_SINK)
            st_sink_offer_pending(c, s, c->xf_in); /* scratch only for a stage's own block */
    }
    st_fpu_restore(fpu);
}

void st_chain_drop_pending(st_chain *c)
{
    for (int i = 0; i < c->n_stages; i++)
        atomic_store_explicit(&c->stages[i]->pend_frames, 0, memory_order_release);
}

void st_chain_poll_sinks(st_chain *c)
{
    st_fpu_state fpu = st_fpu_flush_denormals();
    st_chain_apply_commands(c);
    for (int i = 0; i < c->n_stages; i++) {
        st_stage *s = c->stages[i];
        if (s->role != ST_HOT_ROLE_OUTPUT_SINK || !st_stage_live(s) ||
            atomic_load_explicit(&s->pend_frames, memory_order_relaxed))
            continue;
        uint8_t *base = s->base;
        uint32_t at_frames = s->scratch_offset + ST_HOT_SCRATCH_OUT_FRAMES;
        uint32_t at_flags = s->scratch_offset + ST_HOT_SCRATCH_OUT_FLAGS;
        uint32_t zero = 0, flags = 0;
        memcpy(base + at_frames, &zero, 4);
        memcpy(base + at_flags, &zero, 4);
        int32_t rc;
        if (s->is_native) {
            rc = s->native_process(s->guest_ctx, 0, at_frames, at_flags);
        } else {
            wasmtime_val_raw_t args[4];
            args[0].i32 = (int32_t)s->guest_ctx;
            args[1].i32 = 0;
            args[2].i32 = (int32_t)at_frames;
            args[3].i32 = (int32_t)at_flags;
            if (st_wasm_call(s, &s->process_fn, args, 4, c->blocks) != 0)
                continue;
            rc = args[0].i32;
        }
        /* A module that refuses a zero-frame call cannot say more: take it as drained. */
        if (rc != 0 && rc != ST_HOT_ERR_WOULD_BLOCK)
            flags = ST_HOT_FLAG_DRAINED;
        else
            memcpy(&flags, base + at_flags, 4);
        atomic_store_explicit(&s->last_flags, flags, memory_order_release);
    }
    st_fpu_restore(fpu);
}

int st_chain_sinks_drained(st_chain *c)
{
    for (int i = 0; i < c->n_stages; i++) {
        st_stage *s = c->stages[i];
        if (s->role != ST_HOT_ROLE_OUTPUT_SINK || !st_stage_live(s))
            continue;
        if (atomic_load_explicit(&s->pend_frames, memory_order_acquire))
            return 0;
        if (!(atomic_load_explicit(&s->last_flags, memory_order_acquire) &
              (ST_HOT_FLAG_DRAINED | ST_HOT_FLAG_EOF)))
            return 0;
    }
    return 1;
}

/* ---- state carry (optional ABI v1 extension) --------------------------------------------- */

static int st_call_i32(st_stage *s, const wasmtime_func_t *fn, wasmtime_val_raw_t *args,
                       size_t nargs, uint64_t block, int32_t *out)
{
    if (st_wasm_call(s, fn, args, nargs, block) != 0)
        return -1;
    *out = args[0].i32;
    return 0;
}

int32_t st_stage_carry_state(st_stage *from, st_stage *to, uint64_t block)
{
    if (!from->has_state || !to->has_state || from->is_native || to->is_native)
        return -2;
    if (!st_stage_live(from) || atomic_load_explicit(&to->faulted, memory_order_relaxed))
        return -1;
    wasmtime_val_raw_t a[3];
    int32_t size, src, dst, rc;
    a[0].i32 = (int32_t)from->guest_ctx;
    if (st_call_i32(from, &from->state_size_fn, a, 1, block, &size) != 0)
        return -1;
    if (size <= 0)
        return size == 0 ? 0 : 2;
    a[0].i32 = (int32_t)from->guest_ctx;
    if (st_call_i32(from, &from->export_state_fn, a, 1, block, &src) != 0)
        return -1;
    a[0].i32 = (int32_t)to->guest_ctx;
    a[1].i32 = size;
    if (st_call_i32(to, &to->state_staging_fn, a, 2, block, &dst) != 0)
        return -1;
    if (src <= 0 || dst <= 0 || (size_t)(uint32_t)src + (uint32_t)size > from->memory_size ||
        (size_t)(uint32_t)dst + (uint32_t)size > to->memory_size)
        return 2;
    memcpy(to->base + (uint32_t)dst, from->base + (uint32_t)src, (uint32_t)size);
    a[0].i32 = (int32_t)to->guest_ctx;
    a[1].i32 = dst;
    a[2].i32 = size;
    if (st_call_i32(to, &to->import_state_fn, a, 3, block, &rc) != 0)
        return -1;
    return rc;
}

void st_chain_xfade_carry(st_chain *c)
{
    if (!c->xf_old || !c->xf_carry)
        return;
    c->xf_carry = 0;
    c->xf_carry_rc = st_stage_carry_state(c->xf_old, c->stages[c->xf_index], c->blocks);
    if (c->xf_len == 0)
        atomic_store_explicit(&c->xf_done, 1, memory_order_release);
}

/* ---- crossfade of a recreated stage ------------------------------------------------------- *
 * Slot i runs the old stage and the new one on the same input; the block leaving the slot is
 * new * sin(t) + old * cos(t), t going from 0 to pi/2 over xf_len frames (equal power). */
static void st_xfade_run(st_chain *c, st_stage *s, st_flow *f, float *buf, uint32_t frames)
{
    size_t n = (size_t)frames * c->channels;
    uint32_t ch = c->channels;
    if (f->src != buf) {
        st_pass(c, f, buf, n);
    } else if (f->raw) {
        st_chain_clean_input(c, buf, n);
    }
    *f = (st_flow){.src = buf, .base = NULL, .raw = 0, .prod = NULL};
    st_chain_xfade_carry(c);
    memcpy(c->xf_in, buf, n * sizeof(float));
    /* the old stage: xf_in -> xf_out (its input when it faults or skips) */
    st_stage *old = c->xf_old;
    st_flow fo = {.src = c->xf_in, .base = NULL, .raw = 0, .prod = NULL};
    uint64_t t = st_ticks();
    if (st_stage_live(old) && st_stage_run(c, old, &fo, c->xf_out, frames) == 0 && fo.prod != old)
        st_stats_record(&old->stats, st_ticks_to_ns(t, st_ticks()));
    fo.prod_ns = st_ticks_to_ns(t, st_ticks());
    st_pass(c, &fo, c->xf_out, n);
    /* the new stage: buf -> buf */
    st_flow fn = {.src = buf, .base = NULL, .raw = 0, .prod = NULL};
    t = st_ticks();
    if (st_stage_live(s) && st_stage_run(c, s, &fn, buf, frames) == 0 && fn.prod != s)
        st_stats_record(&s->stats, st_ticks_to_ns(t, st_ticks()));
    fn.prod_ns = st_ticks_to_ns(t, st_ticks());
    if (fn.src != buf)
        st_pass(c, &fn, buf, n);
    uint32_t len = c->xf_len, pos = c->xf_pos;
    for (uint32_t i = 0; i < frames; i++, pos++) {
        if (pos >= len)
            continue; /* faded in: the new stage alone */
        double th = 1.5707963267948966 * ((double)pos + 0.5) / (double)len;
        float gn = (float)sin(th), go = (float)cos(th);
        for (uint32_t k = 0; k < ch; k++) {
            size_t j = (size_t)i * ch + k;
            buf[j] = buf[j] * gn + c->xf_out[j] * go;
        }
    }
    c->xf_pos = pos;
    if (pos >= len)
        atomic_store_explicit(&c->xf_done, 1, memory_order_release);
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
        size_t samples = (size_t)n * c->channels;
        /* One timer read per stage boundary (N live stages: N + 1 reads; none when every stage
         * is bypassed): a stage's time is from the end of the previous one to its own end,
         * copies included, and so the check of the block handed to it (fused into the copy into
         * its in region: the previous DSP stage's output, or the chain's input). A DSP stage's
         * time is recorded once its output passes that check; a block whose output faults it is
         * no call. The final copy back to buf (with the last output's check) belongs to none. */
        uint64_t t = 0;
        st_flow f = {.src = buf, .base = NULL, .raw = 1, .prod = NULL};
        for (int i = 0; i < c->n_stages; i++) {
            st_stage *s = c->stages[i];
            if (s->user_bypass || atomic_load_explicit(&s->faulted, memory_order_relaxed))
                continue; /* bypassed: the block passes through unchanged */
            if (i == c->xf_index && c->xf_old &&
                !atomic_load_explicit(&c->xf_done, memory_order_relaxed)) {
                st_xfade_run(c, s, &f, buf, n); /* a recreate swap: both stages, mixed */
                t = 0;
                continue;
            }
            if (t == 0)
                t = st_ticks();
            int ran = s->pend && atomic_load_explicit(&s->pend_frames, memory_order_relaxed)
                          ? st_sink_block(c, s, &f, buf, n)
                          : st_stage_run(c, s, &f, buf, n);
            uint64_t t1 = st_ticks();
            if (ran == 0) {
                if (f.prod == s)
                    f.prod_ns = st_ticks_to_ns(t, t1); /* recorded when its output passes */
                else
                    st_stats_record(&s->stats, st_ticks_to_ns(t, t1));
            }
            t = t1;
        }
        if (f.src != buf)
            st_pass(c, &f, buf, samples); /* the last DSP output, checked on its way back */
        else
            st_chain_clean_input(c, buf, samples); /* never copied out: raw, or a fallback in buf */
        c->blocks++;
        buf += samples;
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

unsigned st_samples_copy_check_daz(float *dst, const float *src, size_t n)
{
    st_fpu_state fpu = st_fpu_flush_denormals();
    unsigned found = st_copy_daz(dst, src, n);
    st_fpu_restore(fpu);
    return found;
}

uint64_t st_check_time(float *buf, float *in, const float *out, size_t n, uint32_t iterations,
                       int checked)
{
    st_chain c;
    memset(&c, 0, sizeof c);
    volatile int sink = 0;
    st_fpu_state fpu = st_fpu_flush_denormals();
    uint64_t t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++) {
        if (checked) {
            st_flow f = {.src = buf, .base = NULL, .raw = 1, .prod = NULL};
            st_pass(&c, &f, in, n); /* the input clean, fused into the copy into the stage */
            /* The stage's output on its way back to buf, which is also its fallback: st_pass's
             * test-first path (without the stats record, which is no part of the check). */
            if (st_samples_any_nonfinite(out, n))
                sink = 1;
            st_copy_daz(buf, out, n);
        } else {
            memcpy(in, buf, n * sizeof(float));
            memcpy(buf, out, n * sizeof(float));
        }
    }
    uint64_t t1 = st_now_ns();
    st_fpu_restore(fpu);
    (void)sink;
    return t1 - t0;
}

/* Each loop below runs what the block loop runs for one stage call, alone and hot in cache. */
int st_stage_time_calls(st_stage *s, uint32_t frames, uint32_t iterations, uint64_t out_ns[ST_CALL_PARTS])
{
    memset(out_ns, 0, ST_CALL_PARTS * sizeof(uint64_t));
    if (atomic_load_explicit(&s->faulted, memory_order_acquire))
        return -1;
    uint32_t at_frames = s->scratch_offset + ST_HOT_SCRATCH_OUT_FRAMES;
    uint32_t at_flags = s->scratch_offset + ST_HOT_SCRATCH_OUT_FLAGS;
    volatile uint64_t sink = 0;
    uint64_t t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++) {
        if (s->is_native) {
            sink += (uint64_t)s->native_process(s->guest_ctx, frames, at_frames, at_flags);
        } else {
            wasmtime_val_raw_t args[4];
            st_process_args(args, s, frames, at_frames, at_flags);
            if (st_wasm_call(s, &s->process_fn, args, 4, 0) != 0)
                return -1;
        }
    }
    out_ns[ST_CALL_WHOLE] = st_now_ns() - t0;
    t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++)
        sink += st_ticks();
    out_ns[ST_CALL_TIMER] = st_now_ns() - t0;
    if (s->is_native)
        return 0;
    /* A deadline far away for the bare calls: a ticker running meanwhile must not trip them. */
    st_wt.context_set_epoch_deadline(s->ctx, 1ull << 40);
    t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++) {
        wasmtime_val_raw_t args[4];
        st_process_args(args, s, frames, at_frames, at_flags);
        wasm_trap_t *trap = NULL;
        wasmtime_error_t *err = st_wt.func_call_unchecked(s->ctx, &s->process_fn, args, 4, &trap);
        if (err || trap) {
            st_call_failed(s, err, trap, 0);
            return -1;
        }
    }
    out_ns[ST_CALL_ENTRY] = st_now_ns() - t0;
    t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++)
        sink += (uint64_t)st_memory_grew(s);
    out_ns[ST_CALL_GROW_CHECK] = st_now_ns() - t0;
    t0 = st_now_ns();
    for (uint32_t i = 0; i < iterations; i++)
        st_wt.context_set_epoch_deadline(s->ctx, s->deadline_ticks ? s->deadline_ticks : 1ull << 40);
    out_ns[ST_CALL_DEADLINE] = st_now_ns() - t0;
    (void)sink;
    return 0;
}

/* ---- epoch ticker (st_chain.h) ------------------------------------------------------------ */

static void *st_ticker_main(void *arg)
{
    st_ticker *t = arg;
    uint64_t period_ns = (uint64_t)t->period_us * 1000u;
    uint64_t next = st_now_ns();
    uint32_t idle = 0;
    pthread_mutex_lock(&t->lock);
    while (!t->closing) {
        next += period_ns;
        struct timespec ts = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        while (!t->closing && pthread_cond_timedwait(&t->wake, &t->lock, &ts) == 0)
            ; /* woken early (a close, or spuriously): wait out the tick unless closing */
        if (t->closing)
            break;
        uint64_t now = st_now_ns();
        if (now > next + period_ns)
            next = now; /* woke late (descheduled): resync rather than burst the missed ticks */
        st_wt.engine_increment_epoch(t->engine);
        idle = t->users ? 0 : idle + 1;
        if (idle >= ST_TICKER_LINGER_TICKS)
            break;
    }
    st_wt.engine_delete(t->engine); /* the thread's own reference, taken when it was started */
    t->engine = NULL;
    t->alive = 0;
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static void st_ticker_init(st_ticker *t)
{
    if (t->ready)
        return;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&t->lock, NULL);
    t->ready = 1;
}

int st_ticker_acquire(st_ticker *t, wasm_engine_t *engine, uint32_t period_us)
{
    st_ticker_init(t);
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    if (!t->alive) {
        if (t->joinable) {
            /* The last thread left after its linger (or is leaving: it holds no lock past
             * alive = 0), so this join returns at once. */
            pthread_mutex_unlock(&t->lock);
            pthread_join(t->thread, NULL);
            pthread_mutex_lock(&t->lock);
            t->joinable = 0;
        }
        if (!t->alive) {
            /* The thread holds a reference of its own: it may linger after the last user, and
             * whoever owns `engine` may free theirs meanwhile (a garbage collection, in any
             * order). The thread deletes it on its way out. */
            t->engine = st_wt.engine_clone(engine);
            t->period_us = period_us;
            t->closing = 0;
            if (pthread_create(&t->thread, NULL, st_ticker_main, t) == 0) {
                t->alive = t->joinable = 1;
            } else {
                st_wt.engine_delete(t->engine);
                t->engine = NULL;
                rc = -1;
            }
        }
    }
    if (rc == 0)
        t->users++;
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void st_ticker_release(st_ticker *t)
{
    pthread_mutex_lock(&t->lock);
    if (t->users)
        t->users--;
    pthread_mutex_unlock(&t->lock);
}

int st_ticker_alive(st_ticker *t)
{
    if (!t->ready)
        return 0;
    pthread_mutex_lock(&t->lock);
    int alive = t->alive;
    pthread_mutex_unlock(&t->lock);
    return alive;
}

void st_ticker_close(st_ticker *t)
{
    if (!t->ready)
        return;
    pthread_mutex_lock(&t->lock);
    t->closing = 1;
    pthread_cond_signal(&t->wake);
    int join = t->joinable;
    t->joinable = 0;
    pthread_mutex_unlock(&t->lock);
    if (join)
        pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    t->ready = 0;
}
