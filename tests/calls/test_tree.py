"""The call tree: nesting, recursion, methods, generators, coroutines, threads, spans, exceptions."""
from __future__ import annotations

import asyncio
import threading

import pandas as pd
import pytest
import torch

import dsnotebook
from dsnotebook.calls.record import Call, Site
from dsnotebook.calls.rows import to_row
from dsnotebook.calls.state import OVERHEAD

from calls_helpers import by_name, parent_of

trace = dsnotebook.trace


@trace
def leaf(x):
    return x + 1


@trace(name="middle part")
def middle(x):
    with trace.span("branch a"):
        a = leaf(x)
    with trace.span("branch b"):
        b = leaf(x) * 2
    return a + b


@trace
def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def test_nested_calls_and_spans_form_a_tree():
    assert middle(1) == 6
    df = trace.calls()
    assert list(df.columns) == list(dsnotebook.run.records.RECORD_COLUMNS["calls"])
    assert sorted(df["name"]) == ["branch a", "branch b", "leaf", "leaf", "middle part"]
    assert parent_of(df, "branch a") == "middle part" and parent_of(df, "branch b") == "middle part"
    leaves = df[df["name"] == "leaf"]
    parents = {df.set_index("call").loc[int(p), "name"] for p in leaves["parent"]}
    assert parents == {"branch a", "branch b"}
    assert set(leaves["depth"]) == {2}
    assert by_name(df)["middle part"]["depth"] == 0 and pd.isna(by_name(df)["middle part"]["parent"])
    assert set(df["kind"]) == {"function", "span"} and set(df["level"]) == {"info"}
    assert df["step"].isna().all(), "no tracer: no step"


def test_child_times_within_the_parents():
    for _ in range(3):
        middle(2)
    df = trace.calls().set_index("call")
    for cid, row in df.iterrows():
        kids = df[df["parent"] == cid]
        assert kids["wall_s"].sum() <= row["wall_s"] + row["overhead_s"] + 1e-9, (row["name"], kids["wall_s"].sum())
        for _, k in kids.iterrows():
            assert k["start_s"] >= row["start_s"]
            assert k["start_s"] + k["wall_s"] <= row["start_s"] + row["wall_s"] + row["overhead_s"] + 1e-9
    assert (df["wall_s"] >= 0).all() and (df["overhead_s"] >= 0).all()


def test_recursion_nests_one_level_per_call():
    assert fact(5) == 120
    df = trace.calls().sort_values("depth")
    assert list(df["depth"]) == [0, 1, 2, 3, 4]
    assert list(df["parent"].iloc[1:].astype(int)) == list(df["call"].iloc[:-1])


class Box(torch.nn.Module):
    @trace
    def method(self, x):
        return x * 2

    @trace
    @staticmethod
    def static(x):
        return x - 1

    @trace
    @classmethod
    def klass(cls, x):
        return (cls.__name__, x)

    @trace(level="debug")
    def forward(self, x):
        return self.method(x)


def test_methods_static_class_and_forward():
    box = Box()
    assert box.method(3) == 6 and Box.static(3) == 2 and box.klass(1) == ("Box", 1)
    assert box(torch.ones(2)).tolist() == [2.0, 2.0]
    df = trace.calls()
    assert set(df["name"]) == {"Box.method", "Box.static", "Box.klass", "Box.forward"}
    assert parent_of(df, "Box.method") == "Box.forward"
    assert Box.method.__name__ == "method" and Box.method.__doc__ is None


def test_bound_method_of_a_model_can_be_wrapped_in_place():
    seq = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    seq.forward = trace(seq.forward, name="seq")
    seq(torch.ones(1, 2))
    df = trace.calls()
    assert list(df["name"]) == ["0", "1", "seq"], "submodules named under the method's module"


def test_generator_one_record_timed_over_its_resumptions():
    @trace
    def gen(n):
        for i in range(n):
            yield leaf(i)
        return "done"

    g = gen(3)
    assert trace.calls().empty, "nothing runs before the first next()"
    assert next(g) == 1
    assert g.send(None) == 2
    assert list(g) == [3]
    df = trace.calls()
    assert sorted(df["name"]) == ["leaf", "leaf", "leaf", "test_generator_one_record_timed_over_its_resumptions.gen"]
    gen_id = int(df[df["name"].str.endswith(".gen")]["call"].iloc[0])
    assert (df[df["name"] == "leaf"]["parent"] == gen_id).all()

    def outer():
        return (yield from gen(1))

    import time

    g = gen(2)
    for _ in g:
        time.sleep(0.1)  # the consumer's time, not the generator's
    wall = trace.calls().query("name.str.endswith('.gen')", engine="python")["wall_s"].iloc[-1]
    assert wall < 0.1

    o = outer()
    assert next(o) == 1
    with pytest.raises(StopIteration) as stop:
        next(o)
    assert stop.value.value == "done"


