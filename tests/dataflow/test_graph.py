"""Dataflow graph capture: structure and shapes per model family, side effects, lifecycle."""
import json
import math
from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer, Run
from dsnotebook.dataflow.graph import GraphRecorder, capture_graph


def _check_wellformed(g):
    json.dumps(g)  # JSON-serialisable as it is
    ids = [n["id"] for n in g["nodes"]]
    assert len(ids) == len(set(ids)), "node ids are unique"
    known = set(ids)
    for n in g["nodes"]:
        assert n["kind"] in ("module", "op", "input", "output")
        assert n["parent"] is None or n["parent"] in known
    for e in g["edges"]:
        assert e["source"] in known and e["target"] in known
        assert isinstance(e["shape"], list) and e["dtype"] and e["device"]
    groups = {n["id"] for n in g["nodes"] if n["kind"] == "module" and not n["leaf"]}
    for e in g["edges"]:  # edges connect leaves, ops, inputs and outputs, never groups
        assert e["source"] not in groups and e["target"] not in groups, e


def _node(g, node_id):
    return next(n for n in g["nodes"] if n["id"] == node_id)


def _edges(g, source=None, target=None):
    return [e for e in g["edges"] if (source is None or e["source"] == source) and (target is None or e["target"] == target)]


# -- ResNet-style residual block ------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_residual_net():
    g = capture_graph(ResNet(), torch.randn(2, 3, 8, 8))
    _check_wellformed(g)
    add = _node(g, "layer1.0#0/add_#0")  # `out += identity` is glue in the block
    assert add["kind"] == "op" and add["parent"] == "layer1.0#0" and add["shapes"] == [[2, 8, 8, 8]]
    sources = {e["source"] for e in _edges(g, target=add["id"])}
    assert sources == {"layer1.0.bn2#0", "stem#0"}  # the residual edge skips the block's convs
    relu = _node(g, "layer1.0.relu#1")  # the same ReLU module called twice: two calls
    assert relu["call"] == 1 and relu["name"] == "layer1.0.relu" and relu["label"] == "relu #2"
    assert _edges(g, source=add["id"], target="layer1.0.relu#1")
    assert _node(g, "layer1.0#0")["leaf"] is False and _node(g, "layer1.0.conv1#0")["leaf"] is True
    assert _node(g, "layer1.0.conv1#0")["params"] == 8 * 8 * 9 and _node(g, "layer1#0")["params"] == 2 * 2 * (576 + 16)
    e = _edges(g, source="stem#0", target="layer1.0.conv1#0")[0]
    assert e["shape"] == [2, 8, 8, 8] and e["dtype"] == "float32" and e["device"] == "cpu"
    ops = {n["label"] for n in g["nodes"] if n["kind"] == "op" and n["parent"] == "(root)#0"}
    assert ops == {"adaptive_avg_pool2d", "flatten"}
    assert [n["id"] for n in g["nodes"] if n["kind"] == "output"] == ["output:output"]
    assert _edges(g, source="fc#0", target="output:output")[0]["shape"] == [2, 5]


# -- transformer block with an attention mask passed as a keyword --------------------------
class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, *, attn_mask=None):
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        return self.o(torch.softmax(scores, dim=-1) @ v)


class Block(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.attn, self.ln1, self.ln2 = Attention(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x, attn_mask=None):
        x = x + self.attn(self.ln1(x), attn_mask=attn_mask)
        return x + self.mlp(self.ln2(x))


def test_transformer_block_with_mask_kwarg():
    mask = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    g = capture_graph(Block(), torch.randn(2, 6, 16), attn_mask=mask)
    _check_wellformed(g)
    assert {n["id"] for n in g["nodes"] if n["kind"] == "input"} == {"input:x", "input:attn_mask"}
    fill = _node(g, "attn#0/masked_fill#0")
    assert fill["shapes"] == [[2, 6, 6]]
    invert = [e for e in _edges(g, source="input:attn_mask")]
    assert len(invert) == 1 and invert[0]["dtype"] == "bool" and invert[0]["shape"] == [6, 6]
    assert _edges(g, source=invert[0]["target"], target=fill["id"])
    labels = [n["label"] for n in g["nodes"] if n["parent"] == "attn#0" and n["kind"] == "op"]
    assert labels[:2] == ["transpose", "matmul"] and "softmax" in labels
    assert _edges(g, source="attn.q#0", target="attn#0/matmul#0")[0]["shape"] == [2, 6, 16]
    assert _edges(g, source="attn#0/transpose#0", target="attn#0/matmul#0")[0]["shape"] == [2, 16, 6]
    adds = [n for n in g["nodes"] if n["parent"] == "(root)#0" and n["label"] == "add"]
    assert len(adds) == 2  # both residual adds of the block
    assert {e["source"] for e in _edges(g, target=adds[0]["id"])} == {"input:x", "attn.o#0"}


# -- a Hugging Face style model: config object in, dict-like output -------------------------
@dataclass
class TinyConfig:
    vocab_size: int = 50
    hidden_size: int = 16
    num_layers: int = 2


class ModelOutput(OrderedDict):
    """What transformers' ModelOutput is to a user: a dict with attribute access."""

    def __getattr__(self, name):
        return self[name]


class TinyLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config.hidden_size) for _ in range(config.num_layers))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False, return_dict=True):
        h = self.embed(input_ids)
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, :].bool()
        hidden = [h]
        for layer in self.layers:
            h = layer(h, attn_mask=mask)
            hidden.append(h)
        logits = self.lm_head(h)
        if not return_dict:
            return (logits,)
        return ModelOutput(logits=logits, hidden_states=tuple(hidden) if output_hidden_states else None)


