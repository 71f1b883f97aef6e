"""Where this process stands in a torch.distributed job, and which part of a tensor it holds.

Every rank computes statistics of the tensors it holds: under FSDP2 (``fully_shard``) a
parameter and its gradient are DTensors and the rank holds one shard (``.to_local()``,
uneven shards included: the last ranks may hold fewer rows, or none); under DDP every rank
holds the whole, identical (all-reduced) gradient.  Whether a rank's statistics *add* into
the whole-job value or merely *repeat* it is decided per tensor here, from the DTensor's
placements: a rank contributes when its coordinate is 0 on every mesh dimension that
replicates the tensor (so HSDP counts each shard once), and a plain tensor is contributed
by global rank 0 alone (DDP: the whole job's gradient is the averaged one every rank holds).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["World", "world", "local_tensor", "contributes", "is_sharded"]


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size``, the default group's ``backend``."""

    rank: int
    size: int
    backend: str
    host: str

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "world_size": self.size, "backend": self.backend, "host": self.host}


def world() -> World | None:
    """The job this process belongs to, or None when torch.distributed is not initialised."""
    try:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        return World(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()), socket.gethostname())
    except Exception:  # a half-initialised or torn-down group: behave as a single process
        return None


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except Exception:  # pragma: no cover - builds without distributed support
        return None
    return DTensor


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this rank holds: a DTensor's local shard, any other tensor itself."""
    dt = _dtensor_type()
    if dt is not None and isinstance(t, dt):
        return t.to_local()
    return t


def is_sharded(t: torch.Tensor) -> bool:
    """True for a DTensor with a Shard placement on some mesh dimension."""
    dt = _dtensor_type()
    return dt is not None and isinstance(t, dt) and any(p.is_shard() for p in t.placements)


def contributes(t: torch.Tensor, rank: int) -> bool:
    """Whether this rank's statistics of ``t`` are part of the whole-job sum (see the module docstring)."""
    dt = _dtensor_type()
    if dt is None or not isinstance(t, dt):
        return rank == 0
    coord = t.device_mesh.get_coordinate()
    if coord is None:  # this rank is not on the tensor's mesh
        return False
    return all(c == 0 for c, p in zip(coord, t.placements) if not p.is_shard())
