/*
 * stellatune_hotpath.h: hot-path core-module ABI v1, the byte-level contract between a host
 * (stellatune's real-time engine) and a plugin's hot-path module.
 *
 * docs/hot-path-abi.md is the prose version of this file; stellatune/abi.py mirrors the
 * constants in Python. The header is plain C11 with no wasm specifics, so the engine (gcc,
 * x86-64) and the SDK (clang, wasm32 or native) include the same definitions.
 *
 * The ABI in one paragraph: every pointer is a u32 offset into the module's memory (a wasm
 * module's linear memory, or for the native baseline the block returned by
 * st_hot_native_memory()). The host writes an st_hot_init_args record into the 64 host scratch
 * bytes just before in_offset, calls init, then per block writes `frames` frames at in_offset,
 * calls process, reads out_frames and flags from the scratch and, for a DSP, reads `frames`
 * frames at out_offset. Every call returns 0 or an ST_HOT_ERR_* code.
 */
#ifndef STELLATUNE_HOTPATH_H
#define STELLATUNE_HOTPATH_H

#include <stddef.h>
#include <stdint.h>

#define ST_HOT_ABI_VERSION 1u

/* Roles (st_hot_init_args.role). */
#define ST_HOT_ROLE_DSP_TRANSFORM 1u
#define ST_HOT_ROLE_OUTPUT_SINK 2u

/* Sample formats (st_hot_init_args.sample_format). */
#define ST_HOT_FORMAT_F32LE 1u
#define ST_HOT_FORMAT_I16LE 2u
#define ST_HOT_FORMAT_I32LE 3u

/* Bits of the flags word the guest writes after every process call. */
#define ST_HOT_FLAG_EOF 0x1u        /* the guest has nothing more to produce */
#define ST_HOT_FLAG_DRAINED 0x2u    /* a sink has played out everything it buffered */
#define ST_HOT_FLAG_NEED_RESET 0x4u /* call reset before the next process */
#define ST_HOT_FLAG_SOFT_ERROR 0x8u /* non-fatal trouble; the host may fall back */

/* Return codes of init / process / reset (0 is ok). */
#define ST_HOT_OK 0
#define ST_HOT_ERR_INVALID_ARG 1
#define ST_HOT_ERR_UNSUPPORTED 2
#define ST_HOT_ERR_IO 3
#define ST_HOT_ERR_INTERNAL 4
#define ST_HOT_ERR_WOULD_BLOCK 5 /* sink: nothing consumed now, offer the frames again */
#define ST_HOT_ERR_NOT_READY 6

/*
 * Host scratch: the 64 bytes just before in_offset belong to the host. The guest must not
 * use them, so in_offset >= 64. Offsets below are relative to in_offset - 64.
 */
#define ST_HOT_SCRATCH_SIZE 64u
#define ST_HOT_SCRATCH_INIT_ARGS 0u  /* st_hot_init_args, 44 bytes */
#define ST_HOT_SCRATCH_OUT_CTX 48u   /* u32 written by init */
#define ST_HOT_SCRATCH_OUT_FRAMES 52u/* u32 written by process */
#define ST_HOT_SCRATCH_OUT_FLAGS 56u /* u32 written by process */

/* Written by the host at args_ptr before init. Little-endian, 4-byte aligned, 44 bytes. */
typedef struct st_hot_init_args {
    uint32_t abi_version;   /*  0: ST_HOT_ABI_VERSION */
    uint32_t role;          /*  4: ST_HOT_ROLE_* */
    uint32_t sample_rate;   /*  8: Hz */
    uint16_t channels;      /* 12 */
    uint16_t sample_format; /* 14: ST_HOT_FORMAT_* */
    uint32_t max_frames;    /* 16: largest `frames` process will see; <= the spec's max-frames */
    uint32_t in_offset;     /* 20: start of the input region */
    uint32_t out_offset;    /* 24: start of the output region (0 for a sink) */
    uint32_t buffer_bytes;  /* 28: bytes the host uses in *each* region:
                                   max_frames * channels * bytes_per_sample */
    uint32_t flags;         /* 32: none defined in v1; the host writes 0 */
    uint32_t reserved0;     /* 36: 0 */
    uint32_t reserved1;     /* 40: 0 */
} st_hot_init_args;

