"""Replay one training step's forward and backward, to localise a non-finite value at its step.

In a loop without GradScaler the first non-finite gradient is written into the weights by
the same step's optimizer; checks armed from the next step on then only see weights that
are already broken and name the first layer.  So while the default ("cheap") mode runs,
:class:`StepCapture` keeps, for the step in progress, *references* to what the model's
forward received (positional and keyword arguments), the RNG state and the autocast
setting at its start, and the gradients that arrived at its outputs in backward (the
loss's part, which the model cannot recompute).  Nothing is copied; these references die
at the next step.

When the step's statistics show a non-finite gradient before the optimizer has applied
anything (the optimizer pre-step hook), :func:`replay` runs the forward and backward
again on the still-finite weights with localisation hooks, through
``torch.autograd.grad`` (``.grad`` fields untouched), with the captured RNG state (same
dropout masks), and then restores RNG and buffers (BatchNorm statistics): training goes
on exactly as without it.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from dsnotebook.core.hooks import flatten_tensors, in_recompute, is_replaying, replaying

MAX_FORWARDS = 8  # forwards kept per step (gradient accumulation); later ones are not replayed


@dataclass
class _Forward:
    args: tuple
    kwargs: dict
    versions: list[tuple[torch.Tensor, int]]
    rng_cpu: torch.Tensor | None
    rng_cuda: list[torch.Tensor] | None
    autocast: list[tuple[str, torch.dtype]]
    kept: bool = True  # False: a forward that cannot be replayed, only counted
    outputs: list[torch.Tensor] = field(default_factory=list)
    grads: dict[int, torch.Tensor] = field(default_factory=dict)  # output index -> gradient that arrived


def _autocast_state() -> list[tuple[str, torch.dtype]]:
    out = []
    for dev in ("cuda", "cpu"):
        try:
            if torch.is_autocast_enabled(dev):
                out.append((dev, torch.get_autocast_dtype(dev)))
        except Exception:  # pragma: no cover - device type unknown to this build
            pass
    return out


class StepCapture:
    """Two hooks on the root module (every step, no tensor work) keep what a replay needs."""

    def __init__(self, model: nn.Module, keep_output_grads: bool) -> None:
        self._model = weakref.ref(model)
        self.keep_output_grads = keep_output_grads
        self.forwards: list[_Forward] = []
        self._handles: list[Any] = []
        self._cuda = any(p.is_cuda for p in model.parameters())

    def start(self) -> None:
        model = self._model()
        if model is None or self._handles:
            return
        self._handles.append(model.register_forward_pre_hook(self._pre, with_kwargs=True))
        self._handles.append(model.register_forward_hook(self._post, with_kwargs=True))

    def stop(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.forwards = []

    def new_step(self) -> None:
        self.forwards = []

    @property
    def hook_count(self) -> int:
        return len(self._handles)

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if is_replaying() or in_recompute() or not torch.is_grad_enabled() or len(self.forwards) >= MAX_FORWARDS:
            return
        autocast = _autocast_state()
        if not self._keeps_for(autocast):
            # No replay is possible for this forward (see _keeps): remember only that it ran,
            # without inputs, RNG states or version counters (CUDA bf16/fp32: nothing per step).
            self.forwards.append(_Forward(args=(), kwargs={}, versions=[], rng_cpu=None, rng_cuda=None,
                                          autocast=autocast, kept=False))
            return
        tensors = [t for _, t in flatten_tensors((args, kwargs), limit=64)]
        self.forwards.append(_Forward(
            args=args, kwargs=dict(kwargs), versions=[(t, t._version) for t in tensors],
            rng_cpu=torch.get_rng_state(), rng_cuda=torch.cuda.get_rng_state_all() if self._cuda else None,
            autocast=autocast))

    def _post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if is_replaying() or in_recompute() or not self.forwards or not torch.is_grad_enabled():
            return
        fwd = self.forwards[-1]
        if fwd.outputs or not fwd.kept:
            return  # a nested call of the root module, or a forward that cannot be replayed
        fwd.outputs = [t for _, t in flatten_tensors(output, limit=64) if t.requires_grad]
        for k, t in enumerate(fwd.outputs):
            t.register_hook(_keep(fwd.grads, k))

    def _keeps_for(self, autocast: list[tuple[str, torch.dtype]]) -> bool:
        """Output gradients are kept on CPU models, and under fp16 autocast (GradScaler loops, whose
        skipped steps can be replayed on the GPU too): elsewhere they would hold GPU memory a step longer
        for a replay that cannot happen (CUDA statistics arrive after the update)."""
        return self.keep_output_grads or any(dtype == torch.float16 for _, dtype in autocast)

    def _keeps(self, fwd: _Forward) -> bool:
        return fwd.kept and self._keeps_for(fwd.autocast)

    def replayable(self) -> str | None:
        """None if the step can be replayed, else why not."""
        if not self.forwards:
            return "no forward of this step was seen"
        if not all(self._keeps(f) for f in self.forwards):
            return "output gradients are not kept for this model (CUDA without fp16 autocast)"
        for f in self.forwards:
            if any(t._version != v for t, v in f.versions):
                return "an input of the forward was modified in place afterwards"
        return None


def _keep(store: dict[int, torch.Tensor], k: int) -> Any:
    def hook(grad: torch.Tensor) -> None:
        store.setdefault(k, grad)  # a reference: the engine is done with it
    return hook


@contextlib.contextmanager
def _restored_state(model: nn.Module, cuda: bool) -> Iterator[None]:
    """Put RNG and buffers back as they were, whatever the replay did."""
    rng = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state_all() if cuda else None
    with torch.no_grad():
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        torch.set_rng_state(rng)
        if rng_cuda is not None:
            torch.cuda.set_rng_state_all(rng_cuda)


def replay(model: nn.Module, capture: StepCapture) -> None:
    """Run the captured forwards and backwards again (localisation hooks must be armed by the caller)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with _restored_state(model, capture._cuda), replaying():
        for fwd in capture.forwards:
            torch.set_rng_state(fwd.rng_cpu)
            if fwd.rng_cuda is not None:
                torch.cuda.set_rng_state_all(fwd.rng_cuda)
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch.enable_grad())
                for dev, dtype in fwd.autocast:
                    stack.enter_context(torch.autocast(dev, dtype=dtype))
                out = model(*fwd.args, **fwd.kwargs)
            outs = [t for _, t in flatten_tensors(out, limit=64) if t.requires_grad]
            pairs = [(outs[k], g) for k, g in sorted(fwd.grads.items()) if k < len(outs)]
            if not pairs or not params:
                continue
            torch.autograd.grad([o for o, _ in pairs], params, grad_outputs=[g for _, g in pairs],
                                allow_unused=True)
