"""The wrappers around traced functions, generators and coroutines; module and op calls.

The "info" function wrapper is the hot path (at most 2 us per call on a CPU): one context
variable read and set, a slotted record, two ``perf_counter`` readings, and the record handed
to the sink.  Everything optional (module hooks, "debug" summaries, the "trace" op mode,
CUDA events) sits behind one test each.  Work done outside the call's own [t0, t1] window is
measured (``Call.cost``) or calibrated (:mod:`dsnotebook.calls.calibrate`) and subtracted
from the enclosing calls' times when the rows are made.

Exceptions propagate unchanged (the same object, a bare ``raise``) and are recorded as
``error``; hooks and modes taken by a call are given back in ``finally``.  Generators: one
record per generator, timed over its resumptions (the time the consumer spends between
items is not its time); coroutines: one record from the first await to the result.  Neither
takes device events or the op mode (they would span unrelated work).
"""
from __future__ import annotations

import functools
import inspect
import sys
from threading import get_ident
from time import perf_counter
from typing import Any, Callable

from dsnotebook.calls import data
from dsnotebook.calls.device import DEVICE
from dsnotebook.calls.modules import SKIP_AFTER_EMPTY, ModuleHooks
from dsnotebook.calls.ops import OpMode, quiet
from dsnotebook.calls.record import DEBUG, INFO, TRACE, Call, Site, error_text
from dsnotebook.calls.state import OVERHEAD, STATE, current, next_id
from dsnotebook.core.hooks import internal

__all__ = ["wrap", "HOOKS", "begin", "end", "ops_active"]

HOOKS = ModuleHooks()
HOOKS.current = current.get
_FULL = OVERHEAD.full
_ops_on: dict[int, OpMode] = {}  # thread -> the op mode pushed on it (one at a time per thread)


def ops_active() -> int:
    """Op modes pushed now, all threads (0 outside every sampled "trace" call)."""
    return len(_ops_on)


_ROOTS_BETWEEN_CHECKS = 128
_root_countdown = [0]


def _root() -> None:
    """At a root call: measure the tracing cost once, and see whether CUDA came up (then device
    events are taken, and the cost is measured again: events cost).  Checked every
    :data:`_ROOTS_BETWEEN_CHECKS` root calls (a CUDA context made later is seen within them)."""
    _root_countdown[0] = _ROOTS_BETWEEN_CHECKS
    on = DEVICE.refresh()
    if not OVERHEAD.ready or OVERHEAD.device != on:
        from dsnotebook.calls.calibrate import calibrate

        calibrate(device=on)


def _take_hooks(rec: Call, args: tuple) -> None:
    t = perf_counter()
    rec.hooks = rec
    HOOKS.acquire()
    if args:
        HOOKS.note_owner(args[0])
    rec.cost += perf_counter() - t


def _drop_hooks(rec: Call) -> None:
    t = perf_counter()
    HOOKS.release()
    site = rec.site
    if site.modules is None and rec.mods == 0:
        site.skip_hooks = SKIP_AFTER_EMPTY
    rec.cost += perf_counter() - t


def _reset(rec: Call) -> None:
    try:
        current.reset(rec.token)
    except (ValueError, RuntimeError):  # ended in another context than it began: restore by hand
        current.set(rec.parent)


def begin(site: Site, level: int, parent: Call | None, sink: Any, args: tuple | None = None,
          kwargs: dict | None = None, names: tuple[str, ...] = (), ops: bool = True, device: bool = True) -> Call:
    """Start a call (spans, modules, generators, coroutines, "debug" and "trace"); the time of
    optional work (hooks, input capture, the op mode) is measured into ``rec.cost``."""
    if parent is None:
        _root_countdown[0] -= 1
        if _root_countdown[0] <= 0:
            _root()
        rec = Call(next_id(), site, level, None, sink.step(), get_ident())
    else:
        rec = Call(next_id(), site, level, parent, parent.step if site.kind == "module" else sink.step(), parent.thread)
    if rec.hooks is None and site.modules is not False and site.kind != "module":
        if site.skip_hooks:
            site.skip_hooks -= 1
        else:
            _take_hooks(rec, args or ())
    if level:
        _begin_data(rec, site, level, args, kwargs, names, ops)
    rec.skew += rec.cost  # its own set-up so far ran before its start
    if device and DEVICE.on:
        rec.ev = DEVICE.start()
    rec.token = current.set(rec)
    rec.t0 = perf_counter()
    return rec


