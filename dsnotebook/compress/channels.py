"""Structured channel pruning: output channels physically removed, coupled layers found from the
dataflow graph (:func:`dsnotebook.dataflow.graph.capture_graph`).

Why our graph and not Torch-Pruning: the graph is captured the way the tracer captures it
(module hooks plus a ``TorchFunctionMode``: kwargs, control flow and functional glue such as
``F.relu`` or ``x.flatten(1)`` are seen, no jit trace), it adds no dependency, and every edge
carries the tensor's shape, so the channel dimension can be followed exactly.  We prune only
what we can prove: a *producer* (Linear, or Conv with ``groups=1``) whose output reaches its
*consumers* (Linear/Conv inputs) through channel-wise steps only (BatchNorm, activations,
dropout, pooling, and a flatten before a Linear, where each channel becomes a block of
features).  Anything else on the way (a residual ``add``, ``cat``, attention, the model output,
a module called twice) couples the channels with other tensors: the producer is left alone and
the plan says why.  Torch-Pruning's dependency graph also handles such coupled groups (residual
sums, concatenations, heads); it would be the choice for those, as an optional extra.

Importance: the L1 norm of each output filter (Li et al., "Pruning Filters for Efficient ConvNets").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dsnotebook.compress.methods import Compressed, Context, Method, NotApplicable
from dsnotebook.dataflow.graph import capture_graph

__all__ = ["ChannelPrune", "Group", "plan_groups"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU, nn.CELU,
              nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d,
              nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
         nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_POINTWISE_OPS = {"relu", "relu_", "relu6", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "elu", "selu", "celu",
                  "hardswish", "hardsigmoid", "hardtanh", "mish", "softplus", "dropout", "dropout1d", "dropout2d",
                  "contiguous", "clone", "detach"}
_POOL_OPS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
             "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool2d"}
_FLATTEN_OPS = {"flatten", "view", "reshape"}


@dataclass
class Group:
    """One prunable producer with the layers whose shapes depend on its output channels."""

    producer: str
    channels: int
    batchnorms: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (layer, features per channel)
    skipped: str = ""  # why this producer cannot be pruned ("" = prunable)


class _Coupled(Exception):
    pass


def plan_groups(model: nn.Module, args: tuple[Any, ...], pointwise: tuple[type, ...] = ()) -> list[Group]:
    """Every Linear/Conv producer of ``model`` (called on ``args``), prunable or with the reason not;
    ``pointwise``: further module types that act on each channel alone (e.g. a library's GELU)."""
    graph = capture_graph(model, *args)
    if not graph["nodes"]:
        raise NotApplicable(f"no dataflow graph: {graph.get('message')}")
    nodes = {n["id"]: n for n in graph["nodes"]}
    out_edges: dict[str, list[dict[str, Any]]] = {}
    in_count: dict[str, int] = {}
    for e in graph["edges"]:
        out_edges.setdefault(e["source"], []).append(e)
        in_count[e["target"]] = in_count.get(e["target"], 0) + 1
    calls: dict[str, int] = {}
    for n in graph["nodes"]:
        if n["kind"] == "module":
            calls[n["name"]] = calls.get(n["name"], 0) + 1
    groups = []
    for n in graph["nodes"]:
        if n["kind"] != "module" or not n["leaf"] or n["call"] != 0:
            continue
        mod = model.get_submodule(n["name"]) if n["name"] else model
        if not _producer_ok(mod):
            continue
        g = Group(n["name"], _out_channels(mod))
        try:
            if calls[n["name"]] > 1:
                raise _Coupled("called more than once per forward")
            _walk(model, nodes, out_edges, in_count, calls, n["id"], g, block=1, seen=set(), extra=pointwise)
            if not g.consumers:
                raise _Coupled("no Linear/Conv consumes its output")
        except _Coupled as exc:
            g.skipped = str(exc)
        groups.append(g)
    return groups


def _producer_ok(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, _CONV) and m.groups == 1)


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _channel_dim(module_type: type | None, shape: list[int]) -> int:
    return len(shape) - 1 if module_type is nn.Linear else 1


