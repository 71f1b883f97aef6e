"""GPU: activation statistics through the tracer's CUDA backend, non-finite localisation with
device-side counts, graph capture of a real Hugging Face model (where transformers is installed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsnotebook import ModelTracer
from dsnotebook.examples import DigitsCNN

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU: torch.cuda.is_available() is False", allow_module_level=True)

DEV = torch.device("cuda")


def _train(model, opt, steps, **kw):
    g = torch.Generator(device=DEV).manual_seed(0)
    losses = []
    with ModelTracer(model, opt, **kw) as tracer:
        for _ in range(steps):
            x = torch.randn(32, 1, 8, 8, device=DEV, generator=g)
            y = torch.randint(0, 10, (32,), device=DEV, generator=g)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    return tracer, losses


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_activations_on_cuda_are_recorded_and_change_nothing(backend, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # conv backward atomics otherwise
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.manual_seed(0)
    model = DigitsCNN().to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    plain = DigitsCNN().to(DEV)
    plain.load_state_dict(model.state_dict())
    popt = torch.optim.SGD(plain.parameters(), lr=0.05)
    tracer, losses = _train(model, opt, 6, activations_every=2, backend=backend)
    _, ref_losses = _train(plain, popt, 6, capture_graph=False, nonfinite="off")
    assert all(torch.equal(a, b) for a, b in zip(losses, ref_losses))
    df = tracer.to_dataframe("activations")
    assert sorted(df.step.unique()) == [0, 2, 4] and len(df) == 3 * 12
    assert np.isfinite(df["mean"]).all() and (df.nonfinite == 0).all()
    assert tracer.run.graph["nodes"][0]["id"] == "input:x"
    e = tracer.to_dataframe("graph_edges")
    assert (e.device == "cuda:0").all()


def test_nonfinite_localised_on_cuda():
    torch.manual_seed(0)
    model = DigitsCNN().to(DEV)
    model.head[1].register_forward_hook(lambda m, a, out: out * float("nan"))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    tracer, _ = _train(model, opt, 2, nonfinite="strict")
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    assert ev and ev[0]["module"] == "head.1" and ev[0]["step"] == 0


def test_hugging_face_gpt2_from_config():
    transformers = pytest.importorskip("transformers")
    from dsnotebook.dataflow.graph import capture_graph

    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=16)
    model = transformers.GPT2LMHeadModel(cfg).to(DEV)
    ids = torch.randint(0, 100, (2, 10), device=DEV)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    g = capture_graph(model, input_ids=ids, attention_mask=mask, labels=ids.clone())
    kinds = {n["kind"] for n in g["nodes"]}
    assert kinds == {"input", "module", "op", "output"}
    inputs = {n["id"] for n in g["nodes"] if n["kind"] == "input"}
    assert {"input:input_ids", "input:attention_mask", "input:labels"} <= inputs
    outs = [n["id"] for n in g["nodes"] if n["kind"] == "output"]
    assert "output:logits" in outs and "output:loss" in outs
    assert any(n["name"] == "transformer.h.1.attn" for n in g["nodes"])
    assert any(e["source"] == "input:attention_mask" for e in g["edges"])
    # and under the tracer, in training
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with ModelTracer(model, opt, activations_every=1, nonfinite="strict") as tracer:
        for _ in range(2):
            opt.zero_grad()
            model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
            opt.step()
    acts = tracer.to_dataframe("activations")
    assert "transformer.h.0.mlp" in set(acts.module) and not [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    print(len(g["nodes"]), "nodes", len(g["edges"]), "edges;", len(acts), "activation rows")
