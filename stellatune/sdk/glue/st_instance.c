/*
 * st_instance.c: slots, parameters and config JSON on top of the plugin's kernel; shared by
 * the hot-path exports and the component glue so both paths behave the same.
 */
#include "st_glue.h"

static st_instance instances[ST_MAX_INSTANCES];

const st_param *st_plugin_params(void) {
    return st_plugin_def.dsp ? st_plugin_def.dsp->params : st_plugin_def.sink->params;
}

uint32_t st_plugin_param_count(void) {
    uint32_t n = st_plugin_def.dsp ? st_plugin_def.dsp->param_count
                                   : st_plugin_def.sink->param_count;
    return n < ST_MAX_PARAMS ? n : ST_MAX_PARAMS;
}

st_instance *st_instance_create(void) {
    for (uint32_t i = 0; i < ST_MAX_INSTANCES; i++) {
        st_instance *inst = &instances[i];
        if (inst->in_use) continue;
        memset(inst, 0, sizeof *inst);
        inst->in_use = 1;
        inst->state = st_plugin_def.states + (size_t)i * st_plugin_def.state_size;
        const st_param *params = st_plugin_params();
        for (uint32_t p = 0; p < st_plugin_param_count(); p++) inst->params[p] = params[p].def;
        return inst;
    }
    return 0;
}

st_instance *st_instance_get(uint32_t id) {
    if (id == 0 || id > ST_MAX_INSTANCES || !instances[id - 1].in_use) return 0;
    return &instances[id - 1];
}

uint32_t st_instance_id(const st_instance *inst) {
    return (uint32_t)(inst - instances) + 1;
}

void *st_context_state(uint32_t ctx) {
    st_instance *inst = st_instance_get(ctx);
    return inst && inst->started ? inst->state : 0;
}

void st_instance_destroy(st_instance *inst) {
    inst->in_use = 0;
    inst->started = 0;
}

void *st_instance_spare_state(void) {
    for (uint32_t i = 0; i < ST_MAX_INSTANCES; i++)
        if (!instances[i].in_use) return st_plugin_def.states + (size_t)i * st_plugin_def.state_size;
    return 0;
}

int32_t st_instance_import_state(st_instance *inst, const void *image, uint32_t len) {
    if (!inst->started) return ST_HOT_ERR_NOT_READY;
    int32_t (*hook)(void *, const st_stream *, const void *, uint32_t) =
        st_plugin_def.dsp ? st_plugin_def.dsp->import_state : st_plugin_def.sink->import_state;
    if (hook) return hook(inst->state, &inst->stream, image, len);
    memmove(inst->state, image, len < st_plugin_def.state_size ? len : st_plugin_def.state_size);
    for (uint32_t p = 0; p < st_plugin_param_count(); p++) {
        if (st_plugin_def.dsp) st_plugin_def.dsp->set_param(inst->state, &inst->stream, p, inst->params[p]);
        else st_plugin_def.sink->set_param(inst->state, &inst->stream, p, inst->params[p]);
    }
    return ST_HOT_OK;
}

st_instance *st_resource_live(int32_t rep) {
    st_instance *inst = st_instance_get((uint32_t)rep);
    return inst && !inst->closed ? inst : 0;
}

void st_resource_close(int32_t rep) {
    st_instance *inst = st_instance_get((uint32_t)rep);
    if (inst) inst->closed = 1;
}

void st_resource_drop(int32_t rep) {
    st_instance *inst = st_instance_get((uint32_t)rep);
    if (inst) st_instance_destroy(inst);
}

int32_t st_instance_start(st_instance *inst, const st_stream *stream) {
    if (stream->channels == 0 || stream->channels > ST_MAX_CHANNELS || stream->max_frames == 0 ||
        stream->max_frames > ST_MAX_FRAMES || stream->sample_rate == 0 ||
        stream->sample_rate > ST_MAX_SAMPLE_RATE)
        return ST_HOT_ERR_INVALID_ARG;
    inst->started = 0;
    inst->stream = *stream;
    memset(inst->state, 0, st_plugin_def.state_size);
    int32_t rc = st_plugin_def.dsp ? st_plugin_def.dsp->init(inst->state, stream, inst->params)
                                   : st_plugin_def.sink->init(inst->state, stream, inst->params);
    inst->started = rc == ST_HOT_OK;
    return rc;
}

void st_instance_reset(st_instance *inst) {
    if (!inst->started) return;
    if (st_plugin_def.dsp) st_plugin_def.dsp->reset(inst->state);
    else st_plugin_def.sink->reset(inst->state);
}