def _walk(model: nn.Module, nodes: dict[str, Any], out_edges: dict[str, list[dict[str, Any]]], in_count: dict[str, int],
          calls: dict[str, int], node_id: str, g: Group, block: int, seen: set[str], dim: int | None = None,
          extra: tuple[type, ...] = ()) -> None:
    """Follow the producer's channels forward until every path ends in a Linear/Conv input."""
    for e in out_edges.get(node_id, []):
        tgt = nodes[e["target"]]
        shape = list(e["shape"])
        if dim is None:  # leaving the producer: Linear acts on the last dim, Conv on dim 1
            src = nodes[node_id]
            dim = len(shape) - 1 if src["type"] == "Linear" else 1
        if tgt["id"] in seen:
            continue
        seen.add(tgt["id"])
        where = tgt["name"] or tgt["label"]
        if tgt["kind"] == "output":
            raise _Coupled("its channels reach the model output")
        if in_count.get(tgt["id"], 0) > 1:
            raise _Coupled(f"{tgt['label']} ({where}) combines its output with other tensors")
        if tgt["kind"] == "op":
            op = tgt["label"]
            if op in _POINTWISE_OPS or (op in _POOL_OPS and dim == 1):
                _walk(model, nodes, out_edges, in_count, calls, tgt["id"], g, block, seen, dim, extra)
            elif op in _FLATTEN_OPS:
                new_block = _flatten_block(shape, tgt["shapes"][0] if tgt["shapes"] else [], dim, block)
                _walk(model, nodes, out_edges, in_count, calls, tgt["id"], g, new_block, seen, 1, extra)
            else:
                raise _Coupled(f"op {op} in {nodes.get(tgt['parent'], {}).get('name') or 'the model'} uses its channels")
            continue
        if tgt["kind"] != "module" or not tgt["leaf"]:
            raise _Coupled(f"{where}: not a module the channels can be followed through")
        mod = model.get_submodule(tgt["name"]) if tgt["name"] else model
        has_params = next(mod.parameters(recurse=False), None) is not None or isinstance(mod, _BN)
        if has_params and calls.get(tgt["name"], 0) > 1:
            raise _Coupled(f"{where} is called more than once per forward")
        if isinstance(mod, nn.Linear) and dim == len(shape) - 1:
            g.consumers.append((tgt["name"], block))
        elif isinstance(mod, _CONV) and mod.groups == 1 and dim == 1 and block == 1 and len(shape) >= 3:
            g.consumers.append((tgt["name"], 1))
        elif isinstance(mod, _BN) and dim == 1 and block == 1:
            g.batchnorms.append(tgt["name"])
            _walk(model, nodes, out_edges, in_count, calls, tgt["id"], g, block, seen, dim, extra)
        elif isinstance(mod, _POINTWISE + extra) or (isinstance(mod, _POOL) and dim == 1 and len(shape) >= 3):
            _walk(model, nodes, out_edges, in_count, calls, tgt["id"], g, block, seen, dim, extra)
        elif isinstance(mod, nn.Flatten):
            out = tgt["shapes"][0] if tgt["shapes"] else []
            _walk(model, nodes, out_edges, in_count, calls, tgt["id"], g, _flatten_block(shape, out, dim, block), seen, 1, extra)
        else:
            raise _Coupled(f"{where} ({type(mod).__name__}) is not channel-wise")


def _flatten_block(shape_in: list[int], shape_out: list[int], dim: int, block: int) -> int:
    """Features per channel after ``[N, C, *S] -> [N, C*prod(S)]``; anything else couples channels."""
    if dim != 1 or block != 1 or len(shape_in) < 3 or len(shape_out) != 2 or shape_out[0] != shape_in[0]:
        raise _Coupled(f"a reshape {shape_in} -> {shape_out} mixes its channels")
    per = math.prod(shape_in[2:])
    if shape_out[1] != shape_in[1] * per:
        raise _Coupled(f"a reshape {shape_in} -> {shape_out} mixes its channels")
    return per


