"""Localise the first module that produced a non-finite value, forward or backward.

While armed, hooks on every module record, as device-side counts (no sync):

- forward, in execution order: the inputs of each module call (only tensors no earlier
  check has seen) and its outputs;
- backward, in backward execution order: tensor hooks on the same tensors see the
  gradient w.r.t. each module's outputs and inputs.

At the step end the counts are stacked and read with one host copy; then

- forward: the first non-finite *output* names its module; a non-finite *input* seen
  first means code in the parent's ``forward`` between submodules (glue, e.g.
  ``torch.log(x)``) produced it, or the model input was already bad;
- backward: the first tensor whose gradient arrived non-finite was made so by the
  backward of the module(s) that consumed it in forward (its gradient w.r.t. its input
  is bad while the gradient of its own output was fine); a non-finite gradient of the
  model's output comes from the loss, outside the model.

When to arm the checks, and which event a finding becomes, is decided by
:class:`~dsnotebook.dataflow.episodes.NonFiniteEpisodes`; this class only checks.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakTensorKeyDictionary

from dsnotebook.core.hooks import HookSet, flatten_tensors, hook_modules, in_recompute, internal
from dsnotebook.core.modules import INPUT, LOSS

from dsnotebook.dataflow.episodes import MODES  # noqa: F401 - the modes, importable from here too


@dataclass
class Finding:
    """Where the first non-finite value came from."""

    module: str
    phase: str  # "forward" | "backward"
    detail: str


def _bad_count(t: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(t).logical_not().sum()


class NonFiniteLocator:
    """Per-module finiteness checks for armed steps; :meth:`collect` names the origin."""

    def __init__(self, model: nn.Module) -> None:
        self._model = weakref.ref(model)  # the tracer outlives the model: hold it weakly
        self.hooks = HookSet()
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._calls: dict[int, int] = {}
        self._stack: list[str] = []
        self._parent: dict[str, str | None] = {}
        self._call_modules: dict[str, nn.Module] = {}
        self._fwd: list[tuple[str, str, torch.Tensor, int]] = []  # (call, "in"|"out", count, numel)
        self._checked = WeakTensorKeyDictionary()
        self._keys = WeakTensorKeyDictionary()  # tensor -> key of its backward record
        self._producer: list[str | None] = []  # key -> module call that output it
        self._consumers: list[list[str]] = []  # key -> module calls that took it as input
        self._grad_counts: dict[int, tuple[torch.Tensor, int]] = {}
        self._grad_order: list[int] = []
        self._out_keys: dict[str, list[int]] = {}
        self._root_keys: set[int] = set()
        self._tensor_hooks = HookSet()
        self._forwards = 0

    # -- arming -------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        return len(self.hooks) > 0

    @property
    def model(self) -> nn.Module | None:
        return self._model()

    def arm(self) -> None:
        model = self.model
        if not self.armed and model is not None:
            hook_modules(model, self._pre, self._post, self.hooks)

    def disarm(self) -> None:
        self.hooks.remove()
        self._tensor_hooks.remove()
        self._reset()

    # -- hooks --------------------------------------------------------------------------
    def _call_id(self, name: str, module: nn.Module) -> str:
        call = self._calls.get(id(module), 0)
        self._calls[id(module)] = call + 1
        shown = name or "(root)"
        return shown if call == 0 else f"{shown} (call {call + 1})"

    def _pre(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if in_recompute():
            return
        try:
            with internal(), torch.no_grad():
                if module is self.model and not self._stack:
                    self._forwards += 1
                    self._calls = {}
                call = self._call_id(name, module)
                self._parent[call] = self._stack[-1] if self._stack else None
                self._call_modules[call] = module
                self._stack.append(call)
                for _, t in flatten_tensors((args, kwargs)):
                    if not t.is_floating_point():
                        continue
                    if self._checked.get(t) != t._version:  # unseen, or changed in place since
                        self._checked[t] = t._version
                        self._fwd.append((call, "in", _bad_count(t), t.numel()))
                    if t.requires_grad:
                        self._consumers[self._key(t, None)].append(call)
        except Exception as exc:
            self.notes.append(f"non-finite check before {name or '(root)'}: {type(exc).__name__}: {exc}")

    def _post(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if in_recompute() or not self._stack:
            return
        try:
            with internal(), torch.no_grad():
                call = self._stack.pop()
                for _, t in flatten_tensors(output):
                    if not t.is_floating_point():
                        continue
                    if self._checked.get(t) != t._version:
                        self._checked[t] = t._version
                        self._fwd.append((call, "out", _bad_count(t), t.numel()))
                    if t.requires_grad:
                        key = self._key(t, call)
                        self._out_keys.setdefault(call, []).append(key)
                        if module is self.model:
                            self._root_keys.add(key)
        except Exception as exc:
            self.notes.append(f"non-finite check after {name or '(root)'}: {type(exc).__name__}: {exc}")

    def _key(self, t: torch.Tensor, producer: str | None) -> int:
        key = self._keys.get(t)
        if key is None:
            key = len(self._producer)
            self._keys[t] = key
            self._producer.append(producer)
            self._consumers.append([])
            self._tensor_hooks.add(t.register_hook(self._grad_hook(key)))
        elif producer is not None:
            self._producer[key] = producer
        return key

    def _grad_hook(self, key: int) -> Any:
        def hook(grad: torch.Tensor) -> None:  # autograd thread: append under the lock
            try:
                with internal(), torch.no_grad():
                    count = _bad_count(grad)
                with self._lock:
                    if key not in self._grad_counts:
                        self._grad_counts[key] = (count, grad.numel())
                        self._grad_order.append(key)
            except Exception as exc:
                self.notes.append(f"non-finite gradient check: {type(exc).__name__}: {exc}")
        return hook

    # -- step end -----------------------------------------------------------------------
    def collect(self) -> Finding | None:
        """Read every count of this step (one host copy per device) and find the origin."""
        fwd, order = self._fwd, list(self._grad_order)
        grads = dict(self._grad_counts)
        producer, consumers, parent, out_keys = self._producer, self._consumers, self._parent, self._out_keys
        root_keys, call_modules = self._root_keys, dict(self._call_modules)
        # Gradients of each module's own parameters: the only trace of a backward NaN made
        # in a module whose input needs no gradient (the first layer).
        with internal(), torch.no_grad():
            pgrads = []
            for call, mod in self._call_modules.items():
                gs = [p.grad for p in mod.parameters(recurse=False) if p.grad is not None]
                if gs and " (call " not in call:  # a shared module's parameters once
                    pgrads.append((call, torch.stack([_bad_count(g) for g in gs]).sum()))
        self._tensor_hooks.remove()
        forwards = self._forwards
        self._reset()
        counts = [c for _, _, c, _ in fwd] + [grads[k][0] for k in order] + [c for _, c in pgrads]
        if not counts:
            return None
        with internal():
            host = _read_all(counts)
        fwd_bad = host[:len(fwd)]
        grad_bad = dict(zip(order, host[len(fwd):len(fwd) + len(order)]))
        pgrad_bad = [(call, bad) for (call, _), bad in zip(pgrads, host[len(fwd) + len(order):]) if bad > 0]
        finding = None
        for (call, where, _, numel), bad in zip(fwd, fwd_bad):
            if bad == 0:
                continue
            if where == "out":
                finding = Finding(call, "forward", f"forward: {int(bad)} of {numel} output values non-finite "
                                                   f"(inputs were finite)")
                mod = call_modules.get(call)
                with internal(), torch.no_grad():
                    broken = [n for n, p in mod.named_parameters(recurse=False)
                              if not bool(torch.isfinite(p).all())] if mod is not None else []
                if broken:
                    finding.detail += (f"; its parameters {', '.join(broken)} are already non-finite: an earlier "
                                       f"update broke them, look at the step before")
            elif parent.get(call) is None:
                finding = Finding(INPUT, "forward", f"forward: the model input is non-finite "
                                                        f"({int(bad)} of {numel} values)")
            else:
                finding = Finding(parent[call], "forward",
                                  f"forward: code in {parent[call]}'s forward (not a submodule) made the input "
                                  f"of {call} non-finite ({int(bad)} of {numel} values)")
            break
        if finding is None:
            for key in order:
                bad = grad_bad[key]
                if bad == 0:
                    continue
                numel = grads[key][1]
                users = consumers[key]
                if users:
                    fine = [u for u in users if all(grad_bad.get(k, 0) == 0 for k in out_keys.get(u, []))]
                    culprit = (fine or users)[-1]
                    finding = Finding(culprit, "backward",
                                      f"backward: gradient w.r.t. its input non-finite ({int(bad)} of {numel}) "
                                      f"while the gradient of its output was finite")
                elif key in root_keys:
                    finding = Finding(LOSS, "backward",
                                      f"backward: the gradient of the model output is non-finite ({int(bad)} of "
                                      f"{numel}): it comes from the loss computation outside the model")
                else:
                    who = parent.get(producer[key]) if producer[key] is not None else None
                    finding = Finding(who or "(root)", "backward",
                                      f"backward: code in {who or '(root)'}'s forward after {producer[key]} "
                                      f"made the gradient of its output non-finite ({int(bad)} of {numel})")
                break
        if finding is None and pgrad_bad:
            fine = [(c, b) for c, b in pgrad_bad if all(grad_bad.get(k, 0) == 0 for k in out_keys.get(c, []))]
            call, bad = (fine or pgrad_bad)[-1]  # the last in forward order runs first in backward
            finding = Finding(call, "backward", f"backward: gradient of its parameters non-finite ({int(bad)} values) "
                                                f"while the gradient of its output was finite")
        if finding is not None and forwards > 1:
            finding.detail += f" [first of {forwards} forward passes this step]"
        return finding


def _read_all(counts: list[torch.Tensor]) -> list[float]:
    """One device->host copy per device for a list of 0-d count tensors, in order."""
    by_device: dict[torch.device, list[int]] = {}
    for i, c in enumerate(counts):
        by_device.setdefault(c.device, []).append(i)
    out = [0.0] * len(counts)
    for device, idx in by_device.items():
        values = torch.stack([counts[i].to(torch.float64) for i in idx]).cpu().tolist()
        for i, v in zip(idx, values):
            out[i] = v
    return out
