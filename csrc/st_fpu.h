/* Flush-to-zero / denormals-are-zero around a run of the chain.
 *
 * Wasm keeps IEEE subnormals, and a decaying filter tail full of them ran ~48x slower in our
 * measurements. The JIT code honours the calling thread's MXCSR, so the chain sets FTZ (bit 15)
 * and DAZ (bit 6) on entry. It restores the previous mode on exit: offline processing runs on
 * the caller's Python thread, where a leaked FTZ would silently change numpy's results. */
#ifndef ST_FPU_H
#define ST_FPU_H

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
typedef unsigned int st_fpu_state;
static inline st_fpu_state st_fpu_flush_denormals(void)
{
    st_fpu_state old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);
    return old;
}
static inline void st_fpu_restore(st_fpu_state old) { _mm_setcsr(old); }
#elif defined(__aarch64__)
typedef unsigned long st_fpu_state;
static inline st_fpu_state st_fpu_flush_denormals(void)
{
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr | (1UL << 24))); /* FZ */
    return fpcr;
}
static inline void st_fpu_restore(st_fpu_state old) { __asm__ volatile("msr fpcr, %0" ::"r"(old)); }
#else
typedef int st_fpu_state;
static inline st_fpu_state st_fpu_flush_denormals(void) { return 0; }
static inline void st_fpu_restore(st_fpu_state old) { (void)old; }
#endif

#endif
