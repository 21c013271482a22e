/*
 * cabi.h: the canonical-ABI pieces both component worlds share (cabi.c). Hand-written because
 * wit-bindgen is not available offline; every layout here is checked end to end by
 * tests/sdk/test_component.py through wasmtime's component model.
 *
 * Results: every fallible export returns result<T, plugin-error> through a return area: byte 0
 * is 0 (ok) or 1 (err), the payload starts at byte 4 (all payloads are 4-byte aligned). An err
 * payload is the plugin-error variant: case u8 at 4, message (ptr, len) at 8 and 12.
 */
#ifndef STELLATUNE_CABI_H
#define STELLATUNE_CABI_H

#include "st_glue.h"

#define ST_EXPORT_AS(name) __attribute__((export_name(name), visibility("default")))

#define ST_CONCAT_(a, b) a##b
#define ST_CONCAT(a, b) ST_CONCAT_(a, b)
/* The post-return of export `fn`: results are lifted by now, so the heap holding this call's
 * arguments and results is free again. Every export returning through the return area has one. */
#define ST_CABI_POST_RETURN(fn) ST_CABI_POST_RETURN_AS(fn, ST_CONCAT(st_post_return_, __LINE__))
#define ST_CABI_POST_RETURN_AS(fn, cname)                        \
    ST_EXPORT_AS("cabi_post_" fn) void cname(int32_t ret) {      \
        (void)ret;                                               \
        st_cabi_heap_reset();                                    \
    }

/* WIT plugin-error cases. */
enum {
    ST_PE_INVALID_ARG = 0,
    ST_PE_NOT_FOUND = 1,
    ST_PE_IO = 2,
    ST_PE_TIMEOUT = 3,
    ST_PE_UNSUPPORTED = 4,
    ST_PE_DENIED = 5,
    ST_PE_INTERNAL = 6,
};

/* WIT enum indices (not the ABI's numeric codes). */
#define ST_WIT_ROLE_DSP_TRANSFORM 0
#define ST_WIT_ROLE_OUTPUT_SINK 1
#define ST_WIT_FORMAT_F32LE 0
#define ST_WIT_PLAN_HOT_APPLY 0
#define ST_WIT_PLAN_RECREATE 1
#define ST_WIT_PLAN_REJECT 2

/* Incoming lists and strings are allocated from a bump heap that every post-return resets, so
 * one call's arguments and results can never exceed it. */
#define ST_CABI_HEAP_BYTES (1u << 20)

uint8_t *st_cabi_ret(void); /* the (zeroed) return area, 96 bytes */
void st_cabi_heap_reset(void);
char *st_cabi_alloc(uint32_t size); /* from the heap; traps when exhausted */

void st_cabi_put_u32(uint8_t *p, uint32_t off, uint32_t v);
void st_cabi_put_str(uint8_t *p, uint32_t off, const char *s, uint32_t len);
uint32_t st_cabi_strlen(const char *s);

uint8_t *st_cabi_ok(void);                              /* ret with byte 0 = 0 */
uint8_t *st_cabi_err(uint8_t pe_case, const char *msg); /* ret with byte 0 = 1 */

/* describe-hot-path's answer: none beyond the SDK limits, else the SDK's fixed memory map. */
uint8_t *st_cabi_describe_hot_path(uint32_t sample_rate, uint32_t channels, uint8_t wit_role);

/* The config quartet over an instance (methods of every capability resource). */
uint8_t *st_cabi_plan_config(st_instance *inst, const char *json, uint32_t len);
uint8_t *st_cabi_apply_config(st_instance *inst, const char *json, uint32_t len);
uint8_t *st_cabi_export_config(st_instance *inst);

/* The lifecycle interface of both worlds: nothing to set up or tear down, since the kernel's
 * state lives in the processors/sessions. */
#define ST_LIFECYCLE_IFACE "stellatune:plugin/lifecycle@0.1.0"
#define ST_CABI_LIFECYCLE_EXPORTS() ST_CABI_LIFECYCLE_EXPORTS_(ST_LIFECYCLE_IFACE)
#define ST_CABI_LIFECYCLE_EXPORTS_(iface)                                              \
    ST_EXPORT_AS(iface "#on-enable") uint8_t *st_world_on_enable(void) {              \
        return st_cabi_ok();                                                           \
    }                                                                                  \
    ST_CABI_POST_RETURN_AS(iface "#on-enable", st_world_on_enable_post)                \
    ST_EXPORT_AS(iface "#on-disable") uint8_t *st_world_on_disable(int32_t reason) {   \
        (void)reason;                                                                  \
        return st_cabi_ok();                                                           \
    }                                                                                  \
    ST_CABI_POST_RETURN_AS(iface "#on-disable", st_world_on_disable_post)

/* The config quartet as methods of resource `res` ("processor", "session") of `iface`, for a
 * world file that defines closed_err() (the error for a closed rep). The exported state is the
 * config, so importing it is applying it. */
#define ST_CABI_CONFIG_METHOD_(iface, res, method, cname, call)                     \
    ST_EXPORT_AS(iface "#[method]" res "." method)                                  \
    uint8_t *cname(int32_t rep, const char *json, uint32_t len) {                   \
        st_instance *inst = st_resource_live(rep);                                              \
        return inst ? call(inst, json, len) : closed_err();                         \
    }                                                                               \
    ST_CABI_POST_RETURN_AS(iface "#[method]" res "." method, ST_CONCAT(cname, _post))
#define ST_CABI_CONFIG_EXPORTS(iface, res)                                                  \
    ST_CABI_CONFIG_METHOD_(iface, res, "plan-config-update-json", st_world_config_plan,     \
                           st_cabi_plan_config)                                             \
    ST_CABI_CONFIG_METHOD_(iface, res, "apply-config-update-json", st_world_config_apply,   \
                           st_cabi_apply_config)                                            \
    ST_CABI_CONFIG_METHOD_(iface, res, "import-state-json", st_world_config_import,         \
                           st_cabi_apply_config)                                            \
    ST_EXPORT_AS(iface "#[method]" res ".export-state-json")                                \
    uint8_t *st_world_config_export(int32_t rep) {                                          \
        st_instance *inst = st_resource_live(rep);                                                      \
        return inst ? st_cabi_export_config(inst) : closed_err();                           \
    }                                                                                       \
    ST_CABI_POST_RETURN_AS(iface "#[method]" res ".export-state-json", st_world_config_export_post)

#endif /* STELLATUNE_CABI_H */
