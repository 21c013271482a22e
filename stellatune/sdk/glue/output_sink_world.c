/*
 * output_sink_world.c: the `output-sink-plugin` world's exports (lifecycle + output-sink) over
 * the plugin's sink kernel. Like dsp_world.c it imports only the session resource constructor.
 *
 * A session takes config before it is opened (the host applies config, then negotiates, then
 * opens), so parameters live in the instance from create() on and the kernel starts at open.
 */
#include "cabi.h"

#define SINK_IFACE "stellatune:plugin/output-sink@0.1.0"

__attribute__((import_module("[export]" SINK_IFACE), import_name("[resource-new]session")))
extern int32_t session_resource_new(int32_t rep);

static uint8_t *closed_err(void) {
    return st_cabi_err(ST_PE_INVALID_ARG, "session is closed");
}

static uint8_t *not_open_err(void) {
    return st_cabi_err(ST_PE_INVALID_ARG, "session is not open (call open-json first)");
}

static const char TARGETS[] = "[{\"id\":\"default\",\"name\":\"Passthrough (discards audio)\"}]";

ST_CABI_LIFECYCLE_EXPORTS()

/* --- output-sink ----------------------------------------------------------------------- */

ST_EXPORT_AS(SINK_IFACE "#create") uint8_t *sink_create(void) {
    st_instance *inst = st_instance_create();
    if (!inst) return st_cabi_err(ST_PE_UNSUPPORTED, "too many sessions in this instance");
    uint32_t rep = st_instance_id(inst);
    uint8_t *r = st_cabi_ok();
    st_cabi_put_u32(r, 4, (uint32_t)session_resource_new((int32_t)rep));
    return r;
}
ST_CABI_POST_RETURN(SINK_IFACE "#create")

ST_EXPORT_AS(SINK_IFACE "#[dtor]session") void session_dtor(int32_t rep) {
    st_resource_drop(rep);
}

ST_EXPORT_AS(SINK_IFACE "#[method]session.list-targets-json")
uint8_t *session_list_targets(int32_t rep) {
    if (!st_resource_live(rep)) return closed_err();
    uint8_t *r = st_cabi_ok();
    st_cabi_put_str(r, 4, TARGETS, sizeof TARGETS - 1);
    return r;
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.list-targets-json")

static int spec_ok(uint32_t sample_rate, uint32_t channels) {
    return channels >= 1 && channels <= ST_MAX_CHANNELS && sample_rate >= 1 &&
           sample_rate <= ST_MAX_SAMPLE_RATE;
}

/* result<negotiated-spec>: sample-rate 4, channels 8, preferred-chunk-frames 12,
 * prefer-track-rate 16. The sink takes whatever the host wants within the SDK limits. */
ST_EXPORT_AS(SINK_IFACE "#[method]session.negotiate-spec-json")
uint8_t *session_negotiate(int32_t rep, const char *target, uint32_t target_len,
                           uint32_t sample_rate, uint32_t channels) {
    (void)target, (void)target_len;
    if (!st_resource_live(rep)) return closed_err();
    if (!spec_ok(sample_rate, channels))
        return st_cabi_err(ST_PE_UNSUPPORTED, "1..8 channels at 1..768000 Hz only");
    uint8_t *r = st_cabi_ok();
    st_cabi_put_u32(r, 4, sample_rate);
    uint16_t ch = (uint16_t)channels;
    memcpy(r + 8, &ch, 2);
    st_cabi_put_u32(r, 12, 1024);
    r[16] = 0;
    return r;
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.negotiate-spec-json")

ST_EXPORT_AS(SINK_IFACE "#[method]session.describe-hot-path")
uint8_t *session_describe_hot_path(int32_t rep, uint32_t sample_rate, uint32_t channels) {
    if (!st_resource_live(rep)) return closed_err();
    return st_cabi_describe_hot_path(sample_rate, channels, ST_WIT_ROLE_OUTPUT_SINK);
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.describe-hot-path")

/* Opening again restarts the kernel for the new spec (counters start from zero). */
ST_EXPORT_AS(SINK_IFACE "#[method]session.open-json")
uint8_t *session_open(int32_t rep, const char *target, uint32_t target_len,
                      uint32_t sample_rate, uint32_t channels) {
    (void)target, (void)target_len;
    st_instance *inst = st_resource_live(rep);
    if (!inst) return closed_err();
    if (!spec_ok(sample_rate, channels))
        return st_cabi_err(ST_PE_UNSUPPORTED, "1..8 channels at 1..768000 Hz only");
    st_stream stream = {sample_rate, channels, ST_MAX_FRAMES};
    if (st_instance_start(inst, &stream) != ST_HOT_OK)
        return st_cabi_err(ST_PE_INTERNAL, "the sink kernel refused the stream");
    return st_cabi_ok();
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.open-json")

/* result<u32>: frames accepted, fewer than offered when the kernel is full. */
ST_EXPORT_AS(SINK_IFACE "#[method]session.write-interleaved-f32")
uint8_t *session_write(int32_t rep, uint32_t channels, const float *samples, uint32_t len) {
    st_instance *inst = st_resource_live(rep);
    if (!inst) return closed_err();
    if (!inst->started) return not_open_err();
    if (channels != inst->stream.channels)
        return st_cabi_err(ST_PE_INVALID_ARG, "channel count differs from the opened spec");
    if (len % (4u * channels) != 0)
        return st_cabi_err(ST_PE_INVALID_ARG, "byte length is not a whole number of frames");
    uint32_t frames = len / (4u * channels), done = 0;
    while (done < frames) {
        uint32_t n = frames - done < ST_MAX_FRAMES ? frames - done : ST_MAX_FRAMES;
        uint32_t taken = st_instance_consume(inst, samples + (size_t)done * channels, n);
        done += taken;
        if (taken < n) break;
    }
    uint8_t *r = st_cabi_ok();
    st_cabi_put_u32(r, 4, done);
    return r;
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.write-interleaved-f32")

/* result<runtime-status>: queued-samples 4, running 8. Nothing is ever queued. */
ST_EXPORT_AS(SINK_IFACE "#[method]session.query-status")
uint8_t *session_query_status(int32_t rep) {
    st_instance *inst = st_resource_live(rep);
    if (!inst) return closed_err();
    uint8_t *r = st_cabi_ok();
    r[8] = (uint8_t)inst->started;
    return r;
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.query-status")

ST_EXPORT_AS(SINK_IFACE "#[method]session.flush") uint8_t *session_flush(int32_t rep) {
    return st_resource_live(rep) ? st_cabi_ok() : closed_err();
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.flush")

ST_EXPORT_AS(SINK_IFACE "#[method]session.reset") uint8_t *session_reset(int32_t rep) {
    st_instance *inst = st_resource_live(rep);
    if (!inst) return closed_err();
    st_instance_reset(inst);
    return st_cabi_ok();
}
ST_CABI_POST_RETURN(SINK_IFACE "#[method]session.reset")

ST_CABI_CONFIG_EXPORTS(SINK_IFACE, "session")

ST_EXPORT_AS(SINK_IFACE "#[method]session.close") void session_close(int32_t rep) {
    st_resource_close(rep);
}