def test_hf_style_model_dict_output_and_kwargs():
    model = TinyLM(TinyConfig())
    ids = torch.randint(0, 50, (2, 7))
    am = torch.ones(2, 7, dtype=torch.int64)
    am[1, 5:] = 0
    g = capture_graph(model, ids, attention_mask=am, output_hidden_states=True)
    _check_wellformed(g)
    inputs = {n["id"]: n for n in g["nodes"] if n["kind"] == "input"}
    assert set(inputs) == {"input:input_ids", "input:attention_mask"}
    assert _edges(g, source="input:input_ids", target="embed#0")[0]["dtype"] == "int64"
    outputs = [n["id"] for n in g["nodes"] if n["kind"] == "output"]
    assert outputs == ["output:logits"] + [f"output:hidden_states[{i}]" for i in range(3)]
    assert _edges(g, source="lm_head#0", target="output:logits")[0]["shape"] == [2, 7, 50]
    assert _edges(g, source="embed#0", target="output:hidden_states[0]")
    assert [n["id"] for n in g["nodes"] if n["type"] == "Block"] == ["layers.0#0", "layers.1#0"]
    assert _node(g, "layers.1.attn#0")["parent"] == "layers.1#0"
    # the mask flows from the input through glue into both layers' attention
    fills = [n["id"] for n in g["nodes"] if n["label"] == "masked_fill"]
    assert len(fills) == 2
    # tuple output (return_dict=False) works the same way
    g2 = capture_graph(model, ids, return_dict=False)
    assert [n["id"] for n in g2["nodes"] if n["kind"] == "output"] == ["output:[0]"]


# -- LSTM: tuple outputs with (h, c) ------------------------------------------------------
class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 12, num_layers=2, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1]), (h, c)


def test_lstm_tuple_outputs():
    g = capture_graph(Tagger(), torch.randn(4, 5, 6))
    _check_wellformed(g)
    lstm = _node(g, "lstm#0")
    assert lstm["leaf"] and lstm["shapes"] == [[4, 5, 12], [2, 4, 12], [2, 4, 12]]
    getitem = _node(g, "(root)#0/getitem#0")
    assert _edges(g, source="lstm#0", target=getitem["id"])[0]["shape"] == [4, 5, 12]
    assert [n["id"] for n in g["nodes"] if n["kind"] == "output"] == ["output:[0]", "output:[1][0]", "output:[1][1]"]
    assert _edges(g, source="lstm#0", target="output:[1][1]")[0]["shape"] == [2, 4, 12]
    bare = capture_graph(nn.LSTM(6, 12), torch.randn(5, 4, 6))
    _check_wellformed(bare)
    assert [n["id"] for n in bare["nodes"]] == ["input:input", "(root)#0", "output:[0]", "output:[1][0]", "output:[1][1]"]


# -- Python control flow and a shared module called in a loop -------------------------------
class Looping(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Linear(8, 8)
        self.pos, self.neg = nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, x, repeats: int = 3):
        for _ in range(repeats):
            x = torch.tanh(self.block(x))
        if x.sum() > 0:
            return self.pos(x)
        return self.neg(x)


def test_control_flow_and_shared_module_calls():
    model = Looping()
    x = torch.randn(3, 8)
    g = capture_graph(model, x, repeats=4)
    _check_wellformed(g)
    calls = [n for n in g["nodes"] if n["name"] == "block"]
    assert [n["id"] for n in calls] == [f"block#{i}" for i in range(4)] and [n["call"] for n in calls] == [0, 1, 2, 3]
    chain = [e for e in g["edges"] if e["target"].startswith("block#")]
    assert [e["source"] for e in chain] == ["input:x", "(root)#0/tanh#0", "(root)#0/tanh#1", "(root)#0/tanh#2"]
    with torch.no_grad():
        h = x
        for _ in range(4):
            h = torch.tanh(model.block(h))
        taken = "pos" if h.sum() > 0 else "neg"
    branch = [n["name"] for n in g["nodes"] if n["name"] in ("pos", "neg")]
    assert branch == [taken]  # what actually ran, not what could have
    assert _node(g, "(root)#0/gt#0")["shapes"] == [[]]


