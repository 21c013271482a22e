/*
 * st_glue.h: internals shared by the SDK's glue files; plugin authors never include this.
 *
 * An st_instance is one live use of the plugin's kernel: a hot-path context (ctx = index + 1)
 * or a component processor/session (resource rep = index + 1). It owns one of the
 * ST_MAX_INSTANCES state slots the ST_*_PLUGIN macro reserved, plus the parameter values.
 */
#ifndef STELLATUNE_GLUE_H
#define STELLATUNE_GLUE_H

#include "stellatune_sdk.h"

typedef struct st_instance {
    uint32_t in_use;  /* slot taken (created) */
    uint32_t started; /* kernel init ran for `stream` */
    uint32_t closed;  /* component resources: close() ran; the slot stays until the dtor */
    st_stream stream;
    float params[ST_MAX_PARAMS];
    void *state;
} st_instance;

/* Plugin description, whatever its role. */
const st_param *st_plugin_params(void);
uint32_t st_plugin_param_count(void);

/* Take a free slot with default parameters, not started; NULL when all are taken. */
st_instance *st_instance_create(void);
/* The instance with id 1..ST_MAX_INSTANCES, or NULL if that slot is free. */
st_instance *st_instance_get(uint32_t id);
uint32_t st_instance_id(const st_instance *inst);
void st_instance_destroy(st_instance *inst);
/* The state buffer of a free slot (a staging area for a state import), or NULL. */
void *st_instance_spare_state(void);
/* Import a state image (docs/hot-path-abi.md, "State carry"): the kernel's hook, or a copy of
 * min(len, state size) bytes followed by every current parameter again. */
int32_t st_instance_import_state(st_instance *inst, const void *image, uint32_t len);
/* The component glue's view of a resource rep (= instance id): the instance, or NULL when the
 * rep is unknown or its resource was closed; close marks it, drop (the dtor) frees the slot. */
st_instance *st_resource_live(int32_t rep);
void st_resource_close(int32_t rep);
void st_resource_drop(int32_t rep);
/* (Re)start the kernel for a stream with the current parameters: zeroes the state first.
 * ST_HOT_ERR_INVALID_ARG for a stream beyond the SDK limits, else what the kernel returns. */
int32_t st_instance_start(st_instance *inst, const st_stream *stream);
void st_instance_reset(st_instance *inst);
/* Range-checked; the kernel hears about it only when started. */
int32_t st_instance_set_param(st_instance *inst, uint32_t id, float value);
void st_instance_process(st_instance *inst, const float *in, float *out, uint32_t frames);
uint32_t st_instance_consume(st_instance *inst, const float *in, uint32_t frames);

/* Config JSON, all or nothing. Returns 0, or 1 with a reason in why[] (nothing changed). */
int st_instance_check_json(const st_instance *inst, const char *json, uint32_t len,
                           float *values_out, char *why, uint32_t why_cap);
int st_instance_apply_json(st_instance *inst, const char *json, uint32_t len, char *why,
                           uint32_t why_cap);
/* {"name": value, ...} of the current parameters into buf; returns the length. */
uint32_t st_instance_export_json(const st_instance *inst, char *buf, uint32_t cap);

/* JSON scanning and text output (st_runtime.c). */
typedef int (*st_json_member_fn)(void *ctx, const char *key, uint32_t key_len, int is_number,
                                 double number, const char *value);
/* Calls fn for every member of a top-level object; -1 if malformed, fn's non-zero to stop. */
int st_json_scan(const char *json, uint32_t len, st_json_member_fn fn, void *ctx);
int st_key_equals(const char *key, uint32_t key_len, const char *name);
/* Append to a NUL-terminated buffer of `cap` bytes; return the new length. */
uint32_t st_put_str(char *buf, uint32_t pos, uint32_t cap, const char *s);
uint32_t st_put_float(char *buf, uint32_t pos, uint32_t cap, float value);

#endif /* STELLATUNE_GLUE_H */
