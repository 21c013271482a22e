# cython: language_level=3, boundscheck=False, wraparound=False
"""The real-time engine's compiled core: the only code here that runs without the GIL.

Python builds wasm stores and instances with wasmtime-py (control plane) and hands this module
the raw addresses of their C objects; from then on blocks are processed by the C loop in
csrc/st_chain.c, either offline (``Chain.process``) or on the audio thread (``Player``). The
classes here are thin owners of C structs; the public API is stellatune.engine.
"""
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, uintptr_t
from libc.string cimport memcpy, memset

from stellatune.engine.wasmtime cimport (
    st_wt, st_wasmtime_resolve, wasm_byte_vec_t, wasm_engine_t, wasmtime_context_t,
    wasmtime_func_t, wasmtime_memory_t, wasmtime_val_raw_t,
)
from stellatune.engine cimport portaudio as pa
from stellatune.engine.chain cimport *

import numpy as np

# Defined with the rest of the error tree; only the text of a PaError needs this module.
from stellatune.errors import PortAudioError

FAULT_KINDS = {0: None, 1: "trap", 2: "timeout", 3: "bad-frames", 4: "memory-grow", 5: "error-code",
               6: "non-finite"}

_resolved = False

# Picked once, at import: the stage timer must not change under a running chain.
_stage_clock = "tsc" if st_clock_init() else "monotonic"


def stage_clock() -> str:
    """The timer behind the per-stage stats: ``"tsc"`` (invariant TSC, calibrated to ns at
    import) or ``"monotonic"`` (clock_gettime, where no invariant TSC was found)."""
    return _stage_clock


def struct_sizes() -> dict:
    """Sizes of our C declarations, to compare with wasmtime-py's ctypes layouts."""
    return {"func": sizeof(wasmtime_func_t), "memory": sizeof(wasmtime_memory_t),
            "val_raw": sizeof(wasmtime_val_raw_t)}


def resolve_wasmtime(str library_path, int interrupt_trap_code) -> None:
    """Fill the C function table from the libwasmtime wasmtime-py loaded (idempotent)."""
    global _resolved
    cdef char err[512]
    if _resolved:
        return
    if st_wasmtime_resolve(library_path.encode(), err, sizeof(err)) != 0:
        raise RuntimeError(err.decode(errors="replace"))
    st_set_interrupt_code(<uint8_t>interrupt_trap_code)
    _resolved = True


def scan_samples(const float[:, ::1] block) -> tuple:
    """``(non_finite, subnormal)``: whether ``block`` (frames x channels, float32, C order) holds
    a NaN/Inf, and a non-zero subnormal. The check the block loop runs on every DSP output."""
    cdef unsigned found = 0
    if block.shape[0] and block.shape[1]:
        with nogil:
            found = st_samples_scan(&block[0, 0], <size_t>(block.shape[0] * block.shape[1]))
    return bool(found & ST_SAMPLES_NONFINITE), bool(found & ST_SAMPLES_SUBNORMAL)


def sanitize_samples(float[:, ::1] block) -> int:
    """In place: NaN/Inf become 0 and subnormals a zero of their sign; returns how many samples
    were NaN/Inf. What the block loop does to the chain's input."""
    cdef size_t n = <size_t>(block.shape[0] * block.shape[1])
    cdef size_t bad = 0
    if n:
        with nogil:
            if st_samples_scan(&block[0, 0], n):
                bad = st_samples_sanitize(&block[0, 0], n)
    return bad


def first_nonfinite(const float[:, ::1] block) -> int:
    """Index (frame * channels + channel) of the first NaN/Inf in ``block``, or its size."""
    cdef size_t n = <size_t>(block.shape[0] * block.shape[1])
    if n == 0:
        return 0
    return st_samples_first_nonfinite(&block[0, 0], n)


def time_scan(const float[:, ::1] block, uint32_t iterations) -> float:
    """Mean nanoseconds of one :func:`scan_samples` of ``block``, looped in C without the GIL
    (the benchmark of the per-stage check)."""
    cdef size_t n = <size_t>(block.shape[0] * block.shape[1])
    cdef uint64_t t0, t1
    cdef unsigned sink = 0
    cdef uint32_t i
    if n == 0 or iterations == 0:
        raise ValueError("need a non-empty block and at least one iteration")
    with nogil:
        t0 = st_now_ns()
        for i in range(iterations):
            sink |= st_samples_scan(&block[0, 0], n)
        t1 = st_now_ns()
    if sink & 0x80000000u:  # never: keeps the loop from being optimised away
        print(sink)
    return (<double>(t1 - t0)) / iterations