# -- torch.compile: graceful -----------------------------------------------------------------
def test_compiled_model_is_captured_through_its_eager_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    compiled = torch.compile(model, backend="eager")  # no C++ toolchain needed
    opt = torch.optim.SGD(compiled.parameters(), lr=0.1)
    with ModelTracer(compiled, opt) as tracer:
        for _ in range(2):
            opt.zero_grad()
            compiled(torch.randn(5, 4)).pow(2).mean().backward()
            opt.step()
    g = tracer.run.graph
    _check_wellformed(g)
    assert "eager module" in g["message"]
    assert [n["id"] for n in g["nodes"] if n["kind"] == "module"] == ["(root)#0", "0#0", "1#0", "2#0"]
    assert tracer.module_hook_count == 0 and not compiled._forward_pre_hooks
    assert tracer.run.steps == [0, 1]


def test_compile_failure_gives_a_message_not_a_crash(monkeypatch):
    import dsnotebook.dataflow.graph as graph_mod

    model = torch.compile(nn.Linear(3, 3), backend="eager")

    def broken(*a, **k):
        raise RuntimeError("no eager module today")

    monkeypatch.setattr(graph_mod, "capture_graph", broken)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt) as tracer:
        model(torch.randn(2, 3)).sum().backward()
        opt.step()
    assert tracer.run.graph["nodes"] == [] and "no eager module today" in tracer.run.graph["message"]
    assert tracer.run.steps == [0]


# -- side effects and lifecycle --------------------------------------------------------------
class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn, self.drop, self.b = nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 2)

    def forward(self, x):
        return self.b(self.drop(self.bn(self.a(x))) + torch.rand_like(x[:, :6]))


def _train(capture, steps=4):
    torch.manual_seed(0)
    model = Noisy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(3)
    losses = []
    with ModelTracer(model, opt, capture_graph=capture) as tracer:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    return losses, model, tracer, torch.get_rng_state()


def test_capture_changes_no_numbers_and_no_rng_state():
    a_losses, a_model, _, a_rng = _train(False)
    b_losses, b_model, tracer, b_rng = _train(True)
    assert all(torch.equal(a, b) for a, b in zip(a_losses, b_losses))
    assert torch.equal(a_rng, b_rng)
    for pa, pb in zip(a_model.state_dict().values(), b_model.state_dict().values()):
        assert torch.equal(pa, pb)
    assert tracer.run.graph is not None and tracer.run.graph["message"] is None
    # the standalone capture runs an extra forward: RNG and BatchNorm buffers are restored
    x = torch.randn(8, 6)
    state, rng = {k: v.clone() for k, v in b_model.state_dict().items()}, torch.get_rng_state()
    capture_graph(b_model, x)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(state[k], v) for k, v in b_model.state_dict().items())


def _no_module_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _mode_stack_empty():
    return torch._C._len_torch_function_stack() == 0


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = self.a(x) + 1
        if getattr(self, "fail", False):
            raise ValueError("bad batch")
        return self.b(h)


@pytest.mark.filterwarnings("ignore:no training step")
def test_hooks_and_mode_removed_after_exceptions():
    model = Exploding()
    model.fail = True
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="bad batch"):
        with ModelTracer(model, opt) as tracer:
            model(torch.randn(2, 4))
    assert _no_module_hooks(model) and _mode_stack_empty() and tracer.module_hook_count == 0
    assert "raised" in tracer.run.graph["message"]
    # an error outside the forward (the tracer's context exits mid-capture) also cleans up
    model.fail = False
    rec = GraphRecorder(model).start()
    assert not _no_module_hooks(model)
    rec.stop()
    assert _no_module_hooks(model) and _mode_stack_empty()
    with pytest.raises(KeyboardInterrupt):
        with ModelTracer(model, opt):
            raise KeyboardInterrupt
    assert _no_module_hooks(model) and _mode_stack_empty()
    # the graph is captured once, on the first forward after attach
    with ModelTracer(model, opt) as tracer:
        for _ in range(3):
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
    assert [n["kind"] for n in tracer.run.graph["nodes"]].count("input") == 1
    assert tracer.module_hook_count == 0


def test_graph_tables_and_roundtrip(tmp_path):
    model = ResNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, activations_every=1) as tracer:
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(2, 3, 8, 8)).sum().backward()
            opt.step()
    nodes, edges = tracer.to_dataframe("graph_nodes"), tracer.to_dataframe("graph_edges")
    assert len(nodes) == len(tracer.run.graph["nodes"]) and len(edges) == len(tracer.run.graph["edges"])
    assert {"id", "kind", "label", "type", "params", "parent", "shapes"} <= set(nodes.columns)
    again = Run.open(tracer.run.save(tmp_path / "run"))
    assert again.graph == json.loads(json.dumps(tracer.run.graph))
    for table in ("graph_nodes", "graph_edges", "activations"):
        assert again.to_dataframe(table).astype(str).equals(tracer.run.to_dataframe(table).astype(str)), table
