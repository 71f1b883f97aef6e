"""Per-layer timing, step phases, measured activation memory and the torch.profiler window."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer, Run
from dsnotebook.perf.memory import SavedTensorMeter
from dsnotebook.perf.window import ProfileWindow


def mlp(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(inplace=inplace), nn.Linear(128, 10))


def train(model, opt, steps, batch=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(batch, 64, generator=g), torch.randint(0, 10, (batch,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _no_module_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_per_layer_rows_on_sampled_steps_only_and_hooks_gone():
    model = mlp(inplace=True)  # in-place ReLU: tensor grad hooks must not break it
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with ModelTracer(model, opt, profile_every=2) as tr:
        train(model, opt, 5)
        # step 5 is not sampled: no timing hooks; the two root hooks are the non-finite probe's step capture
        assert tr.module_hook_count == 2
    assert _no_module_hooks(model)
    df = tr.to_dataframe("timings")
    assert sorted(df["step"].unique()) == [0, 2, 4]
    layers = df[df["module"] != "(step)"]
    for phase in ("fwd", "bwd"):
        got = set(layers[layers["phase"] == phase]["module"])
        assert {"0", "1", "2"} <= got, (phase, got)
    assert (df["seconds"] >= 0).all()
    steps = df[df["module"] == "(step)"].pivot(index="step", columns="phase", values="seconds")
    parts = steps[["data", "fwd", "bwd", "opt", "tracer", "other"]].sum(axis=1)
    assert ((parts - steps["step"]).abs() < 1e-6 + 1e-6 * steps["step"]).all()  # the split adds up
    assert (steps["fwd"] > 0).all() and (steps["bwd"] > 0).all() and (steps["opt"] > 0).all()


def test_profiling_leaves_losses_bit_identical():
    m1, m2 = mlp(), mlp()
    o1, o2 = torch.optim.SGD(m1.parameters(), lr=0.1), torch.optim.SGD(m2.parameters(), lr=0.1)
    plain = train(m1, o1, 4)
    with ModelTracer(m2, o2, profile_every=1):
        traced = train(m2, o2, 4)
    assert plain == traced


def test_activation_memory_is_measured_per_module():
    model = mlp()
    opt = torch.optim.Adam(model.parameters())
    with ModelTracer(model, opt, profile_every=1) as tr:
        train(model, opt, 2, batch=32)
    mem = tr.to_dataframe("memory")
    act = mem[(mem["kind"] == "activations") & (mem["step"] == 1)].set_index("module")["bytes"].to_dict()
    # Linear 0 keeps its input for the weight gradient, ReLU keeps its output (which Linear 2 reuses:
    # one storage, counted once); weights are parameters and not counted.
    assert act == {"0": 32 * 64 * 4, "1": 32 * 128 * 4}
    static = mem[(mem["module"] == "(model)") & (mem["step"] == 1)].set_index("kind")["bytes"]
    n_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert static["params"] == n_bytes and static["grads"] == n_bytes
    assert static["optimizer_state"] >= 2 * n_bytes  # Adam: exp_avg + exp_avg_sq (+ step counters)
    assert {"rss", "peak_rss"} <= set(mem["kind"])


def test_checkpointing_shows_up_as_less_activation_memory():
    from torch.utils.checkpoint import checkpoint

    class Net(nn.Module):
        def __init__(self, ckpt):
            super().__init__()
            self.ckpt = ckpt
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
                                        for _ in range(3))

        def forward(self, x):
            for b in self.blocks:
                x = checkpoint(b, x, use_reentrant=False) if self.ckpt else b(x)
            return x

    def saved(ckpt):
        torch.manual_seed(0)
        model = Net(ckpt)
        meter = SavedTensorMeter(model)
        meter.begin()
        model(torch.randn(16, 64, requires_grad=True)).sum().backward()
        meter.end()
        return meter.total

    assert saved(True) < 0.5 * saved(False)


def test_timings_and_memory_survive_save_and_open(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt, profile_every=1) as tr:
        train(model, opt, 2)
    tr.run.save(tmp_path / "r")
    back = Run.open(tmp_path / "r")
    for table in ("timings", "memory"):
        assert back.to_dataframe(table).equals(tr.to_dataframe(table))
    json.dumps(back.records.tables)  # plain JSON rows


def test_explicit_step_and_grad_accumulation():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, profile_every=1) as tr:  # no optimizer: tracer.step() marks the step
        for _ in range(3):
            for _ in range(2):  # two micro-batches per step
                F.cross_entropy(model(torch.randn(8, 64)), torch.randint(0, 10, (8,))).backward()
            opt.step()
            opt.zero_grad()
            tr.step()
    df = tr.to_dataframe("timings")
    fwd = df[(df["module"] == "(step)") & (df["phase"] == "fwd")]
    assert list(fwd["calls"]) == [2, 2, 2]
    assert set(df[(df["phase"] == "bwd") & (df["module"] == "(step)")]["calls"]) == {2}


def test_profile_window_attributes_ops_to_modules_and_exports_a_trace(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = ModelTracer(model, opt)
    win = tr.profile_window(active=2, wait=0, warmup=1, trace_path=str(tmp_path / "auto.json"))
    train(model, opt, 4)
    assert win.done and _no_module_hooks(model)
    rows = tr.to_dataframe("profile")
    keys = set(zip(rows["module"], rows["phase"]))
    assert {("0", "fwd"), ("2", "fwd"), ("0", "bwd"), ("(optimizer)", "opt")} <= keys
    assert (rows["cpu_s"] >= 0).all()
    path = win.export_chrome_trace(str(tmp_path / "t.json"))
    trace = json.loads(open(path).read())
    assert any(e.get("name", "").startswith("module::") for e in trace["traceEvents"])
    assert (tmp_path / "auto.json").exists()


def test_profile_window_close_early_removes_hooks():
    model = mlp()
    win = ProfileWindow(model, wait=3, warmup=1, active=5)  # closed while still waiting: nothing recorded
    model(torch.randn(2, 64))
    win.close()
    assert _no_module_hooks(model) and win.done
    with pytest.raises(RuntimeError, match="not finished"):
        win.export_chrome_trace("/tmp/never.json")


def test_bad_profile_every():
    with pytest.raises(ValueError, match="profile_every"):
        ModelTracer(mlp(), profile_every=0)


def test_magic_profile_every():
    import IPython
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or IPython.get_ipython()
    ip.run_line_magic("load_ext", "dsnotebook")
    ip.user_ns.clear()
    ip.run_cell("import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))\n"
                "opt = torch.optim.SGD(model.parameters(), lr=0.1)")
    cell = ("for i in range(4):\n    opt.zero_grad()\n    model(torch.randn(4, 3)).pow(2).mean().backward()\n"
            "    opt.step()\n")
    try:
        ip.run_cell_magic("deepseek_trace", "--no-widget --profile-every 2", cell)
        df = ip.user_ns["_trace"].to_dataframe("timings")
        assert sorted(df["step"].unique()) == [0, 2]
        with pytest.raises(UsageError, match="profile-every"):
            ip.run_cell_magic("deepseek_trace", "--no-widget --profile-every 0", cell)
    finally:
        ip.user_ns.clear()


@pytest.mark.gpu
def test_cuda_timing_with_events():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    model = mlp().cuda()
    opt = torch.optim.Adam(model.parameters())
    with ModelTracer(model, opt, profile_every=1) as tr:
        g = torch.Generator(device="cuda").manual_seed(0)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(256, 64, device="cuda", generator=g)),
                            torch.randint(0, 10, (256,), device="cuda", generator=g)).backward()
            opt.step()
    df = tr.to_dataframe("timings")
    layers = df[(df["module"] == "0")]
    assert set(layers["phase"]) == {"fwd", "bwd"} and (layers["seconds"] > 0).all()
    mem = tr.to_dataframe("memory")
    assert (mem[mem["kind"] == "peak_allocated"]["bytes"] > 0).all()
    win = tr.profile_window(active=1, wait=0, warmup=1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(256, 64, device="cuda")).sum().backward()
        opt.step()
    assert win.done and tr.to_dataframe("profile")["device_s"].sum() > 0


def test_ddp_communication_time_with_comm_timer(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from dsnotebook.perf.comm import CommTimer

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = DDP(mlp())
        ddp.register_comm_hook(None, CommTimer())
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        with ModelTracer(ddp, opt, profile_every=1) as tr:
            train(ddp, opt, 3)
        comm = tr.to_dataframe("timings").query("module == '(step)' and phase == 'comm'")
        assert (comm["calls"] >= 1).all() and (comm["seconds"] > 0).all()
        assert tr.run.meta["distributed"]["world_size"] == 1 and "bucket_cap_mb" in tr.run.meta["ddp"]
        assert _no_module_hooks(ddp)
    finally:
        dist.destroy_process_group()


def test_performance_summary_for_the_panel():
    from dsnotebook.views.perf_summary import performance_summary

    model = mlp()
    opt = torch.optim.Adam(model.parameters())
    assert performance_summary(ModelTracer(model, opt).run)["layers"] == []
    with ModelTracer(model, opt, profile_every=1) as tr:
        train(model, opt, 3)
    snap = performance_summary(tr.run)
    json.dumps(snap)
    assert snap["sampled_steps"] == [0, 1, 2]
    assert [l["module"] for l in snap["layers"]] == ["0", "1", "2"]  # leaves, in model order
    assert snap["layers"][0]["activation_bytes"] == 32 * 64 * 4
    parts = sum(v for k, v in snap["step"].items() if k not in ("step", "step_traced", "comm", "tracer"))
    assert abs(parts - snap["step"]["step"]) < 1e-6
    assert snap["memory"]["params"] > 0
