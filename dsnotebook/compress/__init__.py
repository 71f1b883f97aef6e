"""Model compression with a measured before/after table: int8 quantization (dynamic, weight-only),
magnitude and channel pruning, knowledge distillation, and chains of them.

    result = dsnotebook.compress(model, ["dynamic_int8", "channel_prune"], example_inputs, eval_fn=accuracy)
    result.table            # size, latency at batch 1 and N, metric, output deviation, warnings
    result.models["channel_prune"]; result.sensitivity; result.widget()

The package is itself callable (``dsnotebook.compress(...)`` is :func:`api.compress`): the function
and the package share a name, and a module attribute would be replaced by the subpackage as soon as
``dsnotebook.compress.<module>`` is imported.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from dsnotebook.compress.api import compress
from dsnotebook.compress.channels import ChannelPrune, plan_groups
from dsnotebook.compress.config import configure
from dsnotebook.compress.distill import Distill, kd_loss
from dsnotebook.compress.latency import interleaved_latency
from dsnotebook.compress.methods import Chain, Compressed, CompressionWarning, Context, Method, NotApplicable, register
from dsnotebook.compress.prune import MagnitudePrune
from dsnotebook.compress.quantize import DynamicInt8, Int8WeightOnly, torchao_available
from dsnotebook.compress.result import CompressionResult

__all__ = ["compress", "configure", "CompressionResult", "CompressionWarning", "Method", "Chain", "Context",
           "Compressed", "NotApplicable", "register", "DynamicInt8", "Int8WeightOnly", "MagnitudePrune",
           "ChannelPrune", "Distill", "kd_loss", "plan_groups", "interleaved_latency", "torchao_available"]

for _cls in (DynamicInt8, Int8WeightOnly, MagnitudePrune, ChannelPrune, Distill):
    register(_cls.key, _cls)


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> CompressionResult:
        return compress(*args, **kwargs)

    __call__.__doc__ = compress.__doc__


sys.modules[__name__].__class__ = _CallableModule
