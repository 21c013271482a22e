# Mirror of csrc/st_ring.h, st_chain.h and st_audio.h: the chain, its rings and the player.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t
from stellatune.engine.wasmtime cimport (
    wasmtime_context_t, wasm_engine_t, wasm_trap_t, wasmtime_error_t, wasmtime_func_t,
    wasmtime_memory_t,
)
from stellatune.engine.portaudio cimport PaError, PaDeviceIndex, PaTime

cdef extern from "st_chain.h" nogil:
    enum:
        ST_HIST_BUCKETS
        ST_CMD_SET_PARAM
        ST_CMD_BYPASS
        ST_CMD_RESET

    ctypedef struct st_cmd:
        int32_t kind
        int32_t stage
        uint32_t param_id
        float value
    ctypedef struct st_cmdq:
        uint32_t head
        uint32_t tail
    int st_cmdq_push(st_cmdq *q, st_cmd cmd)
    ctypedef struct st_ring:
        float *data
        uint32_t capacity
        uint32_t channels
    void st_ring_init(st_ring *r, float *data, uint32_t capacity, uint32_t channels)
    uint32_t st_ring_read(st_ring *r, float *dst, uint32_t frames)
    uint32_t st_ring_readable(st_ring *r)

    ctypedef int32_t (*st_native_process_fn)(uint32_t, uint32_t, uint32_t, uint32_t)
    ctypedef int32_t (*st_native_set_param_fn)(uint32_t, uint32_t, float)
    ctypedef int32_t (*st_native_reset_fn)(uint32_t, uint32_t)

    ctypedef struct st_stage_stats:
        uint64_t calls
        uint64_t total_ns
        uint64_t min_ns
        uint64_t max_ns
        uint64_t soft_errors
        uint64_t short_frames
        uint64_t rejected_params
        uint64_t timeouts
        uint64_t resets
        uint64_t sink_frames
        uint64_t dropped_frames
        uint64_t hist[128]

    ctypedef struct st_stage:
        int is_native
        int role
        uint32_t guest_ctx
        uint32_t in_offset, out_offset, scratch_offset
        uint32_t channels, max_frames
        wasmtime_context_t *ctx
        wasmtime_func_t process_fn
        wasmtime_func_t set_param_fn
        int has_set_param
        int set_param_results
        wasmtime_func_t reset_fn
        int has_reset
        wasmtime_memory_t memory
        size_t memory_size
        uint64_t deadline_ticks
        uint32_t timeout_limit
        uint32_t timeout_streak
        st_native_process_fn native_process
        st_native_set_param_fn native_set_param
        st_native_reset_fn native_reset
        uint8_t *base
        int user_bypass
        int faulted        # _Atomic int in C; read once a block has finished
        int fault_kind
        int32_t fault_code
        uint64_t fault_block
        wasm_trap_t *fault_trap
        wasmtime_error_t *fault_error
        st_stage_stats stats
        uint32_t last_flags  # _Atomic in C
        int need_reset
        float *pend
        uint32_t pend_cap
        uint32_t pend_frames  # _Atomic in C
        int has_state
        wasmtime_func_t state_size_fn, export_state_fn, state_staging_fn, import_state_fn

    ctypedef struct st_chain:
        st_stage **stages
        int n_stages
        uint32_t channels
        uint32_t max_block
        uint64_t blocks
        uint64_t input_nonfinite
        st_cmdq cmds
        st_stage *xf_old
        int xf_index
        uint32_t xf_len, xf_pos
        int xf_carry
        int32_t xf_carry_rc
        int xf_done  # _Atomic in C
        float *xf_in
        float *xf_out

    enum:
        ST_SAMPLES_NONFINITE
        ST_SAMPLES_SUBNORMAL
    uint64_t st_now_ns()
    unsigned st_samples_scan(const float *x, size_t n)
    void st_samples_flush(float *x, size_t n)
    size_t st_samples_sanitize(float *x, size_t n)
    size_t st_samples_first_nonfinite(const float *x, size_t n)
    unsigned st_samples_copy_check(float *dst, const float *src, size_t n)
    unsigned st_samples_copy_check_daz(float *dst, const float *src, size_t n)
    uint64_t st_check_time(float *buf, float *inp, const float *out, size_t n, uint32_t iterations,
                           int checked)

    enum:
        ST_CALL_WHOLE
        ST_CALL_TIMER
        ST_CALL_ENTRY
        ST_CALL_GROW_CHECK
        ST_CALL_DEADLINE
        ST_CALL_PARTS
    int st_stage_time_calls(st_stage *s, uint32_t frames, uint32_t iterations, uint64_t *out_ns)

    void st_set_interrupt_code(uint8_t code)
    int st_clock_init()
    void st_stage_reset_stats(st_stage *s)
    void st_stage_bind_memory(st_stage *s)
    int32_t st_stage_set_param(st_stage *s, uint32_t id, float value, uint64_t block)
    int32_t st_stage_reset(st_stage *s, uint64_t block)
    int32_t st_stage_carry_state(st_stage *src, st_stage *dst, uint64_t block)
    void st_chain_xfade_carry(st_chain *c)
    uint32_t st_chain_sink_pending(st_chain *c)
    void st_chain_offer_pending(st_chain *c)
    void st_chain_drop_pending(st_chain *c)
    void st_chain_poll_sinks(st_chain *c)
    int st_chain_sinks_drained(st_chain *c)
    void st_chain_apply_commands(st_chain *c)
    void st_chain_process(st_chain *c, float *buf, uint32_t frames)
    uint64_t st_chain_time(st_chain *c, float *buf, const float *src, uint32_t frames,
                           uint32_t iterations, int run_chain)

    ctypedef struct st_ticker:
        pass
    int st_ticker_acquire(st_ticker *t, wasm_engine_t *engine, uint32_t period_us)
    void st_ticker_release(st_ticker *t)
    void st_ticker_close(st_ticker *t)
    int st_ticker_alive(st_ticker *t)

