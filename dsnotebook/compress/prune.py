"""Unstructured magnitude pruning, made permanent, with its storage reported honestly.

``torch.nn.utils.prune`` zeroes the smallest weights through a mask and a forward pre-hook;
:meth:`MagnitudePrune.apply` removes the mask (``prune.remove``) so the zeros are part of the
weights and the model is an ordinary module again.  A dense tensor full of zeros takes exactly
as much space and time as before: the serialized size and the latency do not change.  What a
sparse format *would* take is measured too (``torch.save`` of the pruned weights as CSR with
int64 indices, and as a bitmask plus the non-zero values), and the smaller one is reported.
"""
from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from dsnotebook.compress.methods import Compressed, Context, Method, NotApplicable, compressible_layers

__all__ = ["MagnitudePrune", "sparse_storage"]


class MagnitudePrune(Method):
    """Zero the ``amount`` fraction of smallest-magnitude weights of every Linear/Conv layer
    (``scope="layer"``: per layer; ``"global"``: one threshold over all of them)."""

    key = "magnitude_prune"
    per_layer = True

    def __init__(self, amount: float = 0.5, scope: str = "layer", name: str | None = None) -> None:
        if not 0.0 < amount < 1.0:
            raise ValueError(f"amount is the fraction of weights to zero, in (0, 1); got {amount}")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        super().__init__(name or (None if amount == 0.5 and scope == "layer" else
                                  f"magnitude_prune({amount:g}{', global' if scope == 'global' else ''})"))
        self.amount, self.scope = amount, scope

    def layers(self, model: nn.Module, ctx: Context) -> list[str]:
        return compressible_layers(model)

    def apply(self, model: nn.Module, ctx: Context, only: set[str] | None = None) -> Compressed:
        names = [n for n in compressible_layers(model) if only is None or n in only]
        if not names:
            raise NotApplicable("no Linear/Conv layer to prune")
        layers = [(model.get_submodule(n), "weight") for n in names]
        if self.scope == "global" and len(layers) > 1:
            prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=self.amount)
        else:
            for m, p in layers:
                prune.l1_unstructured(m, p, amount=self.amount)
        for m, p in layers:
            prune.remove(m, p)  # permanent: the zeros are in the weight, mask and hook are gone
        sizes = sparse_storage(model, names)
        dense = sizes.pop("dense")
        fmt, best = min(sizes.items(), key=lambda kv: kv[1])
        zeros = sum(int((m.weight == 0).sum()) for m, _ in layers)
        total = sum(m.weight.numel() for m, _ in layers)
        notes = [f"{zeros}/{total} weights of {len(names)} layers are zero ({100 * zeros / max(total, 1):.0f}%)",
                 "stored densely: zeros take as much space and time as any weight, so the serialized size and the "
                 "latency stay the same",
                 "a sparse format would take (measured with torch.save): " +
                 ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items()) +
                 f" vs dense {dense / 1024:.1f} KiB"]
        return Compressed(model, f"torch.nn.utils.prune (L1, {self.scope}) + prune.remove", notes,
                          {"sparse_bytes": best, "sparse_format": fmt, "sparse_sizes": sizes, "layers": names})


def _saved_bytes(obj: Any) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def sparse_storage(model: nn.Module, names: list[str]) -> dict[str, int]:
    """Serialized bytes of the state dict with the weights of ``names`` stored densely (``dense``),
    as CSR (``csr``), and as a packed bitmask plus non-zero values (``bitmask``)."""
    state = {k: v for k, v in model.state_dict().items()}
    keys = [f"{n}.weight" if n else "weight" for n in names]
    out = {"dense": _saved_bytes(state)}
    csr = dict(state)
    bits = dict(state)
    for k in keys:
        w = state[k].detach().cpu()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            csr[k] = w.reshape(w.shape[0], -1).to_sparse_csr()
        mask = (w != 0).numpy().reshape(-1)
        bits[k] = (torch.from_numpy(np.packbits(mask)), w.reshape(-1)[torch.from_numpy(mask)].clone(), tuple(w.shape))
    out["csr"] = _saved_bytes(csr)
    out["bitmask"] = _saved_bytes(bits)
    return out