def copy_check(const float[:, ::1] block, bint daz=True) -> tuple:
    """``(copy, non_finite)``: the block loop's fused copy of ``block`` (subnormals zeroed in the
    copy, keeping the sign) and whether ``block`` held a NaN/Inf. ``daz``: run it as the chain
    does (FTZ|DAZ set); else as any other caller (the exact integer path unless DAZ is set)."""
    cdef size_t n = <size_t>(block.shape[0] * block.shape[1])
    out = np.empty((block.shape[0], block.shape[1]), dtype=np.float32)
    cdef float[:, ::1] o = out
    cdef unsigned found = 0
    if n:
        with nogil:
            if daz:
                found = st_samples_copy_check_daz(&o[0, 0], &block[0, 0], n)
            else:
                found = st_samples_copy_check(&o[0, 0], &block[0, 0], n)
    return out, bool(found & ST_SAMPLES_NONFINITE)

def time_check(const float[:, ::1] block, uint32_t iterations) -> float:
    """Mean nanoseconds the block loop's non-finite/subnormal check adds per block of
    ``block``'s size to a chain of one DSP stage (the benchmark of the check): the fused copies
    (chain input into the stage, its output tested and copied back) minus plain copies, looped
    in C without the GIL (csrc/st_chain.c, st_check_time)."""
    cdef size_t n = <size_t>(block.shape[0] * block.shape[1])
    cdef uint64_t with_check, without
    if n == 0 or iterations == 0:
        raise ValueError("need a non-empty block and at least one iteration")
    buf = np.array(block, dtype=np.float32, order="C")
    inp = np.empty_like(buf)
    out = np.array(block, dtype=np.float32, order="C")
    cdef float[:, ::1] b = buf
    cdef float[:, ::1] i = inp
    cdef float[:, ::1] o = out
    with nogil:
        without = st_check_time(&b[0, 0], &i[0, 0], &o[0, 0], n, iterations, 0)
        with_check = st_check_time(&b[0, 0], &i[0, 0], &o[0, 0], n, iterations, 1)
    return max(0.0, (<double>with_check - <double>without) / iterations)


cdef str _take_vec(wasm_byte_vec_t *vec):
    text = vec.data[:vec.size].decode("utf-8", errors="replace") if vec.size else ""
    st_wt.byte_vec_delete(vec)
    return text