class ChannelPrune(Method):
    """Remove the ``amount`` fraction of output channels (smallest L1 norm) of every prunable layer."""

    key = "channel_prune"
    per_layer = True

    def __init__(self, amount: float = 0.5, pointwise: tuple[type, ...] = (), name: str | None = None) -> None:
        if not 0.0 < amount < 1.0:
            raise ValueError(f"amount is the fraction of channels to remove, in (0, 1); got {amount}")
        super().__init__(name or (None if amount == 0.5 else f"channel_prune({amount:g})"))
        self.amount, self.pointwise = amount, tuple(pointwise)

    def layers(self, model: nn.Module, ctx: Context) -> list[str]:
        return [g.producer for g in plan_groups(model, ctx.args, self.pointwise) if not g.skipped]

    def apply(self, model: nn.Module, ctx: Context, only: set[str] | None = None) -> Compressed:
        groups = plan_groups(model, ctx.args, self.pointwise)
        todo = [g for g in groups if not g.skipped and (only is None or g.producer in only)]
        if not todo:
            why = "; ".join(f"{g.producer or '(root)'}: {g.skipped}" for g in groups if g.skipped) or "no Linear/Conv layer"
            raise NotApplicable(f"no prunable channels ({why})")
        notes = []
        for g in todo:
            keep = _keep(model.get_submodule(g.producer), self.amount)
            _prune_group(model, g, keep)
            notes.append(f"{g.producer}: {g.channels} -> {len(keep)} channels (with "
                         f"{', '.join([*g.batchnorms, *(c for c, _ in g.consumers)])})")
        for g in groups:
            if g.skipped and (only is None or g.producer in only):
                notes.append(f"{g.producer or '(root)'} kept whole: {g.skipped}")
        plan = [{"producer": g.producer, "channels": g.channels, "batchnorms": g.batchnorms,
                 "consumers": [c for c, _ in g.consumers], "skipped": g.skipped} for g in groups]
        return Compressed(model, "dsnotebook dataflow graph + L1 filter norm", notes, {"plan": plan})


def _keep(producer: nn.Module, amount: float) -> torch.Tensor:
    w = producer.weight.detach()
    score = w.abs().reshape(w.shape[0], -1).sum(dim=1)
    n = max(1, int(round(w.shape[0] * (1.0 - amount))))
    return torch.sort(torch.topk(score, n).indices).values


def _param(t: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().contiguous(), requires_grad=like.requires_grad)


def _prune_group(model: nn.Module, g: Group, keep: torch.Tensor) -> None:
    """Slice the producer's outputs, the BatchNorms' features and the consumers' inputs in place."""
    with torch.no_grad():
        p = model.get_submodule(g.producer)
        p.weight = _param(p.weight[keep], p.weight)
        if p.bias is not None:
            p.bias = _param(p.bias[keep], p.bias)
        if isinstance(p, nn.Linear):
            p.out_features = len(keep)
        else:
            p.out_channels = len(keep)
        for name in g.batchnorms:
            bn = model.get_submodule(name)
            if bn.weight is not None:
                bn.weight = _param(bn.weight[keep], bn.weight)
                bn.bias = _param(bn.bias[keep], bn.bias)
            if bn.running_mean is not None:
                bn.running_mean = bn.running_mean[keep].clone()
                bn.running_var = bn.running_var[keep].clone()
            bn.num_features = len(keep)
        for name, block in g.consumers:
            c = model.get_submodule(name)
            idx = (keep[:, None] * block + torch.arange(block, device=keep.device)[None, :]).reshape(-1) if block > 1 else keep
            c.weight = _param(c.weight[:, idx.to(c.weight.device)], c.weight)
            if isinstance(c, nn.Linear):
                c.in_features = len(idx)
            else:
                c.in_channels = len(idx)
