"""Every advisor rule fires on a constructed situation and stays silent on a healthy run."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer, Run
from dsnotebook.advisor import RULES, advise
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from fakes import CPU, H100, HEALTHY_PHASES, HEALTHY_SETTINGS, V100, cpu_profile, fake_gpu, perf_run, tensors



def rule_ids(run, hw=H100, **ctx):
    return {s.rule for s in advise(run, hw, **ctx)}


def test_healthy_gpu_run_gets_no_advice():
    run = perf_run()
    assert rule_ids(run) == set()
    assert run.to_dataframe("suggestions").empty


def test_unprofiled_run_gets_no_advice_and_no_errors():
    run = Run(tensors(), {})
    assert advise(run, H100) == [] and advise(run, CPU) == []
    assert not [e for e in run.events if "advisor rule" in e["detail"]]


def test_data_loader_bound():
    run = perf_run(phases=dict(HEALTHY_PHASES, data=0.100))
    (s,) = [s for s in advise(run, H100) if s.rule == "data_loader"]
    assert s.evidence["data_share"] > 0.4 and "num_workers=" in s.snippet and s.category == "speed"
    assert not s.can_verify  # no data given: nothing to rebuild
    loader = torch.utils.data.DataLoader(list(range(8)), batch_size=2)
    (s,) = [s for s in advise(run, H100, data=loader) if s.rule == "data_loader"]
    assert s.can_verify and s.evidence["num_workers"] == 0


@pytest.mark.parametrize("hw,dtype,scaler", [(H100, "bfloat16", False), (V100, "float16", True)])
def test_mixed_precision_by_hardware(hw, dtype, scaler):
    run = perf_run(settings={"autocast": None})
    (s,) = [s for s in advise(run, hw) if s.rule == "mixed_precision"]
    assert dtype in s.snippet and ("GradScaler" in s.snippet) == scaler
    assert "mixed_precision" not in rule_ids(perf_run(settings={"autocast": None}), CPU)  # CPU without bf16 math


def test_tf32():
    run = perf_run(settings={"autocast": None, "tf32_matmul": False, "tf32_cudnn": False})
    assert "tf32" in rule_ids(run, H100)
    assert "tf32" not in rule_ids(run, V100)  # no TF32 before Ampere


def test_channels_last_for_conv_nets_only():
    convs = {"stem": (0.05, 0.09), "layers.0.fc": (0.001, 0.002)}
    run = perf_run(settings={"channels_last": False}, modules=convs)
    assert "channels_last" in rule_ids(run, H100)
    assert "channels_last" not in rule_ids(perf_run(settings={"channels_last": False}), H100)  # convs are 25%
    assert "channels_last" not in rule_ids(perf_run(settings={"channels_last": False}, conv=False), H100)
    assert "channels_last" not in rule_ids(run, CPU)


def test_compile_for_launch_bound_steps():
    tiny = {f"layers.{i}.{j}": (5e-6, 8e-6) for i in range(6) for j in range(4)}
    run = perf_run(phases=dict(HEALTHY_PHASES, fwd=0.0002, bwd=0.0003, opt=0.00001, data=0.00001, other=0.00001),
                   modules=tiny)
    (s,) = [s for s in advise(run, H100) if s.rule == "compile"]
    assert s.evidence["us_per_layer_call"] < 50
    assert "compile" not in rule_ids(perf_run(phases=dict(HEALTHY_PHASES, fwd=0.0002, bwd=0.0003), modules=tiny,
                                              settings={"compiled": True}), H100)
    # the profiler window overrides the hook heuristic: host time above device time
    run2 = perf_run()
    run2.add_records("profile", [{"module": "layers.0.fc", "phase": "fwd", "cpu_s": 0.02, "device_s": 0.005,
                                  "ops": 100, "top_ops": []}])
    assert "compile" in rule_ids(run2, H100)


def test_gradient_checkpointing_reports_saving_per_block():
    big = {"params": 10 << 20, "grads": 10 << 20, "optimizer_state": 20 << 20, "peak_allocated": 60 << 30,
           **{f"act:layers.{i}.{j}": 40 << 20 for i in range(4) for j in ("fc", "act")}}
    run = perf_run(memory=big)
    (s,) = [s for s in advise(run, H100) if s.rule == "checkpointing"]
    assert s.target == "memory" and s.evidence["saved_per_block_mb"] == {f"layers.{i}": 80.0 for i in range(4)}
    assert "MB less activation memory" in s.gain


def test_checkpointing_takes_the_outermost_blocks():
    """Blocks that are Sequentials of layers (block.0.0 conv, block.0.1 relu): the blocks are block.0 and
    block.1, even when one of block.1's layers saved nothing of its own (its input was already saved)."""
    state = {"params": 1 << 20, "grads": 1 << 20, "optimizer_state": 2 << 20, "peak_allocated": 60 << 30}
    nested = {**state, **{f"act:block.{i}.{j}": 40 << 20 for i in range(3) for j in range(2) if (i, j) != (2, 0)}}
    (s,) = [s for s in advise(perf_run(memory=nested), H100) if s.rule == "checkpointing"]
    assert s.evidence["saved_per_block_mb"] == {"block.0": 80.0, "block.1": 80.0, "block.2": 40.0}
    assert "for block in model.block:" in s.snippet and "3 blocks of block" in s.title
    # the items of an nn.Sequential model are named 0, 1, 2...
    top = {**state, **{f"act:{i}.{j}": 40 << 20 for i in range(4) for j in ("fc", "act")}}
    (s,) = [s for s in advise(perf_run(memory=top), H100) if s.rule == "checkpointing"]
    assert set(s.evidence["saved_per_block_mb"]) == {"0", "1", "2", "3"}
    assert "for block in model:" in s.snippet and "4 blocks of the model" in s.title