cdef class CoreStage:
    """One stage as the C loop sees it; built by stellatune.engine.stages.HotPathStage."""

    cdef st_stage s
    cdef object _fault_message
    cdef readonly object keepalive  # the Python objects whose C state `s` points into

    def __cinit__(self):
        memset(&self.s, 0, sizeof(st_stage))
        st_stage_reset_stats(&self.s)
        self._fault_message = None

    @staticmethod
    def wasm(*, uintptr_t context, uintptr_t process_func, uintptr_t set_param_func,
             int set_param_results, uintptr_t reset_func, uintptr_t memory, size_t memory_size,
             uint32_t guest_ctx, int role, uint32_t in_offset, uint32_t out_offset,
             uint32_t channels, uint32_t max_frames, uint64_t deadline_ticks,
             uint32_t timeout_limit, object keepalive, tuple state_funcs=()):
        """A wasm stage from the addresses of wasmtime-py's ``_func``/``_memory``/context.
        ``state_funcs``: the addresses of the four optional state-carry exports (size, export,
        staging, import), or empty."""
        if not _resolved:
            raise RuntimeError("resolve_wasmtime() was not called")
        cdef CoreStage st = CoreStage()
        st._layout(role, guest_ctx, in_offset, out_offset, channels, max_frames)
        st.s.ctx = <wasmtime_context_t *>context
        memcpy(&st.s.process_fn, <void *>process_func, sizeof(wasmtime_func_t))
        if set_param_func:
            memcpy(&st.s.set_param_fn, <void *>set_param_func, sizeof(wasmtime_func_t))
            st.s.has_set_param = 1
            st.s.set_param_results = set_param_results
        if reset_func:
            memcpy(&st.s.reset_fn, <void *>reset_func, sizeof(wasmtime_func_t))
            st.s.has_reset = 1
        memcpy(&st.s.memory, <void *>memory, sizeof(wasmtime_memory_t))
        st.s.memory_size = memory_size
        st_stage_bind_memory(&st.s)
        st.s.deadline_ticks = deadline_ticks
        st.s.timeout_limit = max(1, timeout_limit)
        if len(state_funcs) == 4:
            memcpy(&st.s.state_size_fn, <void *><uintptr_t>state_funcs[0], sizeof(wasmtime_func_t))
            memcpy(&st.s.export_state_fn, <void *><uintptr_t>state_funcs[1], sizeof(wasmtime_func_t))
            memcpy(&st.s.state_staging_fn, <void *><uintptr_t>state_funcs[2], sizeof(wasmtime_func_t))
            memcpy(&st.s.import_state_fn, <void *><uintptr_t>state_funcs[3], sizeof(wasmtime_func_t))
            st.s.has_state = 1
        st.keepalive = keepalive
        st._keep_frames(role, channels, max_frames)
        return st

    @staticmethod
    def native(*, uintptr_t process_fn, uintptr_t set_param_fn, uintptr_t reset_fn, uintptr_t base,
               uint32_t guest_ctx, int role, uint32_t in_offset, uint32_t out_offset,
               uint32_t channels, uint32_t max_frames, object keepalive):
        """A native stage from the addresses of the ``.so``'s ``st_hot_*`` functions."""
        cdef CoreStage st = CoreStage()
        st._layout(role, guest_ctx, in_offset, out_offset, channels, max_frames)
        st.s.is_native = 1
        st.s.native_process = <st_native_process_fn>process_fn
        if set_param_fn:
            st.s.native_set_param = <st_native_set_param_fn>set_param_fn
            st.s.has_set_param = 1
        if reset_fn:
            st.s.native_reset = <st_native_reset_fn>reset_fn
            st.s.has_reset = 1
        st.s.base = <uint8_t *>base
        st.keepalive = keepalive
        st._keep_frames(role, channels, max_frames)
        return st

    cdef _keep_frames(self, int role, uint32_t channels, uint32_t max_frames):
        """Sinks: the buffer of frames offered but not taken (back-pressure), made here, on
        the control thread, so the audio thread never allocates."""
        if role != 2:
            return
        self.s.pend = <float *>PyMem_Calloc(<size_t>max_frames * channels, sizeof(float))
        if self.s.pend == NULL:
            raise MemoryError()
        self.s.pend_cap = max_frames

    cdef _layout(self, int role, uint32_t guest_ctx, uint32_t in_offset, uint32_t out_offset,
                 uint32_t channels, uint32_t max_frames):
        self.s.role = role
        self.s.guest_ctx = guest_ctx
        self.s.in_offset = in_offset
        self.s.out_offset = out_offset
        self.s.scratch_offset = in_offset - 64
        self.s.channels = channels
        self.s.max_frames = max_frames

    def set_param_now(self, uint32_t param_id, float value) -> int:
        """Call set_param on this thread (only while no chain runs the stage)."""
        cdef int32_t rc
        with nogil:
            rc = st_stage_set_param(&self.s, param_id, value, 0)
        return rc

    def reset_now(self) -> int:
        """Call st_hot_reset on this thread (only while no chain runs the stage)."""
        cdef int32_t rc
        with nogil:
            rc = st_stage_reset(&self.s, 0)
        return rc

    @property
    def has_set_param(self) -> bool:
        return bool(self.s.has_set_param)

    @property
    def has_reset(self) -> bool:
        return bool(self.s.has_reset)

    @property
    def deadline_ticks(self) -> int:
        """Epoch ticks each call may run (0: no watchdog); set only while no chain runs it."""
        return self.s.deadline_ticks

    @deadline_ticks.setter
    def deadline_ticks(self, uint64_t ticks):
        if self.s.deadline_ticks:  # a stage without the watchdog stays without it
            self.s.deadline_ticks = max(<uint64_t>1, ticks)

    @property
    def faulted(self) -> bool:
        return bool(self.s.faulted)

    @property
    def has_state(self) -> bool:
        return bool(self.s.has_state)

    @property
    def last_flags(self) -> int:
        """ST_HOT_FLAG_* of the module's last process call (or drain poll)."""
        return self.s.last_flags

    @property
    def pending_frames(self) -> int:
        """Sinks: frames offered but not taken yet (offered again first)."""
        return self.s.pend_frames

    def poll_now(self) -> int:
        """Sinks: a drain poll (zero-frame process) on this thread, idle only; the flags."""
        cdef st_chain c
        cdef st_stage *one = &self.s
        memset(&c, 0, sizeof(st_chain))
        c.stages = &one
        c.n_stages = 1
        c.channels = self.s.channels
        with nogil:
            st_chain_poll_sinks(&c)
        return self.s.last_flags

    @property
    def user_bypass(self) -> bool:
        return bool(self.s.user_bypass)

    @user_bypass.setter
    def user_bypass(self, bint value):
        self.s.user_bypass = value

    def fault(self):
        """``(kind, code, block, message)`` of the fault that bypassed this stage, or None."""
        cdef wasm_byte_vec_t vec
        if not self.s.faulted:
            return None
        if self._fault_message is None:
            # The audio thread published `faulted` after storing these and never touches them again.
            if self.s.fault_trap != NULL:
                st_wt.trap_message(self.s.fault_trap, &vec)
                self._fault_message = _take_vec(&vec).rstrip("\0")
                st_wt.trap_delete(self.s.fault_trap)
                self.s.fault_trap = NULL
            elif self.s.fault_error != NULL:
                st_wt.error_message(self.s.fault_error, &vec)
                self._fault_message = _take_vec(&vec)
                st_wt.error_delete(self.s.fault_error)
                self.s.fault_error = NULL
            else:
                self._fault_message = ""
        return (FAULT_KINDS[self.s.fault_kind], self.s.fault_code, self.s.fault_block,
                self._fault_message)

    def timing(self) -> dict:
        """Raw per-call counters and the log-bucket histogram (4 buckets per octave of ns)."""
        cdef st_stage_stats *st = &self.s.stats
        return {"calls": st.calls, "total_ns": st.total_ns,
                "min_ns": st.min_ns if st.calls else 0, "max_ns": st.max_ns,
                "soft_errors": st.soft_errors, "short_frames": st.short_frames,
                "rejected_params": st.rejected_params, "timeouts": st.timeouts,
                "resets": st.resets,
                "sink_frames": st.sink_frames, "dropped_frames": st.dropped_frames,
                "hist": [st.hist[i] for i in range(ST_HIST_BUCKETS)]}

    def reset_timing(self) -> None:
        st_stage_reset_stats(&self.s)

    def time_calls(self, uint32_t frames, uint32_t iterations) -> dict:
        """Mean ns of the parts of one process call, each looped alone in C (only while no chain
        runs the stage; it processes whatever its in region holds): ``call`` as the block loop
        makes it, ``timer`` (one stage-timer read), and for wasm ``entry`` (the bare wasmtime
        call), ``grow_check`` and ``deadline`` (the epoch-deadline set). Raises
        ``RuntimeError`` if the stage is or becomes faulted."""
        cdef uint64_t ns[ST_CALL_PARTS]
        cdef int rc
        if iterations == 0:
            raise ValueError("need at least one iteration")
        with nogil:
            rc = st_stage_time_calls(&self.s, frames, iterations, ns)
        if rc != 0:
            raise RuntimeError("the stage faulted while its calls were timed")
        parts = {"call": ns[ST_CALL_WHOLE], "timer": ns[ST_CALL_TIMER]}
        if not self.s.is_native:
            parts.update(entry=ns[ST_CALL_ENTRY], grow_check=ns[ST_CALL_GROW_CHECK],
                         deadline=ns[ST_CALL_DEADLINE])
        return {name: total / iterations for name, total in parts.items()}

    def __dealloc__(self):
        PyMem_Free(self.s.pend)
        if self.s.fault_trap != NULL:
            st_wt.trap_delete(self.s.fault_trap)
        if self.s.fault_error != NULL:
            st_wt.error_delete(self.s.fault_error)


