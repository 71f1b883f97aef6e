"""Int8 quantization: dynamic (int8 weights and activations) and weight-only.

Backends, in order of preference (``backend="auto"``):

* **torchao** (``pip install 'dsnotebook[compress]'``): ``quantize_`` with
  ``Int8DynamicActivationInt8WeightConfig`` / ``Int8WeightOnlyConfig`` on Linear layers; torchao is
  where torch's quantization now lives.  In eager mode on a CPU its int8 kernels can be slower
  than fp32 (measured 2-7x slower with torchao 0.18 on our 2-core machine): the table shows it.
* **torch.ao.quantization.quantize_dynamic** (dynamic int8 only, Linear layers, CPU only), the
  labelled fallback while torch still ships it (it warns that it is deprecated).
* **dsnotebook reference** (weight-only only): int8 weights with one scale per output channel,
  dequantized at every call (Linear and Conv layers): the size shrinks about 4x, the speed does not
  improve (the arithmetic stays fp32).
"""
from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook.compress.methods import COMPRESSIBLE, Compressed, Context, Method, NotApplicable, compressible_layers

__all__ = ["DynamicInt8", "Int8WeightOnly", "Int8WeightOnlyLinear", "Int8WeightOnlyConv", "torchao_available"]

BACKENDS = ("auto", "torchao", "torch.ao", "reference")


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def _torch_ao_dynamic() -> Callable[..., nn.Module] | None:
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        return None
    return quantize_dynamic


def _torchao_version() -> str:
    try:
        import torchao

        return f"torchao {torchao.__version__}"
    except Exception:  # pragma: no cover - a broken install
        return "torchao"


def _torchao_quantize(model: nn.Module, config_name: str, names: set[str]) -> None:
    import torchao.quantization as tq

    config = getattr(tq, config_name)()
    tq.quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn in names)


class _Int8(Method):
    """What both int8 methods share: backend choice, target layers, notes."""

    config_name = ""

    def __init__(self, backend: str = "auto", name: str | None = None) -> None:
        super().__init__(name)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend

    per_layer = True

    def choose(self) -> str:
        raise NotImplementedError

    def targets(self, backend: str) -> tuple[type, ...]:
        return (nn.Linear,)

    def layers(self, model: nn.Module, ctx: Context) -> list[str]:
        return compressible_layers(model, self.targets(self.choose()))

    def _names(self, model: nn.Module, backend: str, only: set[str] | None) -> tuple[set[str], int]:
        names = set(compressible_layers(model, self.targets(backend)))
        total = len(names)
        if only is not None:
            names &= only
        if not names:
            kinds = "/".join(t.__name__ for t in self.targets(backend))
            raise NotApplicable(f"no {kinds} layer to quantize" + (f" among {sorted(only)}" if only else ""))
        return names, total

    def _note(self, model: nn.Module, names: set[str], total: int, backend: str) -> str:
        others = [n for n in compressible_layers(model) if n not in names]
        kinds = "/".join(t.__name__ for t in self.targets(backend))
        note = f"{len(names)} of {total} {kinds} layers quantized"
        if others and len(names) == total:
            note += (f"; {len(others)} other layer(s) kept in float "
                     f"({', '.join(sorted({type(model.get_submodule(n)).__name__ for n in others}))}: "
                     f"not handled by this backend)")
        return note

    def apply(self, model: nn.Module, ctx: Context, only: set[str] | None = None) -> Compressed:
        backend = self.choose()
        self._check(backend)
        names, total = self._names(model, backend, only)
        notes = [self._note(model, names, total, backend)]
        if backend == "torchao":
            _torchao_quantize(model, self.config_name, names)
            label = f"{_torchao_version()} {self.config_name}"
        else:
            model, label = self._apply_without_torchao(model, ctx, names, notes)
        return Compressed(model, label, notes, {"layers": sorted(names)})

    def _check(self, backend: str) -> None:
        """Refuse a backend this method cannot use (before any layer is touched)."""

    def _apply_without_torchao(self, model: nn.Module, ctx: Context, names: set[str],
                               notes: list[str]) -> tuple[nn.Module, str]:
        """Quantize ``names`` with the non-torchao backend; returns (model, label), may add notes."""
        raise NotImplementedError


