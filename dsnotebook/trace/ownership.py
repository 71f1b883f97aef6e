"""Which parameters each optimizer updates, and which optimizer hook calls are nested.

The optimizer hooks are global when the user passes no optimizer, so every optimizer of
the process reaches the tracer; only those that update this model's parameters count.
"""
from __future__ import annotations

import sys
import weakref
from typing import Any, Sequence

import torch
from torch import nn


class Ownership:
    """Parameter ids per optimizer (cached), the ones no optimizer owns, nested step() calls."""

    def __init__(self, params: Sequence[nn.Parameter], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self._index = {id(p): i for i, p in enumerate(params)}
        self._n = len(params)
        self._cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._known: set[int] = set()  # tensors some optimizer of ours updates
        self._unowned_cache: tuple[int, list[int]] = (-1, [])
        self._outer_frames: dict[int, Any] = {}  # optimizer id -> frame of its running step() hooks
        for opt in optimizers:
            self._known.update(self.owned(opt))

    def owned(self, opt: torch.optim.Optimizer) -> list[int]:
        """Model tensor ids that ``opt`` updates, deduplicated; cached while its groups keep their sizes.

        The hot path runs this every step: a cache hit costs one tuple of group sizes.
        """
        sig = tuple(len(g["params"]) for g in opt.param_groups)
        hit = self._cache.get(opt)
        if hit is not None and hit[0] == sig:
            return hit[1]
        index = self._index
        ids = list(dict.fromkeys(index[id(p)] for g in opt.param_groups for p in g["params"] if id(p) in index))
        self._cache[opt] = (sig, ids)
        return ids

    def saw(self, ids: list[int]) -> None:
        self._known.update(ids)

    def unowned(self) -> list[int]:
        """Tensors no optimizer seen so far updates (read at the first optimizer of a step)."""
        if self._unowned_cache[0] != len(self._known):
            known = self._known
            self._unowned_cache = (len(known), [i for i in range(self._n) if i not in known])
        return self._unowned_cache[1]

    def nested_call(self, opt: torch.optim.Optimizer, pre: bool) -> bool:
        """True for hooks of a step() running inside another step() of the same optimizer.

        An optimizer subclass whose step() calls super().step() fires the hooks twice per
        step.  The outer call's hook-wrapper frame is remembered; an inner call finds it up
        its own stack.  A frame (not a depth counter) so a step() that raised cannot leave
        the tracer thinking it is still nested.  Must be called directly from the tracer's
        hook method (the frame two levels up is the hook wrapper).
        """
        wrapper = sys._getframe(2)
        outer = self._outer_frames.get(id(opt))
        if pre:
            if outer is not None:
                f = wrapper.f_back
                while f is not None:
                    if f is outer:
                        return True
                    f = f.f_back
            self._outer_frames[id(opt)] = wrapper
            return False
        if outer is not None and outer is not wrapper:
            return True
        self._outer_frames.pop(id(opt), None)
        return False

    def forget_frames(self) -> None:
        self._outer_frames.clear()