def carry_state(CoreStage src, CoreStage dst) -> int:
    """Carry ``src``'s state into ``dst`` now (neither may be running): the import's status,
    -1 when a call faulted, -2 when either module lacks the optional exports."""
    cdef int32_t rc
    with nogil:
        rc = st_stage_carry_state(&src.s, &dst.s, 0)
    return rc


cdef class Chain:
    """The stages in order plus the command queue the audio thread drains each block."""

    cdef st_chain c
    cdef readonly list stages
    cdef readonly object xfade_old  # the CoreStage faded out (kept alive while the chain is)

    def __cinit__(self, list stages, uint32_t channels, uint32_t max_block):
        memset(&self.c, 0, sizeof(st_chain))
        self.stages = list(stages)
        self.c.stages = <st_stage **>PyMem_Calloc(max(1, len(stages)), sizeof(st_stage *))
        if self.c.stages == NULL:
            raise MemoryError()
        cdef CoreStage st
        for i, st in enumerate(self.stages):
            self.c.stages[i] = &st.s
        self.c.n_stages = len(stages)
        self.c.channels = channels
        self.c.max_block = max_block

    def process(self, float[:, ::1] buf) -> None:
        """Run every live stage over ``buf`` (frames x channels, C order) in place."""
        if buf.shape[0] == 0:
            return
        if <uint32_t>buf.shape[1] != self.c.channels:
            raise ValueError(f"expected {self.c.channels} channels, got {buf.shape[1]}")
        with nogil:
            st_chain_process(&self.c, &buf[0, 0], <uint32_t>buf.shape[0])

    def send(self, str kind, int stage, uint32_t param_id=0, float value=0.0) -> bool:
        """Queue a command for the next block; False when the queue is full."""
        cdef st_cmd cmd
        if kind == "set_param":
            cmd.kind = ST_CMD_SET_PARAM
        elif kind == "bypass":
            cmd.kind = ST_CMD_BYPASS
        elif kind == "reset":
            cmd.kind = ST_CMD_RESET
        else:
            raise ValueError(f"unknown command {kind!r}")
        cmd.stage = stage
        cmd.param_id = param_id
        cmd.value = value
        return bool(st_cmdq_push(&self.c.cmds, cmd))

    def apply_commands(self) -> None:
        """Apply the queued commands now (only while no driver runs the chain)."""
        with nogil:
            st_chain_apply_commands(&self.c)

    def time_blocks(self, float[:, ::1] source, uint32_t iterations) -> float:
        """Mean nanoseconds per ``process`` of ``source`` (one block), looped without the GIL.

        Each iteration starts from a fresh copy of ``source`` (processing in place would feed a
        stage its own output); the copies are timed separately and subtracted.
        """
        cdef uint32_t frames = source.shape[0]
        if frames == 0 or iterations == 0:
            raise ValueError("need at least one frame and one iteration")
        if frames > self.c.max_block:
            raise ValueError(f"a block is at most {self.c.max_block} frames")
        if <uint32_t>source.shape[1] != self.c.channels:
            raise ValueError(f"expected {self.c.channels} channels, got {source.shape[1]}")
        work = np.empty_like(np.asarray(source))
        cdef float[:, ::1] w = work
        cdef uint64_t with_chain, copies_only
        with nogil:
            copies_only = st_chain_time(&self.c, &w[0, 0], &source[0, 0], frames, iterations, 0)
            with_chain = st_chain_time(&self.c, &w[0, 0], &source[0, 0], frames, iterations, 1)
        return max(0.0, (<double>with_chain - <double>copies_only) / iterations)

    def set_crossfade(self, int index, CoreStage old, uint32_t frames, bint carry) -> None:
        """Before the chain runs: slot ``index`` (a recreated stage) also runs ``old`` on the
        same input for ``frames`` frames, mixed out with equal-power gains; ``carry`` copies
        ``old``'s state into the new stage first (the ABI's optional state carry)."""
        if not 0 <= index < self.c.n_stages:
            raise IndexError(index)
        cdef size_t n = <size_t>self.c.max_block * self.c.channels
        if self.c.xf_in == NULL:
            self.c.xf_in = <float *>PyMem_Calloc(n, sizeof(float))
            self.c.xf_out = <float *>PyMem_Calloc(n, sizeof(float))
            if self.c.xf_in == NULL or self.c.xf_out == NULL:
                raise MemoryError()
        self.xfade_old = old
        self.c.xf_old = &old.s
        self.c.xf_index = index
        self.c.xf_len = frames
        self.c.xf_pos = 0
        self.c.xf_carry = carry
        self.c.xf_carry_rc = 0
        self.c.xf_done = 1 if frames == 0 and not carry else 0

    def xfade_carry(self) -> int:
        """Run the pending state carry now (only while no driver runs the chain)."""
        with nogil:
            st_chain_xfade_carry(&self.c)
        return self.c.xf_carry_rc

    @property
    def xfade_done(self) -> bool:
        """True once the crossfade (and the state carry) ran, or there is none."""
        return self.c.xf_old == NULL or bool(self.c.xf_done)

    @property
    def xfade_carry_rc(self) -> int:
        """The state carry's result (0 ok, -2 not supported by both modules, ...)."""
        return self.c.xf_carry_rc

    @property
    def sink_pending(self) -> int:
        """Frames the chain's live sinks keep (offered again before new audio)."""
        return st_chain_sink_pending(&self.c)

    def offer_pending(self) -> None:
        """Offer every sink its kept frames once (only while no driver runs the chain)."""
        with nogil:
            st_chain_offer_pending(&self.c)

    @property
    def sinks_drained(self) -> bool:
        return bool(st_chain_sinks_drained(&self.c))

    @property
    def blocks(self) -> int:
        return self.c.blocks

    @property
    def pending_commands(self) -> int:
        """Commands queued that no block has applied yet."""
        return <uint32_t>(self.c.cmds.head - self.c.cmds.tail)

    @property
    def input_nonfinite(self) -> int:
        """Samples of the chain's input that were NaN/Inf and were replaced by 0."""
        return self.c.input_nonfinite

    def __dealloc__(self):
        PyMem_Free(self.c.stages)
        PyMem_Free(self.c.xf_in)
        PyMem_Free(self.c.xf_out)