int32_t st_instance_set_param(st_instance *inst, uint32_t id, float value) {
    if (id >= st_plugin_param_count()) return ST_HOT_ERR_INVALID_ARG;
    const st_param *p = &st_plugin_params()[id];
    if (!(value >= p->min && value <= p->max)) return ST_HOT_ERR_INVALID_ARG; /* NaN fails too */
    inst->params[id] = value;
    if (inst->started) {
        if (st_plugin_def.dsp) st_plugin_def.dsp->set_param(inst->state, &inst->stream, id, value);
        else st_plugin_def.sink->set_param(inst->state, &inst->stream, id, value);
    }
    return ST_HOT_OK;
}

void st_instance_process(st_instance *inst, const float *in, float *out, uint32_t frames) {
    st_plugin_def.dsp->process(inst->state, in, out, frames);
}

uint32_t st_instance_consume(st_instance *inst, const float *in, uint32_t frames) {
    uint32_t n = st_plugin_def.sink->consume(inst->state, in, frames);
    return n < frames ? n : frames; /* a kernel cannot claim more than it was offered */
}

/* --- config JSON ------------------------------------------------------------------------- */

typedef struct config_check {
    float *values;
    char *why;
    uint32_t why_cap;
    int failed;
} config_check;

static int copy_key(char *dst, uint32_t cap, const char *key, uint32_t key_len) {
    uint32_t n = key_len < cap - 1 ? key_len : cap - 1;
    for (uint32_t i = 0; i < n; i++) dst[i] = key[i];
    dst[n] = 0;
    return 0;
}

static int check_member(void *ctx, const char *key, uint32_t key_len, int is_number,
                        double number, const char *value) {
    (void)value;
    config_check *c = ctx;
    const st_param *params = st_plugin_params();
    char name[40];
    copy_key(name, sizeof name, key, key_len);
    for (uint32_t i = 0; i < st_plugin_param_count(); i++) {
        const st_param *p = &params[i];
        if (!st_key_equals(key, key_len, p->name)) continue;
        float v = (float)number;
        if (!is_number || !(v >= p->min && v <= p->max)) {
            uint32_t n = st_put_str(c->why, 0, c->why_cap, "\"");
            n = st_put_str(c->why, n, c->why_cap, p->name);
            n = st_put_str(c->why, n, c->why_cap, "\" must be a number from ");
            n = st_put_float(c->why, n, c->why_cap, p->min);
            n = st_put_str(c->why, n, c->why_cap, " to ");
            st_put_float(c->why, n, c->why_cap, p->max);
            c->failed = 1;
            return 1;
        }
        c->values[i] = v;
        return 0;
    }
    uint32_t n = st_put_str(c->why, 0, c->why_cap, "unknown config key \"");
    n = st_put_str(c->why, n, c->why_cap, name);
    st_put_str(c->why, n, c->why_cap, "\"");
    c->failed = 1;
    return 1;
}

int st_instance_check_json(const st_instance *inst, const char *json, uint32_t len,
                           float *values_out, char *why, uint32_t why_cap) {
    config_check c = {values_out, why, why_cap, 0};
    for (uint32_t i = 0; i < ST_MAX_PARAMS; i++) values_out[i] = inst->params[i];
    int rc = st_json_scan(json, len, check_member, &c);
    if (c.failed) return 1;
    if (rc) {
        st_put_str(why, 0, why_cap, "config must be a JSON object of numbers");
        return 1;
    }
    return 0;
}

int st_instance_apply_json(st_instance *inst, const char *json, uint32_t len, char *why,
                           uint32_t why_cap) {
    float values[ST_MAX_PARAMS];
    if (st_instance_check_json(inst, json, len, values, why, why_cap)) return 1;
    for (uint32_t i = 0; i < st_plugin_param_count(); i++)
        if (values[i] != inst->params[i]) st_instance_set_param(inst, i, values[i]);
    return 0;
}

uint32_t st_instance_export_json(const st_instance *inst, char *buf, uint32_t cap) {
    const st_param *params = st_plugin_params();
    uint32_t n = st_put_str(buf, 0, cap, "{");
    for (uint32_t i = 0; i < st_plugin_param_count(); i++) {
        n = st_put_str(buf, n, cap, i ? ",\"" : "\"");
        n = st_put_str(buf, n, cap, params[i].name);
        n = st_put_str(buf, n, cap, "\":");
        n = st_put_float(buf, n, cap, inst->params[i]);
    }
    return st_put_str(buf, n, cap, "}");
}