class DynamicInt8(_Int8):
    """Int8 weights and activations quantized on the fly per call (Linear layers)."""

    key = "dynamic_int8"
    config_name = "Int8DynamicActivationInt8WeightConfig"

    def choose(self) -> str:
        if self.backend != "auto":
            return self.backend
        if torchao_available():
            return "torchao"
        if _torch_ao_dynamic() is not None:
            return "torch.ao"
        raise NotApplicable("dynamic int8 needs torchao (pip install 'dsnotebook[compress]'): this torch has no "
                            "torch.ao.quantization.quantize_dynamic any more")

    def _check(self, backend: str) -> None:
        if backend == "reference":
            raise NotApplicable("the reference backend does weight-only int8 only; use torchao or torch.ao here")

    def _apply_without_torchao(self, model: nn.Module, ctx: Context, names: set[str],
                               notes: list[str]) -> tuple[nn.Module, str]:
        qd = _torch_ao_dynamic()
        if qd is None:
            raise NotApplicable("torch.ao.quantization.quantize_dynamic is not in this torch; install torchao")
        if ctx.device.type != "cpu":
            raise NotApplicable(f"torch.ao dynamic quantization runs on the CPU only (model on {ctx.device}); "
                                "torchao has GPU kernels")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            model = qd(model, names, dtype=torch.qint8, inplace=True)
        notes.append("backend: torch.ao fallback (torchao is not installed, or was not chosen)")
        return model, "torch.ao.quantization.quantize_dynamic (fallback, deprecated in torch)"


class Int8WeightOnly(_Int8):
    """Int8 weights (one scale per output channel), activations and arithmetic in float."""

    key = "int8_weight_only"
    config_name = "Int8WeightOnlyConfig"

    def choose(self) -> str:
        if self.backend != "auto":
            if self.backend == "torch.ao":
                raise NotApplicable("torch.ao has no int8 weight-only mode for Linear/Conv; use torchao or reference")
            return self.backend
        return "torchao" if torchao_available() else "reference"

    def targets(self, backend: str) -> tuple[type, ...]:
        return (nn.Linear,) if backend == "torchao" else COMPRESSIBLE

    def _apply_without_torchao(self, model: nn.Module, ctx: Context, names: set[str],
                               notes: list[str]) -> tuple[nn.Module, str]:
        for name in sorted(names):
            layer = model.get_submodule(name)
            if isinstance(layer, nn.Linear):
                new: nn.Module = Int8WeightOnlyLinear(layer)
            elif getattr(layer, "padding_mode", "zeros") == "zeros":
                new = Int8WeightOnlyConv(layer)
            else:
                continue
            _replace(model, name, new)
        notes.append("reference backend: weights stored as int8 + per-channel scales; they are dequantized "
                     "at every call, so the arithmetic (and the speed) stays fp32")
        return model, "dsnotebook reference int8 weight-only (dequantized per call)"


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (int8 weights, float scales)."""
    flat = w.detach().reshape(w.shape[0], -1).float()
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(w.shape), scale.to(w.dtype)


class Int8WeightOnlyLinear(nn.Module):
    """A Linear whose weight is stored as int8 with one scale per output feature."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        q, scale = _quantize_rows(layer.weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = layer.in_features, layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.scale.to(x.dtype)[:, None]
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


class Int8WeightOnlyConv(nn.Module):
    """A Conv1d/2d/3d (zero padding) whose weight is stored as int8 with one scale per filter."""

    _FN: dict[int, Any] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        q, scale = _quantize_rows(layer.weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.dims = layer.weight.dim() - 2
        self.stride, self.padding, self.dilation, self.groups = layer.stride, layer.padding, layer.dilation, layer.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        w = self.weight.to(x.dtype) * self.scale.to(x.dtype).view(shape)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return self._FN[self.dims](x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel={tuple(self.weight.shape[2:])}, int8 weight-only"