cdef class EpochTicker:
    """A C thread incrementing a wasmtime engine's epoch every ``period_us`` while it has users,
    and for a linger (``ST_TICKER_LINGER_TICKS`` periods) after the last one left."""

    cdef st_ticker t
    # The engine the thread ticks. The thread takes a reference of its own (in C) when it
    # starts, so it may linger after its owner's Engine object is gone; this is only the check
    # that one ticker serves one engine.
    cdef uintptr_t _engine

    def __cinit__(self):
        memset(&self.t, 0, sizeof(st_ticker))

    def acquire(self, uintptr_t engine, uint32_t period_us) -> None:
        """Use the ticker of the engine at ``engine`` (a live ``wasm_engine_t *``)."""
        cdef int rc
        if self._engine and self._engine != engine:
            raise ValueError("an EpochTicker serves one engine")
        self._engine = engine
        with nogil:
            rc = st_ticker_acquire(&self.t, <wasm_engine_t *>engine, period_us)
        if rc != 0:
            raise OSError("could not start the epoch ticker thread")

    def release(self) -> None:
        with nogil:
            st_ticker_release(&self.t)

    @property
    def alive(self) -> bool:
        """Whether the thread runs (it lingers a while after the last release)."""
        return st_ticker_alive(&self.t) != 0

    def __dealloc__(self):
        with nogil:
            st_ticker_close(&self.t)