def _begin_data(rec: Call, site: Site, level: int, args: tuple | None, kwargs: dict | None,
                names: tuple[str, ...], ops: bool) -> None:
    t = perf_counter()
    if args is not None:
        try:
            with internal():
                rec.inputs = data.capture_inputs(args, kwargs or {}, names)
        except Exception as exc:  # never an error in the user's code
            rec.inputs = [{"error": error_text(exc)}]
    if level == TRACE and ops and site.kind != "module":
        site.calls += 1
        if (site.calls - 1) % site.sample_every == 0 and get_ident() not in _ops_on:
            if not OVERHEAD.ops_ready:
                from dsnotebook.calls.calibrate import calibrate

                calibrate(device=DEVICE.on, ops=True)
            mode = OpMode(rec, _op_begin, _op_end)
            mode.__enter__()
            rec.ops = _ops_on[get_ident()] = mode
    rec.cost += perf_counter() - t


def end(rec: Call, sink: Any, output: Any = None, has_output: bool = False, t1: float | None = None) -> None:
    """Close a call begun by :func:`begin` (``rec.t1`` taken here unless given) and hand it to the sink."""
    rec.t1 = perf_counter() if t1 is None else t1
    if rec.ev is not None:
        rec.ev[1].record()
    _reset(rec)
    if rec.level:
        _end_data(rec, sink, output, has_output)
    if rec.hooks is rec:
        _drop_hooks(rec)
    parent = rec.parent
    if parent is not None:
        parent.nested += _FULL[rec.site.kind] + rec.cost + rec.nested
    sink.add(rec)


def _end_data(rec: Call, sink: Any, output: Any, has_output: bool) -> None:
    t = perf_counter()
    if rec.ops is not None:
        _ops_on.pop(get_ident(), None)
        rec.ops.__exit__(None, None, None)
        rec.ops = None
    token = quiet.set(True)  # our tensor work is neither the user's ops nor their graph's
    try:
        if rec.inputs is not None or has_output:
            with internal():
                rec.inputs, rec.outputs, rec.stats = data.finish_data(rec.inputs, output, has_output, sink.stats)
    except Exception as exc:  # a summary that fails says so; the user's result is untouched
        rec.outputs = [{"error": error_text(exc)}]
        rec.stats = None
    finally:
        quiet.reset(token)
    rec.cost += perf_counter() - t


def _op_begin(site: Site) -> Call:
    parent = current.get()
    rec = Call(next_id(), site, TRACE, parent, parent.step, parent.thread)
    if DEVICE.on:
        rec.ev = DEVICE.start()
    return rec


def _op_end(rec: Call) -> None:
    if rec.ev is not None:
        rec.ev[1].record()
    parent = rec.parent
    if parent is not None:
        parent.nested += _FULL["op"]
    STATE.sink.add(rec)


def _module_enter(module: Any, site: Site, parent: Call, args: Any) -> None:
    begin(site, parent.level, parent, STATE.sink, args if parent.level >= DEBUG else None)


def _module_exit(rec: Call, output: Any) -> None:
    exc = sys.exc_info()[1]  # torch calls the hook with no output because forward raised
    if exc is not None and output is None:
        rec.error = error_text(exc)
        end(rec, STATE.sink)
    else:
        end(rec, STATE.sink, output, True)


HOOKS.on_enter, HOOKS.on_exit = _module_enter, _module_exit


