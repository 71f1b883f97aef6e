"""Activation statistics of every module output, on sampled steps only.

The tracer arms a :class:`ActivationSampler` at the step boundary before a sampled step
(forward hooks on every module) and collects at the next boundary (hooks removed), so
steps that are not sampled run without a single per-module hook.  Only the first forward
with gradients enabled of a sampled step is recorded (later micro-batches, evaluation
passes under ``no_grad`` and checkpoint recomputation are skipped).

Per module output the hook only keeps a reference (no device work, no sync).  At the
step end one batched call of the tracer's statistics backend (the same one that does
the gradients: sum, sumsq, absmax, non-finite, zeros per tensor; a complex output counts
its real and imaginary parts as values) plus one per-channel maximum per rectifier output
(maximum and minimum for rectifiers that can go negative), compared with zero once for
all of them, give mean, std, abs-max, zero fraction, non-finite count and dead units; the
numbers travel to the host in one copy.

Dead unit: a channel of a rectifier's output (ReLU family: the module is one, or its
output was made by one, e.g. a block ending in ``F.relu``) whose every element was
exactly zero across the whole sampled batch (and all spatial/sequence positions).  Other
outputs have no dead units (``units`` 0): an all-zero channel of a Flatten over images is
a blank border pixel of the data, and a max-pool after a ReLU only repeats the ReLU's.  Channel = dim 1 of conv-like ``N, C, ...``
outputs (4-D and more, or 3-D outputs of 1-d conv/norm/pool layers and the elementwise
layers after them), the last dim of linear-like ``N, ..., F`` outputs.

In-place ops after a module (``ReLU(inplace=True)`` after a conv or batch norm) would
change a kept output before the step end: the hook stores the tensor's version counter,
a changed version drops that row for the step and the module's outputs are reduced at
hook time from then on (``reduce_modules``; pass it to do so from the first sampled step):
the same five numbers and per-channel peaks, computed before the in-place op runs, instead
of a copy of the output (a copy per batch norm of ResNet-50 is gigabytes at batch 64).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dsnotebook.core.hooks import HookSet, first_float_tensor, hook_modules, in_recompute, internal, is_replaying

_CHANNEL_FIRST_3D = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                     nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.GroupNorm)


def channel_dim(module: nn.Module, t: torch.Tensor, prev: tuple[tuple[int, ...], int] | None) -> int | None:
    """Which dim of a module output holds its units (None: no units, e.g. a scalar)."""
    if t.dim() < 2:
        return None
    if t.dim() == 2:
        return 1
    if t.dim() >= 4:
        return 1
    if isinstance(module, _CHANNEL_FIRST_3D):
        return 1
    if prev is not None and prev[0] == t.shape and prev[1] == 1:
        return 1  # e.g. a ReLU right after a Conv1d
    return t.dim() - 1


_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Threshold, nn.Hardswish, nn.Hardsigmoid)
# autograd nodes of the ops behind them (functional calls inside a module's forward)
_RECTIFIER_NODES = frozenset({"ReluBackward0", "ReluBackward1", "HardtanhBackward0", "HardtanhBackward1",
                              "ThresholdBackward0", "ThresholdBackward1", "HardswishBackward0",
                              "HardsigmoidBackward0"})


_NONNEG_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.Hardsigmoid)  # exact types: outputs >= 0 (or NaN)
_NONNEG_NODES = frozenset({"ReluBackward0", "ReluBackward1", "HardsigmoidBackward0"})


def rectifier_kind(module: nn.Module, t: torch.Tensor) -> int:
    """0: not a rectifier's output; 1: a rectifier whose outputs are >= 0 (ReLU, ReLU6,
    Hardsigmoid: a channel is silent when its maximum is 0); 2: another rectifier (Hardtanh,
    Threshold, Hardswish: silent when maximum and minimum are 0)."""
    if isinstance(module, _RECTIFIERS):
        return 1 if type(module) in _NONNEG_RECTIFIERS else 2
    node = t.grad_fn
    if node is None:
        return 0
    kind = type(node).__name__
    return 1 if kind in _NONNEG_NODES else 2 if kind in _RECTIFIER_NODES else 0


class _Reduced:
    """What :meth:`ActivationSampler.collect` needs of an output that a later in-place op will
    change, computed when the module returned it: the five statistics (float64 on the output's
    device, the backend's columns: sum and sum of squares of the finite values, abs-max of the
    finite values, non-finite count, zero count) and the per-channel peak of a rectifier."""

    __slots__ = ("shape", "stats", "peak", "unit_dim", "_version")

    def __init__(self, t: torch.Tensor, kind: int, unit_dim: int | None) -> None:
        # Twelve small launches, no host sync; the temporaries live only inside this hook.
        x = t.detach()
        z = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        self.stats = torch.stack([
            torch.sum(z, dtype=torch.float64),
            torch.linalg.vector_norm(z, dtype=torch.float64).square(),
            torch.linalg.vector_norm(z, ord=float("inf")).to(torch.float64),
            x.numel() - torch.isfinite(x).sum(dtype=torch.float64),
            (x == 0).sum(dtype=torch.float64),
        ])
        self.shape, self.unit_dim, self._version = x.shape, unit_dim, 0
        self.peak = None
        if kind and unit_dim is not None:
            self.peak = _peak(x, unit_dim, kind)

    def numel(self) -> int:
        return self.shape.numel()

    def dim(self) -> int:
        return len(self.shape)


def _peak(x: torch.Tensor, unit_dim: int, kind: int) -> torch.Tensor:
    """Per channel, non-zero where any element is: the channel maximum of a rectifier that cannot
    go negative, else |max| + |min|; NaN propagates and counts as alive."""
    dims = [d for d in range(x.dim()) if d != unit_dim]
    return x.amax(dim=dims) if kind == 1 else x.amax(dim=dims).abs() + x.amin(dim=dims).abs()


def ends_in_rectifier(module: nn.Module, t: torch.Tensor) -> bool:
    """True when ``t`` (an output of ``module``) is a rectifier's output: zero means "silent"."""
    return rectifier_kind(module, t) > 0