_Static_assert(sizeof(st_hot_init_args) == 44, "st_hot_init_args is 44 bytes");
_Static_assert(_Alignof(st_hot_init_args) == 4, "st_hot_init_args is 4-byte aligned");
_Static_assert(offsetof(st_hot_init_args, sample_rate) == 8, "sample_rate at 8");
_Static_assert(offsetof(st_hot_init_args, channels) == 12, "channels at 12");
_Static_assert(offsetof(st_hot_init_args, sample_format) == 14, "sample_format at 14");
_Static_assert(offsetof(st_hot_init_args, max_frames) == 16, "max_frames at 16");
_Static_assert(offsetof(st_hot_init_args, in_offset) == 20, "in_offset at 20");
_Static_assert(offsetof(st_hot_init_args, out_offset) == 24, "out_offset at 24");
_Static_assert(offsetof(st_hot_init_args, buffer_bytes) == 28, "buffer_bytes at 28");
_Static_assert(offsetof(st_hot_init_args, flags) == 32, "flags at 32");
_Static_assert(offsetof(st_hot_init_args, reserved1) == 40, "reserved1 at 40");

/*
 * Default export names, and the signatures as the host calls them. In wasm every parameter and
 * result is an i32; the native baseline (.so) exports the same symbols with these C types.
 */
#define ST_HOT_EXPORT_MEMORY "memory"
#define ST_HOT_EXPORT_INIT "st_hot_init"
#define ST_HOT_EXPORT_PROCESS "st_hot_process"
#define ST_HOT_EXPORT_RESET "st_hot_reset"            /* optional */
#define ST_HOT_EXPORT_DROP "st_hot_drop"              /* optional */
#define ST_HOT_EXPORT_PARAM_NAMES "st_hot_param_names"/* optional */
#define ST_HOT_EXPORT_SET_PARAM "st_hot_set_param"    /* optional */
#define ST_HOT_EXPORT_NATIVE_MEMORY "st_hot_native_memory" /* native baseline only */
/* Optional v1 extension: state carry across a recreate (docs/hot-path-abi.md, "State carry"). */
#define ST_HOT_EXPORT_STATE_SIZE "st_hot_state_size"       /* (ctx) -> bytes (0: none) */
#define ST_HOT_EXPORT_EXPORT_STATE "st_hot_export_state"   /* (ctx) -> offset of the image */
#define ST_HOT_EXPORT_STATE_STAGING "st_hot_state_staging" /* (ctx, len) -> offset (0: no room) */
#define ST_HOT_EXPORT_IMPORT_STATE "st_hot_import_state"   /* (ctx, ptr, len) -> status */

/* Writes an opaque non-zero context at out_ctx_ptr. */
typedef int32_t (*st_hot_init_fn)(uint32_t args_ptr, uint32_t out_ctx_ptr);
/* DSP: reads `frames` at in_offset, writes exactly `frames` at out_offset, *out_frames = frames.
 * Sink: consumes 0..frames frames, *out_frames = frames consumed. Both write *out_flags. */
typedef int32_t (*st_hot_process_fn)(uint32_t ctx, uint32_t frames, uint32_t out_frames_ptr,
                                     uint32_t out_flags_ptr);
typedef int32_t (*st_hot_reset_fn)(uint32_t ctx, uint32_t flags);
typedef void (*st_hot_drop_fn)(uint32_t ctx);
/* Offset of "name0\0name1\0...\0\0"; a parameter's id is its index. 0 = no parameters. */
typedef uint32_t (*st_hot_param_names_fn)(void);
/* Between blocks only. ST_HOT_ERR_INVALID_ARG for an unknown id or an out-of-range value. */
typedef int32_t (*st_hot_set_param_fn)(uint32_t ctx, uint32_t id, float value);
/* Native baseline: base pointer B; ABI offset o means address B + o. */
typedef void *(*st_hot_native_memory_fn)(void);

#endif /* STELLATUNE_HOTPATH_H */