# -- wrappers ----------------------------------------------------------------------------
def _info_function(fn: Callable[..., Any], site: Site) -> Callable[..., Any]:
    get, set_, reset = current.get, current.set, current.reset
    countdown = _root_countdown

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if not STATE.enabled:
            return fn(*args, **kwargs)
        parent = get()
        sink = STATE.sink
        if parent is None:
            countdown[0] -= 1
            if countdown[0] <= 0:
                _root()
            rec = Call(next_id(), site, INFO, None, sink.step(), get_ident())
        else:
            rec = Call(next_id(), site, INFO, parent, sink.step(), parent.thread)
        if rec.hooks is None and site.modules is not False:
            if site.skip_hooks:
                site.skip_hooks -= 1
            else:
                _take_hooks(rec, args)
                rec.skew += rec.cost
        ev = DEVICE.start() if DEVICE.on else None
        token = set_(rec)
        rec.t0 = perf_counter()
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            rec.error = error_text(exc)
            raise
        finally:
            rec.t1 = perf_counter()
            if ev is not None:
                ev[1].record()
                rec.ev = ev
            reset(token)
            if rec.hooks is rec:
                _drop_hooks(rec)
            if parent is not None:
                parent.nested += _FULL["function"] + rec.cost + rec.nested
            sink.add(rec)

    return traced


def _slow_function(fn: Callable[..., Any], site: Site, names: tuple[str, ...]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if not STATE.enabled:
            return fn(*args, **kwargs)
        sink = STATE.sink
        rec = begin(site, site.level, current.get(), sink, args, kwargs, names)
        try:
            out = fn(*args, **kwargs)
        except BaseException as exc:
            rec.error = error_text(exc)
            end(rec, sink)
            raise
        end(rec, sink, out, True)
        return out

    return traced


def _coroutine(fn: Callable[..., Any], site: Site, names: tuple[str, ...]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        if not STATE.enabled:
            return await fn(*args, **kwargs)
        sink = STATE.sink
        rec = begin(site, site.level, current.get(), sink, args, kwargs, names, ops=False, device=False)
        try:
            out = await fn(*args, **kwargs)
        except BaseException as exc:
            rec.error = error_text(exc)
            end(rec, sink)
            raise
        end(rec, sink, out, True)
        return out

    return traced


def _generator(fn: Callable[..., Any], site: Site, names: tuple[str, ...]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        gen = fn(*args, **kwargs)
        if not STATE.enabled:
            return gen
        return _resumed(gen, site, args, kwargs, names)

    return traced


def _resumed(gen: Any, site: Site, args: tuple, kwargs: dict, names: tuple[str, ...]) -> Any:
    """Drive ``gen`` like ``yield from`` would, timing each resumption under one record."""
    rec: Call | None = None
    sink = STATE.sink
    active = 0.0
    send: Any = None
    throw: BaseException | None = None
    try:
        while True:
            if rec is None:
                rec = begin(site, site.level, current.get(), sink, args, kwargs, names, ops=False, device=False)
                start = rec.t0
            else:
                rec.token = current.set(rec)
                start = perf_counter()
            try:
                item = gen.throw(throw) if throw is not None else gen.send(send)
            except StopIteration as stop:
                return stop.value
            finally:
                active += perf_counter() - start
                _reset(rec)
            throw = None
            try:
                send = yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:  # thrown in by the consumer: passed on to the generator
                throw = exc
    except BaseException as exc:
        if rec is not None and not isinstance(exc, GeneratorExit):
            rec.error = error_text(exc)
        raise
    finally:
        if rec is not None:  # its own time: the resumptions, not the consumer's time in between
            rec.token = current.set(rec)
            end(rec, sink, t1=rec.t0 + active)


def wrap(fn: Callable[..., Any], site: Site) -> Callable[..., Any]:
    """The traced version of ``fn`` (function, method, generator or coroutine function)."""
    owner = getattr(fn, "__self__", None)
    if owner is not None:  # a bound method (model.forward wrapped in place): its modules named under it
        HOOKS.note_owner(owner)
    names = data.arg_names(fn) if site.level >= DEBUG else ()
    if inspect.isgeneratorfunction(fn):
        return _generator(fn, site, names)
    if inspect.iscoroutinefunction(fn):
        return _coroutine(fn, site, names)
    if site.level == INFO:
        return _info_function(fn, site)
    return _slow_function(fn, site, names)