class _Row:
    __slots__ = ("name", "call", "type", "tensor", "version", "dim", "alias", "kind")

    def __init__(self, name: str, call: int, type_: str, tensor: torch.Tensor, version: int, dim: int | None,
                 alias: int, kind: int) -> None:
        self.name, self.call, self.type, self.tensor, self.version = name, call, type_, tensor, version
        self.dim, self.alias, self.kind = dim, alias, kind


_IDLE, _ARMED, _RECORDING, _DONE = "idle", "armed", "recording", "done"
_TYPE_KINDS: dict[type, int] = {}  # module type -> rectifier kind of the type itself (0: decided by the output)
_NODE_KINDS = {**{n: 2 for n in _RECTIFIER_NODES}, **{n: 1 for n in _NONNEG_NODES}}
_NO_GRAD_FN = torch.empty(0)
_NO_UNITS = np.zeros(0, np.int32)


class ActivationSampler:
    """Forward hooks on every module while armed; :meth:`collect` turns what they saw into
    one device array plus a host-side decoder.

    The hook itself only appends ``(name, module, output, version, ...)`` to a list: no tensor
    work, no allocation beyond that tuple (fewer objects alive during the step also means
    fewer garbage-collector passes, which cost more than the hooks on a big process).
    Call numbers, aliases, channel dims and rectifier kinds are worked out at
    :meth:`collect`; an output's autograd node is the same then as at hook time, because a
    row whose version changed (in-place op) is dropped.  Outputs of ``reduce_modules`` are
    reduced in the hook (:class:`_Reduced`: a few small kernels instead of a copy).  The same
    tensor object seen again is an alias (a parent returning its child's output) only while
    its version is unchanged: an in-place module's output (``ReLU(inplace=True)``) is the
    same object as its input with new values, and gets a row of its own.
    """

    def __init__(self, model: nn.Module, reduce_modules: set[str] | None = None) -> None:
        self._model = weakref.ref(model)  # the tracer outlives the model: hold it weakly
        self.hooks = HookSet()
        self.reduce_modules: set[str] = set(reduce_modules or ())
        self.notes: list[str] = []
        self._raw: list[tuple[Any, ...]] = []
        self._alive: list[torch.Tensor] = []
        self._root_id = id(model)
        self._depth = 0
        self._state = _IDLE  # idle -> armed -> recording -> done

    @property
    def model(self) -> nn.Module | None:
        return self._model()

    @property
    def armed(self) -> bool:
        return len(self.hooks) > 0

    def arm(self) -> None:
        """Install the hooks for the coming step (idempotent)."""
        model = self.model
        if not self.armed and model is not None:
            self._root_id = id(model)
            hook_modules(model, self._pre, self._post, self.hooks, with_kwargs=False)
        self._raw, self._alive = [], []
        self._depth = 0
        self._state = _ARMED

    def disarm(self) -> None:
        self.hooks.remove()
        self._state = _IDLE

    def discard(self) -> None:
        """Forget outputs kept since the last collect (a forward that belongs to no step)."""
        self._raw, self._alive = [], []

    def _pre(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if id(module) != self._root_id or in_recompute() or is_replaying():
            return
        if self._state == _ARMED and torch.is_grad_enabled():
            self._state = _RECORDING
        if self._state == _RECORDING:
            self._depth += 1

    def _post(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._state != _RECORDING or in_recompute():
            return
        try:
            t = output if type(output) is torch.Tensor else first_float_tensor(output)
            if t is None or not (t.is_floating_point() or t.is_complex()):
                self._raw.append((name, module, None, 0, 0, -1, 0))
            elif name in self.reduce_modules:
                with internal(), torch.no_grad():
                    self._alive.append(t)  # keeps id(t) unique until collect
                    kind = rectifier_kind(module, t)
                    if t.is_complex():  # rare: a copy, as before (the reduction is for real values)
                        self._raw.append((name, module, t.detach().clone(), 0, id(t), kind, t._version))
                    else:
                        reduced = _Reduced(t, kind, channel_dim(module, t, self._prev_units())) if t.numel() else None
                        self._raw.append((name, module, reduced, 0, id(t), kind, t._version))
            else:
                self._raw.append((name, module, t, t._version, id(t), -1, t._version))
        except Exception as exc:  # never raise from a hook: note it and go on
            self.notes.append(f"activation hook of {name or '(root)'}: {type(exc).__name__}: {exc}")
        if id(module) == self._root_id:
            self._depth -= 1
            if self._depth <= 0:
                self._state = _DONE  # one forward per sampled step

    def _prev_units(self) -> tuple[Any, int | None] | None:
        """(shape, channel dim) of the previous output, as :meth:`_rows` would see it (for 3-D outputs)."""
        for _, module, t, *_ in reversed(self._raw):
            if t is None or t.numel() == 0:
                continue  # _rows skips these too
            nd = t.dim()
            if type(t) is _Reduced:
                d = t.unit_dim
            else:
                d = None if nd < 2 else 1 if nd != 3 else channel_dim(module, t, None)
            return (t.shape, d) if d is not None else None
        return None

    def _rows(self, raw: list[tuple[Any, ...]]) -> list[_Row]:
        """The hooks' tuples as rows: call numbers, aliases, channel dims, rectifier kinds.

        Runs once per sampled step over every module call (a few hundred): the common cases
        take the short paths (module types looked up once, dims other than 3 need no search,
        shapes compared as ``torch.Size`` without copies)."""
        rows: list[_Row] = []
        calls: dict[int, int] = {}
        first: dict[int, tuple[int, int]] = {}  # id of an output -> (its row, its version then)
        prev: tuple[Any, int] | None = None
        kinds = _TYPE_KINDS
        for name, module, t, version, tid, kind, seen_version in raw:
            key = id(module)
            call = calls.get(key, 0)
            calls[key] = call + 1
            if t is None or t.numel() == 0:
                continue
            alias, was = first.get(tid, (-1, 0))
            if alias < 0 or was != seen_version:  # new, or changed in place since (a ReLU(inplace) after a BN)
                alias = -1
                first[tid] = (len(rows), seen_version)
            cls = type(module)
            if kind < 0:
                kind = kinds.get(cls, -1)
                if kind < 0:
                    kind = kinds[cls] = rectifier_kind(module, _NO_GRAD_FN) if isinstance(module, _RECTIFIERS) else 0
                if kind == 0:
                    node = t.grad_fn
                    if node is not None:
                        kind = _NODE_KINDS.get(type(node).__name__, 0)
            nd = t.dim()
            if type(t) is _Reduced:
                dim = t.unit_dim
            else:
                dim = None if nd < 2 else 1 if nd != 3 else channel_dim(module, t, prev)
            shape = t.shape
            prev = (shape, dim) if dim is not None else None
            rows.append(_Row(name or "(root)", call, cls.__name__, t, version, dim if kind else None, alias, kind))
        return rows

    def collect(self, stats: Callable[[list[torch.Tensor]], torch.Tensor]) -> tuple[torch.Tensor, Callable] | None:
        """(device float64 vector, decode(host) -> rows) for what the last forward produced, or None.

        ``stats`` is the backend's batched ``grad_stats``; dead units come from one
        per-channel maximum per rectifier output (maximum and minimum where a rectifier can
        go negative), concatenated and compared with zero once, so that a single
        device->host copy brings everything back.
        """
        raw, self._raw = self._raw, []
        self._state = _ARMED if self.armed else _IDLE
        try:
            rows = self._rows(raw)
        finally:
            self._alive = []
        if not rows:
            return None
        kept: list[_Row] = []
        index: dict[int, int] = {}
        changed: list[str] = []
        for i, r in enumerate(rows):
            src = rows[r.alias] if r.alias >= 0 else r
            if src.tensor._version != src.version:  # modified in place after the hook
                if src.name not in self.reduce_modules:
                    self.reduce_modules.add(src.name)
                    changed.append(src.name)
                continue
            if r.alias >= 0 and r.alias in index:
                continue
            index[i] = len(kept)
            kept.append(r)
        if changed:  # one note for all of them (ResNet-50: 49 batch norms)
            names = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            self.notes.append(f"outputs modified in place later (by an in-place op such as ReLU(inplace=True)): "
                              f"{names}; left out of this sample, summarised when produced from the next one on")
        aliases = [(r, index[r.alias]) for r in rows if r.alias >= 0 and r.alias in index]
        if not kept:
            return None
        with internal(), torch.no_grad():
            raw_stats = _five_per_row(kept, stats)
            peaks = []
            for r in kept:
                if r.dim is None:
                    continue
                x = r.tensor
                peaks.append(x.peak if type(x) is _Reduced else _peak(x, r.dim, r.kind))
            parts = [raw_stats]
            if peaks:
                if all(m.device == raw_stats.device for m in peaks):
                    parts.append(torch.cat(peaks).ne(0).to(torch.float64))
                else:
                    parts += [m.ne(0).to(device=raw_stats.device, dtype=torch.float64) for m in peaks]
            flat = torch.cat(parts) if len(parts) > 1 else raw_stats
        meta = [(r.name, r.call, r.type, _values(r.tensor), None if r.dim is None else r.tensor.shape[r.dim])
                for r in kept]
        alias_meta = [(r.name, r.call, r.type, j) for r, j in aliases]

        def decode(host: np.ndarray) -> list[dict[str, Any]]:
            from dsnotebook.run.fields import derive_grad_fields

            n = len(meta)
            raw_h = host[:5 * n].reshape(n, 5)
            vals = derive_grad_fields(raw_h, np.array([m[3] for m in meta], dtype=np.float64))[:, 1:6].tolist()
            out, off = [], 5 * n
            for (name, call, type_, numel, units), (mean, std, absmax, nonfinite, zero_frac) in zip(meta, vals):
                dead = _NO_UNITS
                if units is not None:
                    dead = np.flatnonzero(host[off:off + units] == 0).astype(np.int32)
                    off += units
                out.append({"module": name, "call": call, "type": type_, "mean": mean, "std": std, "absmax": absmax,
                            "zero_frac": zero_frac, "nonfinite": nonfinite, "dead_units": len(dead),
                            "units": units if units is not None else 0, "dead": dead})
            for name, call, type_, j in alias_meta:
                out.append({**out[j], "module": name, "call": call, "type": type_})
            return out

        return flat, decode


def _values(t: Any) -> int:
    """How many values the statistics of an output count (a complex element is two)."""
    return t.numel() * 2 if type(t) is not _Reduced and t.is_complex() else t.numel()


def _five_per_row(kept: list[_Row], stats: Callable[[list[torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """The five statistics of every kept row, in row order, flat (float64): one batched backend
    call for the outputs kept by reference, the hook-time numbers of reduced ones in between."""
    # complex outputs: their real and imaginary parts, as values of their own (a view, no copy)
    tensors = [torch.view_as_real(r.tensor) if r.tensor.is_complex() else r.tensor
               for r in kept if type(r.tensor) is not _Reduced]
    batched = stats(tensors)[:, :5].to(torch.float64) if tensors else None
    if batched is not None and len(tensors) == len(kept):
        return batched.reshape(-1)
    device = batched.device if batched is not None else kept[0].tensor.stats.device
    pieces: list[torch.Tensor] = []
    run_start = i = 0  # a run of by-reference rows is one slice of the batched result
    for r in kept:
        if type(r.tensor) is _Reduced:
            if i > run_start:
                pieces.append(batched[run_start:i].reshape(-1))
            pieces.append(r.tensor.stats.to(device))
            run_start = i
        else:
            i += 1
    if i > run_start:
        pieces.append(batched[run_start:i].reshape(-1))
    return torch.cat(pieces)
