"""The exact training state verification restores before every block and after the A/B.

Parameters, buffers, gradients, optimizer state and every RNG (torch CPU and each GPU
runtime's, Python ``random``, numpy): both arms start each block from the same weights and
random streams, so their losses match step by step and training does not advance.
"""
from __future__ import annotations

import copy
import random

import torch
from torch import nn

from dsnotebook.perf.hardware import device_available


class TrainingState:
    """Exact copy of model, gradients, optimizer and RNG state; :meth:`restore` puts it back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        self.model, self.optimizer = model, optimizer
        self.params = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()
                       if isinstance(v, torch.Tensor)}
        self.grads = {id(p): (p.grad.detach().clone() if p.grad is not None else None) for p in model.parameters()}
        self.opt = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
        self.training = {id(m): m.training for m in model.modules()}
        self.rng_cpu = torch.get_rng_state()
        self.rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        # Apple and Intel GPUs draw dropout masks from their own generators
        self.rng_mps = torch.mps.get_rng_state() if device_available("mps") else None
        self.rng_xpu = torch.xpu.get_rng_state_all() if device_available("xpu") else None
        self.rng_py = random.getstate()
        try:
            import numpy as np

            self.rng_np = np.random.get_state()
        except Exception:  # pragma: no cover
            self.rng_np = None

    def restore(self) -> None:
        with torch.no_grad():
            live = self.model.state_dict(keep_vars=True)
            for k, v in self.params.items():
                t = live[k]
                if t.shape != v.shape or t.dtype != v.dtype:
                    t.data = v.clone()
                else:
                    t.copy_(v)
        for p in self.model.parameters():
            g = self.grads.get(id(p))
            p.grad = None if g is None else g.clone()
        if self.optimizer is not None:
            self.optimizer.load_state_dict(copy.deepcopy(self.opt))
        for m in self.model.modules():
            m.training = self.training.get(id(m), m.training)
        torch.set_rng_state(self.rng_cpu)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state_all(self.rng_cuda)
        if self.rng_mps is not None:
            torch.mps.set_rng_state(self.rng_mps)
        if self.rng_xpu is not None:
            torch.xpu.set_rng_state_all(self.rng_xpu)
        random.setstate(self.rng_py)
        if self.rng_np is not None:
            import numpy as np

            np.random.set_state(self.rng_np)