def _check(int err, str what):
    if err < 0:
        raise PortAudioError(what, err, pa.Pa_GetErrorText(err).decode(errors="replace"))


def pa_initialize() -> None:
    """Pa_Initialize (reference counted by PortAudio; probes JACK servers at the first call)."""
    _check(st_pa_initialize_quietly(), "Pa_Initialize")


def pa_terminate() -> None:
    pa.Pa_Terminate()


cdef class Player:
    """Ring + driver for one playback; every buffer is allocated here, before the stream starts."""

    cdef st_player p
    cdef readonly Chain chain
    cdef object _ring, _scratch, _capture
    cdef bint _device_open, _clock_running
    cdef st_ring _out          # rendered blocks for a writer thread (setup_live out_frames)
    cdef object _out_data, _posted

    def __cinit__(self, Chain chain, uint32_t ring_frames, uint32_t channels, uint32_t frames,
                  double sample_rate, bint chain_in_callback):
        if ring_frames & (ring_frames - 1):
            raise ValueError("ring_frames must be a power of two")
        self.chain = chain
        self._ring = np.zeros((ring_frames, channels), dtype=np.float32)
        self._scratch = np.zeros((frames, channels), dtype=np.float32)
        cdef float[:, ::1] ring = self._ring
        cdef float[:, ::1] scratch = self._scratch
        st_player_init(&self.p, &chain.c, &ring[0, 0], ring_frames, channels, frames, sample_rate,
                       chain_in_callback, &scratch[0, 0])

    def push(self, float[:, ::1] buf) -> int:
        """Push frames into the ring, waiting (without the GIL) while it is full."""
        cdef uint64_t n = buf.shape[0]
        cdef uint64_t done
        if n == 0:
            return 0
        with nogil:
            done = st_player_push(&self.p, &buf[0, 0], n)
        return done

    def source_done(self) -> None:
        self.p.source_done = 1

    def request_stop(self) -> None:
        self.p.stop = 1

    @property
    def finished(self) -> bool:
        return bool(self.p.finished)

    @property
    def stopping(self) -> bool:
        return bool(self.p.stop)

    @property
    def buffered(self) -> int:
        return st_player_buffered(&self.p)

    def open_device(self, int out_device, int in_device, uint32_t in_channels,
                    uint64_t capture_frames, double suggested_latency) -> None:
        """Open the PortAudio stream (duplex with capture when ``in_device`` >= 0)."""
        cdef float[:, ::1] cap
        if in_device >= 0 and capture_frames:
            self._capture = np.zeros((capture_frames, in_channels), dtype=np.float32)
            cap = self._capture
            self.p.capture = &cap[0, 0]
            self.p.capture_capacity = capture_frames
            self.p.in_channels = in_channels
        _check(st_player_open_device(&self.p, out_device,
                                     in_device if in_device >= 0 else pa.paNoDevice,
                                     suggested_latency), "Pa_OpenStream")
        self._device_open = True

    def start_device(self) -> None:
        _check(st_player_start_device(&self.p), "Pa_StartStream")

    def start_clock(self) -> None:
        if st_player_start_clock(&self.p) != 0:
            raise OSError("could not start the engine clock thread")
        self._clock_running = True

    def close(self) -> None:
        """Stop the driver (stream or clock) and wait for it; idempotent."""
        cdef PaError err = 0
        self.p.stop = 1
        if self._device_open:
            with nogil:
                err = st_player_close_device(&self.p)
            self._device_open = False
        if self._clock_running:
            with nogil:
                st_player_stop_clock(&self.p)
            self._clock_running = False
        _check(err, "Pa_StopStream/Pa_CloseStream")

    # --- long-lived player controls (stellatune.compose.player; csrc/st_audio.h st_player_ctl_*)

    def setup_live(self, uint32_t fade_frames, float gain_coef, uint32_t prime_frames, bint offline,
                   uint32_t out_frames) -> None:
        """Before the driver starts: pause/flush fade length, volume smoothing coefficient per
        frame, post-flush prefill, the offline clock, and (``out_frames`` > 0, a power of two) a
        ring of the rendered blocks that :meth:`read_output` drains."""
        cdef float[:, ::1] data
        if out_frames:
            if out_frames & (out_frames - 1):
                raise ValueError("out_frames must be a power of two")
            self._out_data = np.zeros((out_frames, self.p.channels), dtype=np.float32)
            data = self._out_data
            st_ring_init(&self._out, &data[0, 0], out_frames, self.p.channels)
        st_player_ctl_setup(&self.p, fade_frames, gain_coef, prime_frames, offline,
                            &self._out if out_frames else NULL)

    def read_output(self, uint32_t max_frames):
        """Up to ``max_frames`` rendered frames from the output ring (a new array)."""
        if self._out_data is None:
            return None
        cdef uint32_t n = min(max_frames, st_ring_readable(&self._out))
        out = np.empty((n, self.p.channels), dtype=np.float32)
        cdef float[:, ::1] o = out
        if n:
            with nogil:
                st_ring_read(&self._out, &o[0, 0], n)
        return out

    def pause(self, bint paused) -> None:
        st_player_ctl_pause(&self.p, paused)

    def set_gain(self, float gain, bint immediate=False) -> None:
        """The volume target (linear), reached by per-sample smoothing; ``immediate`` (only
        before the driver starts) starts there, so a volume set before play has no ramp."""
        if immediate:
            st_player_ctl_gain_now(&self.p, gain)
        else:
            st_player_ctl_gain(&self.p, gain)

    def request_flush(self) -> int:
        return st_player_ctl_flush(&self.p)

    def flush_acked(self, uint64_t gen) -> bool:
        return bool(st_player_ctl_flush_acked(&self.p, gen))

    def flush_now(self) -> None:
        """Drain the ring and ack every flush (only while no driver runs)."""
        st_player_ctl_flush_now(&self.p)

    def post_chain(self, Chain chain) -> bool:
        """Hand ``chain`` to the driver for its next block; False while one is still pending.
        :meth:`chain_taken` says when the driver took it (the old chain no longer runs)."""
        if self._posted is not None:
            return False
        if not st_player_ctl_post_chain(&self.p, &chain.c):
            return False
        self._posted = chain
        return True

    def chain_taken(self) -> bool:
        """True once no posted chain waits (``self.chain`` is then the one the driver runs)."""
        if self._posted is None:
            return True
        if st_player_ctl_chain_pending(&self.p):
            return False
        self.chain, self._posted = self._posted, None
        return True

    def set_chain_now(self, Chain chain) -> None:
        """Swap the chain directly (only while no driver runs)."""
        st_player_ctl_set_chain(&self.p, &chain.c)
        self.chain, self._posted = chain, None

    def try_push(self, const float[:, ::1] buf) -> int:
        """Push what fits of ``buf`` now (no waiting, no chain); returns frames pushed."""
        cdef uint32_t n = buf.shape[0]
        if n == 0:
            return 0
        with nogil:
            n = st_player_try_push(&self.p, &buf[0, 0], n)
        return n

    def source_more(self) -> None:
        """The feeder has audio again after :meth:`source_done` (call after pushing it)."""
        self.p.source_done = 0
        self.p.finished = 0

    @property
    def consumed(self) -> int:
        """Stream frames the driver took from the ring (played, or drained by a flush)."""
        return st_player_consumed(&self.p)

    @property
    def pushed(self) -> int:
        return st_player_pushed(&self.p)

    @property
    def swaps(self) -> int:
        return self.p.swaps

    @property
    def ramp_first(self) -> bool:
        return bool(self.p.ramp_first)

    @ramp_first.setter
    def ramp_first(self, bint on):
        """Volume and fades before the chain (a chain ending in a sink); set before starting."""
        self.p.ramp_first = on

    @property
    def sink_waits(self) -> int:
        """Driver ticks spent offering a sink's kept frames again (back-pressure)."""
        return self.p.sink_waits

    @property
    def output_dropped(self) -> int:
        return self.p.out_dropped

    def captured(self):
        """The recorded input so far (a copy), or None without capture."""
        if self._capture is None:
            return None
        return self._capture[: self.p.capture_pos].copy()

    def counters(self) -> dict:
        cdef uint64_t cb = self.p.callbacks
        return {"callbacks": cb, "device_underflows": self.p.output_underflows,
                "input_overflows": self.p.input_overflows,
                "ring_underruns": self.p.ring_underruns,
                "ring_underrun_frames": self.p.ring_underrun_frames,
                "frames_played": self.p.frames_out,
                "mean_ring_fill_frames": (self.p.ring_fill_sum / cb) if cb else 0.0,
                "min_ring_fill_frames": self.p.ring_fill_min if cb else 0,
                "render_max_ns": self.p.render_max_ns,
                "render_hist": [self.p.render_hist[i] for i in range(ST_HIST_BUCKETS)],
                "late_renders": self.p.late_renders, "late_wakeups": self.p.late_wakeups,
                "output_latency_s": self.p.output_latency}

    def __dealloc__(self):
        self.p.stop = 1
        if self._device_open:
            st_player_close_device(&self.p)
        if self._clock_running:
            st_player_stop_clock(&self.p)
