/*
 * dsp_world.c: the `dsp-plugin` world's exports (lifecycle + dsp) over the plugin's DSP kernel.
 *
 * Imports nothing but the resource constructor the component model gives every exported
 * resource, so the component instantiates with an empty linker. A processor's rep is its
 * instance id (1..ST_MAX_INSTANCES); methods receive that rep directly (borrow of an own
 * resource), so there are no borrowed handles to drop.
 */
#include "cabi.h"

#define DSP_IFACE "stellatune:plugin/dsp@0.1.0"

__attribute__((import_module("[export]" DSP_IFACE), import_name("[resource-new]processor")))
extern int32_t processor_resource_new(int32_t rep);

static uint8_t *closed_err(void) {
    return st_cabi_err(ST_PE_INVALID_ARG, "processor is closed");
}

ST_CABI_LIFECYCLE_EXPORTS()

/* --- dsp ------------------------------------------------------------------------------- */

ST_EXPORT_AS(DSP_IFACE "#create") uint8_t *dsp_create(uint32_t sample_rate, uint32_t channels) {
    st_instance *inst = st_instance_create();
    if (!inst) return st_cabi_err(ST_PE_UNSUPPORTED, "too many processors in this instance");
    st_stream stream = {sample_rate, channels, ST_MAX_FRAMES};
    int32_t rc = st_instance_start(inst, &stream);
    if (rc != ST_HOT_OK) {
        st_instance_destroy(inst);
        return st_cabi_err(rc == ST_HOT_ERR_INVALID_ARG ? ST_PE_UNSUPPORTED : ST_PE_INTERNAL,
                           "audio spec beyond the plugin's limits (1..8 channels, 1..768000 Hz)");
    }
    uint32_t rep = st_instance_id(inst);
    uint8_t *r = st_cabi_ok();
    st_cabi_put_u32(r, 4, (uint32_t)processor_resource_new((int32_t)rep));
    return r;
}
ST_CABI_POST_RETURN(DSP_IFACE "#create")

ST_EXPORT_AS(DSP_IFACE "#[dtor]processor") void processor_dtor(int32_t rep) {
    st_resource_drop(rep);
}

ST_EXPORT_AS(DSP_IFACE "#[method]processor.describe-hot-path")
uint8_t *processor_describe_hot_path(int32_t rep, uint32_t sample_rate, uint32_t channels) {
    if (!st_resource_live(rep)) return closed_err();
    return st_cabi_describe_hot_path(sample_rate, channels, ST_WIT_ROLE_DSP_TRANSFORM);
}
ST_CABI_POST_RETURN(DSP_IFACE "#[method]processor.describe-hot-path")

/* In place: the argument list is ours until post-return, and the result points at it. */
ST_EXPORT_AS(DSP_IFACE "#[method]processor.process-interleaved-f32")
uint8_t *processor_process(int32_t rep, uint32_t channels, float *samples, uint32_t len) {
    st_instance *inst = st_resource_live(rep);
    if (!inst) return closed_err();
    if (channels != inst->stream.channels)
        return st_cabi_err(ST_PE_INVALID_ARG, "channel count differs from the processor's spec");
    if (len % (4u * channels) != 0)
        return st_cabi_err(ST_PE_INVALID_ARG, "byte length is not a whole number of frames");
    uint32_t frames = len / (4u * channels);
    for (uint32_t done = 0; done < frames;) {
        uint32_t n = frames - done < ST_MAX_FRAMES ? frames - done : ST_MAX_FRAMES;
        float *block = samples + (size_t)done * channels;
        st_instance_process(inst, block, block, n);
        done += n;
    }
    uint8_t *r = st_cabi_ok();
    st_cabi_put_u32(r, 4, (uint32_t)(uintptr_t)samples);
    st_cabi_put_u32(r, 8, len);
    return r;
}
ST_CABI_POST_RETURN(DSP_IFACE "#[method]processor.process-interleaved-f32")

ST_EXPORT_AS(DSP_IFACE "#[method]processor.supported-layouts")
uint32_t processor_supported_layouts(int32_t rep) {
    (void)rep;
    return 0xffffffffu; /* any layout: the SDK kernels treat channels independently */
}

ST_EXPORT_AS(DSP_IFACE "#[method]processor.output-channels")
uint32_t processor_output_channels(int32_t rep) {
    (void)rep;
    return 0; /* same as input */
}

ST_CABI_CONFIG_EXPORTS(DSP_IFACE, "processor")

ST_EXPORT_AS(DSP_IFACE "#[method]processor.close") void processor_close(int32_t rep) {
    st_resource_close(rep);
}
