"""Dataflow graph of one forward pass, captured as it runs (no jit trace).

Module forward pre/post hooks give the module calls (nested, a shared module called twice
gives two call nodes); a :class:`~torch.overrides.TorchFunctionMode` sees the functional
glue that a parent's ``forward`` runs between its submodules (``x + residual``,
``torch.cat``, ``view``, masking, ...).  Tensors are followed by identity (a weak
tensor-keyed map from tensor to the node that produced it), so Python control flow,
kwargs, tuples, dicts and ModelOutput-style results need no special support.

Which ops count as glue: an op is recorded when the innermost running module *has
children* (its forward wires submodules together).  Inside a childless module (``Linear``,
``Conv2d``, ``LSTM``, ...) ops are its own computation and stay hidden; its call is one
node.  A module call inside which nothing was recorded is a leaf node; one with recorded
calls or ops inside is a group, and edges run between leaves, ops, inputs and outputs
only: a front end collapses a group by re-routing its members' edges to it (``parent``).

Result (JSON-serialisable)::

    {"nodes": [{"id", "kind": "module"|"op"|"input"|"output", "label", "name", "type",
                "params", "call", "parent", "order", "leaf", "shapes", "param_inputs"}],
     "edges": [{"id", "source", "target", "tensor", "shape", "dtype", "device"}],
     "model": str, "message": str | None}

Ids are stable across runs of the same model: ``"<module path>#<call>"`` (root:
``"(root)#0"``), ``"<parent id>/<op>#<k>"``, ``"input:<arg>"``, ``"output:<path>"``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

from dsnotebook.core.hooks import HookSet, flatten_tensors, hook_modules, in_error, in_recompute, internal, is_internal
from dsnotebook.core.modules import display_name, eager_module, is_compiled, named_modules

ROOT = "(root)"
_INPLACE_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ior__", "__iand__"}


def empty_graph(message: str | None = None, model: str = "") -> dict[str, Any]:
    return {"nodes": [], "edges": [], "model": model, "message": message}


def op_name(func: Any) -> str:
    """``torch.cat`` -> cat, ``Tensor.__add__`` -> add, property ``Tensor.T`` -> T."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a tensor property (x.T, x.mT, x.real)
        owner = getattr(func, "__self__", None)
        return getattr(owner, "__name__", "attr")
    if name.startswith("__r") and name.endswith("__") and name not in ("__repr__",):
        name = "__" + name[3:]  # __radd__ -> __add__
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    return name


def _meta(t: torch.Tensor) -> dict[str, Any]:
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "device": str(t.device)}


class _Frame:
    __slots__ = ("node", "module", "has_children", "inputs", "atomic")

    def __init__(self, node: dict[str, Any], module: nn.Module, has_children: bool,
                 inputs: list[tuple[str, int, dict[str, Any]]]) -> None:
        self.node, self.module, self.has_children, self.inputs = node, module, has_children, inputs
        self.atomic = True


class _GlueMode(TorchFunctionMode):
    """Sees every torch function call while active; hands the glue ones to the recorder."""

    def __init__(self, recorder: "GraphRecorder") -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.recorder
        if rec.active and not is_internal() and rec.wants_op():
            try:
                with internal():
                    rec.record_op(func, args, kwargs, out)
            except Exception as exc:  # never break the user's forward
                rec.fail(exc)
        return out