def test_no_checkpointing_of_single_layers():
    # a Sequential of leaves (conv, relu, conv, relu): each item keeps its input anyway
    leaves = {"params": 1 << 20, "grads": 1 << 20, "optimizer_state": 2 << 20, "peak_allocated": 60 << 30,
              **{f"act:body.{i}": 40 << 20 for i in range(4)}}
    assert "checkpointing" not in rule_ids(perf_run(memory=leaves), H100)


def test_batch_size_headroom_on_gpu_only():
    low = {"params": 300 << 20, "grads": 300 << 20, "optimizer_state": 600 << 20, "peak_allocated": 10 << 30}
    run = perf_run(memory=low)
    (s,) = [s for s in advise(run, H100) if s.rule == "batch_size"]
    assert s.evidence["peak_allocated_gb"] == 10.0 and "4x" in s.title
    assert "batch_size" not in rule_ids(run, CPU)


def test_fused_optimizer():
    run = perf_run(phases=dict(HEALTHY_PHASES, opt=0.05))
    assert "fused_optimizer" in rule_ids(run, H100)
    model = nn.Linear(2, 2)
    fused = torch.optim.Adam(model.parameters(), fused=True) if _cpu_fused_ok() else None
    if fused is not None:
        assert "fused_optimizer" not in rule_ids(run, H100, optimizer=fused)


def _cpu_fused_ok() -> bool:
    try:
        torch.optim.Adam(nn.Linear(1, 1).parameters(), fused=True)
        return True
    except Exception:
        return False


def test_ddp_communication_bound():
    run = perf_run(phases=dict(HEALTHY_PHASES, comm=0.08), meta={"distributed": {"world_size": 8, "backend": "nccl"},
                                                                  "ddp": {"bucket_cap_mb": 25.0}})
    (s,) = [s for s in advise(run, H100) if s.rule == "ddp_communication"]
    assert "powerSGD" in s.snippet and s.evidence["bucket_cap_mb"] == 25.0 and not s.can_verify
    assert "ddp_communication" not in rule_ids(perf_run(phases=dict(HEALTHY_PHASES, comm=0.08)), H100)


