"""Group parameter ids by the device their tensors live on (one backend call per device)."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch


def by_device(ids: list[int], tensors: Sequence[torch.Tensor], single_device: bool) -> dict[torch.device, list[int]]:
    """``{device: ids}``; ``single_device`` skips the per-tensor loop in the common case."""
    if single_device:
        return {tensors[0].device: ids}
    groups: dict[torch.device, list[int]] = defaultdict(list)
    for i, t in zip(ids, tensors):
        groups[t.device].append(i)
    return groups