class GraphRecorder:
    """Records the first forward of ``model`` after :meth:`start`, then removes itself.

    ``on_done(graph)`` receives the result dict.  :meth:`stop` removes every hook and the
    mode at any time (also mid-forward, e.g. when the tracer detaches after an error).
    """

    def __init__(self, model: nn.Module, on_done: Callable[[dict[str, Any]], None] | None = None,
                 max_nodes: int = 20000) -> None:
        self.model = model
        self.on_done = on_done
        self.max_nodes = max_nodes
        self.result: dict[str, Any] | None = None
        self.active = False
        self.hooks = HookSet()
        self._mode: _GlueMode | None = None
        self._reset()

    def _reset(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self._edge_keys: set[tuple[str, str, int]] = set()
        self._stack: list[_Frame] = []
        self._producer = WeakTensorKeyDictionary()  # tensor -> (node id, tensor number)
        self._tensor_no = 0
        self._calls: dict[int, int] = {}
        self._op_counts: dict[tuple[str, str], int] = {}
        self._externals = 0
        self._error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "GraphRecorder":
        modules = named_modules(self.model)
        self._root = self.model
        self._params = {id(m): sum(p.numel() for p in m.parameters()) for _, m in modules}
        self._has_children = {id(m): next(m.children(), None) is not None for _, m in modules}
        self._param_names = {id(p): n for n, p in self.model.named_parameters(remove_duplicate=False)}
        self._param_names.update({id(b): n for n, b in self.model.named_buffers(remove_duplicate=False)})
        hook_modules(self.model, self._pre, self._post, self.hooks, modules)
        self.active = True
        return self

    def stop(self) -> None:
        """Remove hooks and the mode (idempotent); a capture in progress is discarded."""
        self.active = False
        self.hooks.remove()
        self._exit_mode()

    def _exit_mode(self) -> None:
        mode, self._mode = self._mode, None
        if mode is not None:
            try:
                mode.__exit__(None, None, None)
            except Exception:  # the mode stack was unwound by someone else
                pass

    def fail(self, exc: BaseException) -> None:
        self._error = self._error or f"{type(exc).__name__}: {exc}"

    def wants_op(self) -> bool:
        return bool(self._stack) and self._stack[-1].has_children and len(self.nodes) < self.max_nodes

    # -- tensors ------------------------------------------------------------------------
    def _source(self, t: torch.Tensor) -> tuple[str, int] | None:
        """(producer node id, tensor number) of ``t``; parameters/buffers have none."""
        src = self._producer.get(t)
        if src is not None:
            return src
        if id(t) in self._param_names:
            return None
        # A tensor made outside the model's forward (a global, a closure): one input node.
        self._externals += 1
        node = self._add_node("input", f"input:external#{self._externals - 1}", "tensor", "", "Tensor", None)
        node["shapes"] = [_meta(t)["shape"]]
        return self._produce(t, node["id"])

    def _produce(self, t: torch.Tensor, node_id: str) -> tuple[str, int]:
        src = (node_id, self._tensor_no)
        self._tensor_no += 1
        self._producer[t] = src
        return src

    def _edge(self, src: tuple[str, int], target: str, t: torch.Tensor | dict[str, Any]) -> None:
        key = (src[0], target, src[1])
        if key in self._edge_keys or src[0] == target:
            return
        self._edge_keys.add(key)
        meta = t if isinstance(t, dict) else _meta(t)
        self.edges.append({"id": f"e{len(self.edges)}", "source": src[0], "target": target, "tensor": src[1], **meta})

    def _add_node(self, kind: str, node_id: str, label: str, name: str, type_: str, parent: str | None,
                  params: int = 0, call: int = 0) -> dict[str, Any]:
        node = {"id": node_id, "kind": kind, "label": label, "name": name, "type": type_, "params": int(params),
                "call": call, "parent": parent, "order": len(self.nodes), "leaf": kind != "module",
                "shapes": [], "param_inputs": []}
        self.nodes.append(node)
        return node

    # -- hooks --------------------------------------------------------------------------
    def _pre(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self.active or in_recompute():
            return
        try:
            with internal():
                if not self._stack:
                    if module is not self._root:
                        return  # a submodule called on its own, outside a model forward
                    self._begin(module, args, kwargs)
                parent = self._stack[-1] if self._stack else None
                if parent is not None:
                    parent.atomic = False
                call = self._calls.get(id(module), 0)
                self._calls[id(module)] = call + 1
                shown = name or ROOT
                label = (name.rsplit(".", 1)[-1] if name else type(module).__name__) + (f" #{call + 1}" if call else "")
                node = self._add_node("module", f"{shown}#{call}", label, name, type(module).__name__,
                                      parent.node["id"] if parent else None, self._params.get(id(module), 0), call)
                inputs = []
                for _, t in flatten_tensors((args, kwargs)):
                    src = self._source(t)
                    if src is not None:
                        inputs.append((src[0], src[1], _meta(t)))
                self._stack.append(_Frame(node, module, self._has_children.get(id(module), False), inputs))
        except Exception as exc:
            self.fail(exc)

    def _post(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not self.active or in_recompute() or not self._stack:
            return
        try:
            with internal():
                while self._stack and self._stack[-1].module is not module:
                    self._stack.pop()  # frames of calls that raised inside
                if not self._stack:
                    return
                frame = self._stack.pop()
                outs = flatten_tensors(output) if not in_error() else []
                frame.node["shapes"] = [list(t.shape) for _, t in outs]
                frame.node["leaf"] = frame.atomic
                if frame.atomic:
                    for src_id, no, meta in frame.inputs:
                        self._edge((src_id, no), frame.node["id"], meta)
                    for _, t in outs:
                        self._produce(t, frame.node["id"])
                else:
                    for _, t in outs:
                        if t not in self._producer:
                            self._produce(t, frame.node["id"])
                if not self._stack:
                    self._finish(module, output)
        except Exception as exc:
            self.fail(exc)
            if not self._stack:
                self._finish(module, None)

    def record_op(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        name = op_name(func)
        outs = [t for _, t in flatten_tensors(out, limit=64)]
        if not outs and args and isinstance(args[0], torch.Tensor) and (
                name in _INPLACE_DUNDERS or (name.endswith("_") and not name.startswith("_"))):
            outs = [args[0]]
        if not outs:
            return  # x.shape, x.dim(), x.item(): no tensor flows on
        frame = self._stack[-1]
        frame.atomic = False
        parent_id = frame.node["id"]
        k = self._op_counts.get((parent_id, name), 0)
        self._op_counts[(parent_id, name)] = k + 1
        node = self._add_node("op", f"{parent_id}/{name}#{k}", name, "", name, parent_id)
        for _, t in flatten_tensors((args, kwargs), limit=64):
            if id(t) in self._param_names and t not in self._producer:
                node["param_inputs"].append(display_name(self._param_names[id(t)]))
                continue
            src = self._source(t)
            if src is not None:
                self._edge(src, node["id"], t)
        node["shapes"] = [list(t.shape) for t in outs]
        for t in outs:
            self._produce(t, node["id"])

    def _begin(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._reset()
        self._mode = _GlueMode(self)
        self._mode.__enter__()
        try:
            bound = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments
        except (TypeError, ValueError):
            bound = {f"args[{i}]": a for i, a in enumerate(args)} | dict(kwargs)
        for arg, value in bound.items():
            for path, t in flatten_tensors(value, path=arg):
                if t in self._producer:
                    continue  # the same tensor passed twice
                node = self._add_node("input", f"input:{path}", path, path, "Tensor", None)
                node["shapes"] = [list(t.shape)]
                self._produce(t, node["id"])

    def _finish(self, module: nn.Module, output: Any) -> None:
        self._exit_mode()
        self.hooks.remove()
        self.active = False
        if in_error() and output is None:
            self.result = empty_graph("graph capture stopped: the forward pass raised", type(module).__name__)
        else:
            for path, t in flatten_tensors(output):
                path = path or "output"
                node = self._add_node("output", f"output:{path}", path, path, "Tensor", None)
                node["shapes"] = [list(t.shape)]
                src = self._producer.get(t)
                if src is not None:
                    self._edge(src, node["id"], t)
            msg = None
            if len(self.nodes) >= self.max_nodes:
                msg = f"graph truncated at {self.max_nodes} nodes"
            if self._error:
                msg = f"graph capture incomplete: {self._error}"
            self.result = {"nodes": self.nodes, "edges": self.edges, "model": type(module).__name__, "message": msg}
        self._producer = WeakTensorKeyDictionary()
        if self.on_done is not None:
            self.on_done(self.result)


def _buffers_snapshot(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(b, b.detach().clone()) for b in model.buffers()]


def capture_graph(model: nn.Module, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Graph of one extra forward of ``model(*args, **kwargs)``, without side effects.

    Runs under ``no_grad`` with the RNG state forked and buffers (BatchNorm running
    statistics) restored afterwards, so training continues exactly as without it.  A
    ``torch.compile``d model is captured through its eager module ``_orig_mod``.
    """
    eager = eager_module(model)
    rec = GraphRecorder(eager)
    saved = _buffers_snapshot(eager)
    devices = sorted({t.device.index for _, t in flatten_tensors((args, kwargs)) if t.device.type == "cuda"}
                     | {p.device.index for p in eager.parameters() if p.device.type == "cuda"})
    try:
        rec.start()
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            eager(*args, **kwargs)
    finally:
        rec.stop()
        with torch.no_grad():
            for b, copy in saved:
                b.copy_(copy)
    graph = rec.result or empty_graph("graph capture saw no forward pass", type(eager).__name__)
    if is_compiled(model):
        graph["message"] = ("torch.compile'd model: graph of its eager module (_orig_mod), captured in a "
                            "separate side-effect-free forward")
    return graph


class CompiledGraphCapture:
    """For a ``torch.compile``d model: at its first call, capture ``_orig_mod`` on the same
    inputs with :func:`capture_graph` (hooks inside compiled code would recompile it)."""

    def __init__(self, model: nn.Module, on_done: Callable[[dict[str, Any]], None]) -> None:
        self.model, self.on_done = model, on_done
        self.hooks = HookSet()
        self.result: dict[str, Any] | None = None

    def start(self) -> "CompiledGraphCapture":
        self.hooks.add(self.model.register_forward_pre_hook(self._pre, with_kwargs=True))
        return self

    def stop(self) -> None:
        self.hooks.remove()

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.stop()
        if in_recompute():
            return
        try:
            self.result = capture_graph(module, *args, **kwargs)
        except Exception as exc:
            self.result = empty_graph(f"graph capture of the torch.compile'd model failed ({type(exc).__name__}: "
                                      f"{exc}); call dsnotebook.dataflow.graph.capture_graph(model._orig_mod, inputs)",
                                      type(eager_module(module)).__name__)
        self.on_done(self.result)