# -- training health, from real traced runs ---------------------------------------------------
def traced(model, opt, steps=6, loss_fn=None, activations_every=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    loss_fn = loss_fn or (lambda out, y: F.cross_entropy(out, y))
    with ModelTracer(model, opt, activations_every=activations_every) as tr:
        for _ in range(steps):
            x, y = torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    return tr.run


def healthy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def test_healthy_training_gets_no_training_advice():
    model = healthy_model()
    run = traced(model, torch.optim.Adam(model.parameters(), lr=1e-3), activations_every=1)
    assert not rule_ids(run, CPU) & {"exploding_gradients", "vanishing_gradients", "update_ratio", "dead_units"}


def test_exploding_gradients():
    model = healthy_model()
    run = traced(model, torch.optim.SGD(model.parameters(), lr=50.0), steps=8,
                 loss_fn=lambda out, y: out.pow(2).mean() * 1e3)
    (s,) = [s for s in advise(run, CPU) if s.rule == "exploding_gradients"]
    assert s.target == "stability" and "clip_grad_norm_" in s.snippet


def test_vanishing_gradients():
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        lin = nn.Linear(16, 16)
        nn.init.normal_(lin.weight, std=0.01)
        layers += [lin, nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    run = traced(model, torch.optim.SGD(model.parameters(), lr=0.01), steps=3)
    (s,) = [s for s in advise(run, CPU) if s.rule == "vanishing_gradients"]
    assert s.evidence["first_over_last"] < 1e-4


@pytest.mark.parametrize("lr,word", [(1e-9, "tiny"), (1.0, "huge")])
def test_update_ratio_far_from_1e3(lr, word):
    model = healthy_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr) if lr < 1e-3 else torch.optim.Adam(model.parameters(), lr=lr)
    run = traced(model, opt, steps=4)
    (s,) = [s for s in advise(run, CPU, optimizer=opt) if s.rule == "update_ratio"]
    assert word in s.title and s.can_verify


def test_dead_units_and_silence_without_activations():
    model = healthy_model()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every unit of the first ReLU is dead
    run = traced(model, torch.optim.SGD(model.parameters(), lr=1e-3), steps=2, activations_every=1)
    (s,) = [s for s in advise(run, CPU) if s.rule == "dead_units"]
    assert s.evidence["dead_units"]["1"] == "32/32"
    run2 = traced(model, torch.optim.SGD(model.parameters(), lr=1e-3), steps=2)  # no activations table
    assert "dead_units" not in rule_ids(run2, CPU)


def test_records_are_json_with_stable_ids_and_saved_with_the_run(tmp_path):
    run = perf_run(phases=dict(HEALTHY_PHASES, data=0.1, opt=0.05), settings={"autocast": None})
    first = advise(run, H100)
    again = advise(run, H100)
    assert [s.id for s in first] == [s.id for s in again]
    df = run.to_dataframe("suggestions")
    assert len(df) == len(first) and df["id"].is_unique and set(df["status"]) == {"proposed"}
    json.dumps(run.records.tables["suggestions"])
    run.save(tmp_path / "r")
    assert Run.open(tmp_path / "r").to_dataframe("suggestions")["id"].tolist() == df["id"].tolist()
    assert all(str(s) and s._repr_markdown_() for s in first)


def test_a_broken_rule_is_reported_not_raised():
    def broken(run, hw, ctx):
        raise RuntimeError("boom")

    run = perf_run()
    assert advise(run, H100, rules=[broken]) == []
    assert any("boom" in e["detail"] for e in run.events)


def test_rules_are_small_functions_of_run_hardware_context():
    for rule in RULES:
        assert rule(Run(tensors(), {}), CPU, AdviceContext()) is None


def test_measures_drop_the_first_sampled_step():
    run = perf_run()
    run.add_records("timings", [{"step": 99, "module": "(step)", "phase": "data", "seconds": 5.0, "calls": 1}])
    assert measures.phases(run)["data"] == pytest.approx(0.001)


@pytest.mark.gpu
def test_tf32_and_autocast_rules_on_a_real_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    from dsnotebook.perf.hardware import detect_gpu

    hw = detect_gpu()
    model = nn.Sequential(*[nn.Linear(4096, 4096) for _ in range(8)]).cuda()  # fp32 matmuls dominate the step
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with ModelTracer(model, opt, profile_every=1) as tr:
            for _ in range(4):
                opt.zero_grad()
                model(torch.randn(4096, 4096, device="cuda")).pow(2).mean().backward()
                opt.step()
        ids = {s.rule for s in tr.advise(hardware=hw)}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    if hw.tf32:
        assert "tf32" in ids
    if hw.bf16 or (hw.compute_capability or (0, 0)) >= (7, 0):
        assert "mixed_precision" in ids