cdef extern from "st_audio.h" nogil:
    ctypedef struct st_player:
        float *capture
        uint64_t capture_capacity
        uint32_t in_channels
        uint64_t capture_pos
        uint64_t callbacks
        uint64_t output_underflows
        uint64_t input_overflows
        uint64_t ring_underruns
        uint64_t ring_underrun_frames
        uint64_t frames_out
        uint64_t ring_fill_sum
        uint64_t ring_fill_min
        uint64_t render_max_ns
        uint64_t render_hist[128]
        uint64_t late_renders
        uint64_t late_wakeups
        int source_done
        int finished
        uint32_t channels
        uint64_t swaps
        uint64_t out_dropped
        int ramp_first
        uint64_t sink_waits
        int stop
        double output_latency

    void st_player_init(st_player *p, st_chain *chain, float *ring_data, uint32_t ring_frames,
                        uint32_t channels, uint32_t frames, double sample_rate,
                        int chain_in_callback, float *scratch)
    uint64_t st_player_push(st_player *p, float *buf, uint64_t frames)
    uint32_t st_player_buffered(st_player *p)
    PaError st_player_open_device(st_player *p, PaDeviceIndex out_device, PaDeviceIndex in_device,
                                  PaTime suggested_latency)
    PaError st_player_start_device(st_player *p)
    PaError st_player_close_device(st_player *p)
    int st_player_start_clock(st_player *p)
    void st_player_stop_clock(st_player *p)
    PaError st_pa_initialize_quietly()
    void st_player_ctl_setup(st_player *p, uint32_t fade_frames, float gain_coef, uint32_t prime_frames,
                             int offline, st_ring *out_ring)
    void st_player_ctl_pause(st_player *p, int paused)
    void st_player_ctl_gain(st_player *p, float gain)
    void st_player_ctl_gain_now(st_player *p, float gain)
    uint64_t st_player_ctl_flush(st_player *p)
    int st_player_ctl_flush_acked(st_player *p, uint64_t gen)
    void st_player_ctl_flush_now(st_player *p)
    int st_player_ctl_post_chain(st_player *p, st_chain *c)
    int st_player_ctl_chain_pending(st_player *p)
    void st_player_ctl_set_chain(st_player *p, st_chain *c)
    uint32_t st_player_try_push(st_player *p, const float *buf, uint32_t frames)
    uint64_t st_player_consumed(st_player *p)
    uint64_t st_player_pushed(st_player *p)