def test_generator_throw_and_close():
    @trace
    def gen():
        try:
            yield 1
        except KeyError:
            yield "caught"
        yield 3

    g = gen()
    next(g)
    assert g.throw(KeyError("k")) == "caught"
    g.close()
    df = trace.calls()
    assert list(df["name"]) == ["test_generator_throw_and_close.gen"] and df["error"].iloc[0] is None

    g2 = gen()
    next(g2)
    with pytest.raises(ValueError):
        g2.throw(ValueError("bad"))
    assert trace.calls()["error"].iloc[-1] == "ValueError: bad"


def test_coroutines_nest_per_task():
    @trace
    async def child(i):
        await asyncio.sleep(0)
        return leaf(i)

    @trace
    async def parent():
        return sum(await asyncio.gather(child(1), child(2)))

    # a thread of its own: an earlier test (IPython, Playwright) may leave an event loop running here
    result: list = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(parent())))
    runner.start()
    runner.join(30)
    assert result == [5]
    df = trace.calls()
    pid = int(df[df["name"].str.endswith("parent")]["call"].iloc[0])
    children = df[df["name"].str.endswith("child")]
    assert len(children) == 2 and (children["parent"] == pid).all()
    for cid in children["call"]:
        assert (df["parent"] == cid).sum() == 1  # each child's leaf under its own child


def test_threads_have_their_own_trees():
    barrier = threading.Barrier(4)

    @trace
    def work(i):
        barrier.wait(timeout=10)
        return leaf(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    df = trace.calls()
    works = df[df["name"].str.endswith("work")]
    assert len(works) == 4 and works["parent"].isna().all() and works["thread"].nunique() == 4
    for _, w in works.iterrows():
        kid = df[df["parent"] == w["call"]]
        assert list(kid["name"]) == ["leaf"] and kid["thread"].iloc[0] == w["thread"]


class Boom(Exception):
    pass


def test_exceptions_propagate_unchanged_and_are_recorded():
    err = Boom("inner <b>failed</b>")

    @trace
    def bad():
        raise err

    @trace
    def calls_bad():
        with trace.span("risky"):
            bad()

    with pytest.raises(Boom) as info:
        calls_bad()
    assert info.value is err
    assert info.traceback[-1].name == "bad", "the user's frame raised it"
    df = by_name(trace.calls())
    for name in ("bad", "risky", "calls_bad"):
        key = next(k for k in df if k.endswith(name))
        assert df[key]["error"] == "Boom: inner <b>failed</b>"
    assert trace.active() == {"module_hooks": 0, "op_modes": 0, "sinks": 0}
    assert middle(0) == 3, "the tree is intact after an exception"
    assert trace.calls()["depth"].min() == 0


def test_keyboard_interrupt_propagates():
    @trace
    def stop():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stop()
    assert trace.calls()["error"].iloc[0] == "KeyboardInterrupt"


def test_disabled_calls_through():
    trace.enabled = False
    assert middle(1) == 6
    assert trace.calls().empty
    trace.enabled = True
    middle(1)
    assert len(trace.calls()) == 5


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="level must be one of"):
        trace(level="verbose")
    with pytest.raises(TypeError, match="name="):
        trace("fusion")
    with pytest.raises(TypeError, match="put it on the method"):
        trace(Box)
    with pytest.raises(TypeError, match="function or method"):
        trace(3)
    with pytest.raises(ValueError, match="sample_every"):
        trace(level="trace", sample_every=0)
    with pytest.raises(TypeError, match="span name"):
        trace.span(3)


def test_memory_is_bounded():
    from dsnotebook.calls.recorder import Recorder
    from dsnotebook.calls.state import STATE

    rec = Recorder(max_calls=10)
    STATE.push(rec)
    try:
        for i in range(25):
            leaf(i)
    finally:
        STATE.remove(rec)
    df = rec.frame()
    assert len(df) == 10 and rec.dropped == 15 and df.attrs["dropped"] == 15
    assert trace.calls().empty, "the default recorder saw nothing while another sink was active"


def test_rows_subtract_the_measured_cost_of_tracing():
    site = Site("parent", "function", 0)
    rec = Call(1, site, 0, None, None, 7)
    rec.t0, rec.t1, rec.nested = 10.0, 10.000050, 0.000020
    row = to_row(rec, origin=9.0, device_s=None)
    inner = OVERHEAD.inner["function"]
    assert row["overhead_s"] == pytest.approx(0.000020 + inner)
    assert row["wall_s"] == pytest.approx(0.000050 - 0.000020 - inner)
    assert row["start_s"] == pytest.approx(1.0) and row["thread"] == 7
    rec.nested = 1.0  # more than the call took: clipped at zero, never negative
    row = to_row(rec, origin=9.0, device_s=None)
    assert row["wall_s"] == 0 and row["overhead_s"] == pytest.approx(0.000050)


def test_the_empty_call_cost_is_measured_and_shown():
    leaf(1)
    o = trace.overhead()
    assert o["ready"] and o["call_s"]["function"] > 0 and o["inner_s"]["function"] > 0
    assert o["call_s"]["module"] > 0 and o["calibration_s"] > 0
    assert trace.calls().attrs["overhead"]["call_s"]["function"] == o["call_s"]["function"]
