"""Knowledge distillation: a smaller student learns to reproduce the (frozen) teacher's outputs.

Loss (Hinton et al., 2015): for class scores, ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` weighted by
``alpha``, plus ``(1 - alpha)`` times the cross-entropy with the labels when the batches carry
integer labels; for other outputs the mean squared error to the teacher's output.  The student's
training runs under the configured tracer (``ModelTracer`` when called through
``dsnotebook.compress``), so its gradients and updates can be read like any traced run:
``result.tracers["distill"].to_dataframe("grads")``.

The student: ``student=`` (a module, copied, or a function returning one), else the teacher with
``1 - width`` of its channels removed by :class:`~dsnotebook.compress.channels.ChannelPrune`
(the strongest filters as the starting point).
"""
from __future__ import annotations

import contextlib
import copy
import statistics
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook.compress.channels import ChannelPrune
from dsnotebook.compress.methods import Compressed, Context, Method
from dsnotebook.core.hooks import first_float_tensor

__all__ = ["Distill", "kd_loss"]


class Distill(Method):
    key = "distill"
    needs_data = True

    def __init__(self, student: nn.Module | Callable[[], nn.Module] | None = None, width: float = 0.5,
                 steps: int = 200, lr: float = 1e-3, temperature: float = 4.0, alpha: float = 0.9,
                 loss: str = "auto", trace: bool = True, pointwise: tuple[type, ...] = (),
                 name: str | None = None) -> None:
        super().__init__(name)
        if loss not in ("auto", "kl", "mse"):
            raise ValueError(f"loss must be 'auto', 'kl' or 'mse', got {loss!r}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 < width < 1.0:
            raise ValueError(f"width (the student's share of the teacher's channels) must be in (0, 1), got {width}")
        self.student, self.width, self.steps, self.lr = student, width, steps, lr
        self.temperature, self.alpha, self.loss, self.trace = temperature, alpha, loss, trace
        self.pointwise = tuple(pointwise)  # for the default student: see ChannelPrune

    def _make_student(self, teacher: nn.Module, ctx: Context) -> tuple[nn.Module, str]:
        if self.student is None:
            out = ChannelPrune(1.0 - self.width, pointwise=self.pointwise).apply(copy.deepcopy(teacher), ctx)
            return out.model, f"the teacher with {100 * (1 - self.width):.0f}% of its prunable channels removed"
        s = self.student if isinstance(self.student, nn.Module) else self.student()
        if not isinstance(s, nn.Module):
            raise TypeError(f"student must be an nn.Module or a function returning one, got {type(s).__name__}")
        return (copy.deepcopy(s) if s is self.student else s), f"the given {type(s).__name__}"

    def apply(self, model: nn.Module, ctx: Context, only: set[str] | None = None) -> Compressed:
        if ctx.data is None:
            raise ValueError("distill trains the student: pass data= (batches of inputs, or of (inputs, labels))")
        teacher = model.eval()
        student, origin = self._make_student(teacher, ctx)
        student = student.to(ctx.device).train()
        params = [p for p in student.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"the student {type(student).__name__} has no trainable parameters")
        opt = torch.optim.Adam(params, lr=self.lr)
        tracer = ctx.tracer(student, opt) if (self.trace and ctx.tracer is not None) else None
        losses: list[float] = []
        kind = self.loss
        with tracer if tracer is not None else contextlib.nullcontext():
            for batch in _batches(ctx.data, self.steps):
                x, y = _split(batch, ctx.device)
                with torch.no_grad():
                    t = _scores(teacher(*x))
                s = _scores(student(*x))
                if kind == "auto":
                    kind = "kl" if t.dim() >= 2 and t.shape[-1] > 1 else "mse"
                loss = kd_loss(s, t, y, kind, self.temperature, self.alpha)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        student.eval()
        n_t = sum(p.numel() for p in teacher.parameters())
        n_s = sum(p.numel() for p in student.parameters())
        tail = statistics.median(losses[-10:])
        notes = [f"student: {origin}, {n_s} parameters ({100 * n_s / max(n_t, 1):.0f}% of the teacher's {n_t})",
                 f"{len(losses)} training steps, {kind.upper()} distillation loss (T={self.temperature:g}, "
                 f"alpha={self.alpha:g}): {losses[0]:.4g} -> {tail:.4g} (median of the last 10)"]
        if tracer is not None:
            notes.append("the student's training was traced: result.tracers[name] holds the tracer")
        return Compressed(student, f"knowledge distillation ({kind}, Adam lr={self.lr:g})", notes,
                          {"tracer": tracer, "kd_losses": losses})


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None, kind: str = "kl",
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """The distillation loss of ``student`` scores against ``teacher`` scores (and ``labels``)."""
    if student.shape != teacher.shape:
        raise ValueError(f"the student's output {list(student.shape)} and the teacher's {list(teacher.shape)} differ: "
                         "distillation needs the same output shape")
    if kind == "kl":
        v = student.shape[-1]
        s, t = student.reshape(-1, v), teacher.reshape(-1, v)
        soft = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.softmax(t / temperature, dim=-1),
                        reduction="batchmean") * temperature ** 2
        if labels is not None and not labels.is_floating_point() and labels.numel() == s.shape[0]:
            return alpha * soft + (1.0 - alpha) * F.cross_entropy(s, labels.reshape(-1))
        return soft
    loss = F.mse_loss(student, teacher)
    if labels is not None and labels.is_floating_point() and labels.shape == student.shape:
        return alpha * loss + (1.0 - alpha) * F.mse_loss(student, labels)
    return loss


def _scores(out: Any) -> torch.Tensor:
    t = first_float_tensor(out)
    if t is None:
        raise TypeError(f"the model returned no floating-point tensor ({type(out).__name__}): nothing to distil")
    return t


def _split(batch: Any, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """(model arguments, labels or None) of one batch: ``x``, ``(x,)`` or ``(x, y)``."""
    if isinstance(batch, torch.Tensor):
        return (batch.to(device),), None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        y = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return (batch[0].to(device),), (None if y is None else y.to(device))
    raise TypeError(f"a batch of data= must be a tensor or a tuple (inputs, labels), got {type(batch).__name__}")


def _batches(data: Any, steps: int) -> Iterator[Any]:
    """``steps`` batches, going through ``data`` again as often as needed."""
    done = 0
    while done < steps:
        got = False
        for batch in data:
            got = True
            yield batch
            done += 1
            if done >= steps:
                return
        if not got:
            if done == 0:
                raise ValueError("data= gave no batches")
            return  # a one-shot iterator: train on what it gave
