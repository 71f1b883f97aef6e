"""Peer tools as benchmark arms, measured in the same run as dsnotebook (used when installed).

Each arm is a context manager factory: entering starts recording, leaving stops it, so the
interleaved A/B helper can switch it on for its blocks exactly as it does the tracer.

- ``wandb``: ``wandb.watch(model, log="all", log_freq=1)`` in an offline run (gradient and
  parameter histograms every step, through W&B's own hooks).
- ``tensorboard``: ``SummaryWriter.add_histogram`` of every gradient after every optimizer
  step (what a user writes by hand for TensorBoard's histogram dashboard).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from typing import Any, Callable, Iterator

import torch


def available() -> dict[str, bool]:
    return {"wandb": importlib.util.find_spec("wandb") is not None,
            "tensorboard": importlib.util.find_spec("tensorboard") is not None}


class WandbArm:
    """One offline W&B run for the whole benchmark; ``watch`` on while the arm is entered."""

    def __init__(self, model: torch.nn.Module) -> None:
        import wandb

        self.wandb, self.model = wandb, model
        self.dir = tempfile.mkdtemp(prefix="dsn_bench_wandb_")
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(mode="offline", dir=self.dir, project="dsnotebook-bench")

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.wandb.watch(self.model, log="all", log_freq=1)
        try:
            yield
        finally:
            self.wandb.unwatch(self.model)

    def close(self) -> None:
        self.wandb.finish()


class TensorBoardArm:
    """Histograms of every gradient after every optimizer step, written by a SummaryWriter."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(tempfile.mkdtemp(prefix="dsn_bench_tb_"))
        self.model, self.optimizer, self.step = model, optimizer, 0

    def _log(self, *_: Any) -> None:
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                self.writer.add_histogram(f"grad/{name}", p.grad, self.step)
        self.step += 1

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        handle = self.optimizer.register_step_post_hook(self._log)
        try:
            yield
        finally:
            handle.remove()

    def close(self) -> None:
        self.writer.close()


def arms(model: torch.nn.Module, optimizer: torch.optim.Optimizer, wanted: list[str]) -> dict[str, Any]:
    """The peer arms asked for that are installed (name -> arm with ``__call__`` and ``close``)."""
    have = available()
    out: dict[str, Any] = {}
    for name in wanted:
        if not have.get(name):
            print(f"({name} not installed: arm skipped)")
        elif name == "wandb":
            out[name] = WandbArm(model)
        elif name == "tensorboard":
            out[name] = TensorBoardArm(model, optimizer)
    return out


Factory = Callable[[], Any]
