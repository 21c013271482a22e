/* Flush-to-zero / denormals-are-zero for the thread that runs the chain.
 *
 * Wasm keeps IEEE subnormals, and a decaying filter tail full of them ran ~48x slower in our
 * measurements. The JIT code honours the calling thread's MXCSR, so setting FTZ (bit 15) and
 * DAZ (bit 6) once per block on the audio thread is enough. */
#ifndef ST_FPU_H
#define ST_FPU_H

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static inline void st_fpu_flush_denormals(void) { _mm_setcsr(_mm_getcsr() | 0x8040); }
#elif defined(__aarch64__)
static inline void st_fpu_flush_denormals(void)
{
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr | (1UL << 24))); /* FZ */
}
#else
static inline void st_fpu_flush_denormals(void) {}
#endif

#endif
