"""The epoch ticker: shared by the control calls that build a stage, lingering after the last
user, and restarted on demand; a looping module is still interrupted through it."""

from __future__ import annotations

import gc
import threading
import time

import wasmtime

from stellatune.engine import _core

LINGER_S = 0.25  # ST_TICKER_LINGER_TICKS (250) x the 1 ms period


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def _address(engine: wasmtime.Engine) -> int:
    import ctypes

    return ctypes.cast(engine.ptr(), ctypes.c_void_p).value or 0


def _wait_until(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_the_thread_lingers_after_the_last_user_then_leaves_and_comes_back():
    engine, ticker = _engine(), _core.EpochTicker()
    assert not ticker.alive
    ticker.acquire(_address(engine), 1000)
    threads = threading.active_count()
    ticker.release()
    ticker.acquire(_address(engine), 1000)  # within the linger: the same thread
    assert ticker.alive
    ticker.release()
    assert _wait_until(lambda: not ticker.alive, LINGER_S + 5.0), "the ticker never left after its linger"
    ticker.acquire(_address(engine), 1000)  # after it left: a new one
    assert ticker.alive
    assert threading.active_count() == threads  # a C thread: Python never sees it
    ticker.release()


def test_a_busy_ticker_keeps_running_past_the_linger():
    engine, ticker = _engine(), _core.EpochTicker()
    ticker.acquire(_address(engine), 1000)
    time.sleep(LINGER_S * 2)
    assert ticker.alive
    ticker.release()


def test_the_ticker_keeps_its_engine_alive_while_its_thread_lingers():
    ticker = _core.EpochTicker()
    engine = _engine()
    ticker.acquire(_address(engine), 1000)
    ticker.release()
    del engine  # the lingering thread still advances this engine's epoch: it must not be freed
    time.sleep(0.05)
    assert ticker.alive


def test_freeing_the_ticker_stops_its_thread_without_waiting_out_the_linger():
    engine, ticker = _engine(), _core.EpochTicker()
    ticker.acquire(_address(engine), 1000)
    ticker.release()
    t0 = time.monotonic()
    del ticker  # st_ticker_close: wakes the thread and joins it
    assert time.monotonic() - t0 < LINGER_S


def test_a_looping_call_is_interrupted_through_the_shared_ticker():
    engine = _engine()
    module = wasmtime.Module(engine, '(module (func (export "spin") (loop (br 0))))')
    store = wasmtime.Store(engine)
    spin = wasmtime.Instance(store, module, []).exports(store)["spin"]
    ticker = _core.EpochTicker()
    ticker.acquire(_address(engine), 1000)
    try:
        store.set_epoch_deadline(20)
        try:
            spin(store)
        except wasmtime.Trap as e:
            assert e.trap_code is wasmtime.TrapCode.INTERRUPT
        else:
            raise AssertionError("the loop was never interrupted")
    finally:
        ticker.release()


def test_the_engine_may_be_freed_while_the_thread_lingers():
    # A garbage collection may free the Engine object before the ticker that served it (in any
    # order, within one cycle); the lingering thread ticks its own reference, never a freed one.
    for _ in range(20):
        engine, ticker = _engine(), _core.EpochTicker()
        ticker.acquire(_address(engine), 1000)
        ticker.release()
        del engine
        gc.collect()
        time.sleep(0.005)  # ticks on the thread's own reference
        assert ticker.alive
        del ticker  # joins the thread at once
    engine, ticker = _engine(), _core.EpochTicker()
    ticker.acquire(_address(engine), 1000)
    ticker.release()
    del engine
    gc.collect()
    assert _wait_until(lambda: not ticker.alive, LINGER_S + 5.0)  # left after its linger, cleanly
