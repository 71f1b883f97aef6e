"""Data-loader bound: the step waits for the next batch."""
from __future__ import annotations

from typing import Any

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.settings import dataloader_workers, discrete_gpu
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant, faster_loading

DATA_SHARE = 0.15  # of the step spent waiting between optimizer step and forward


def data_loader_bound(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    ph = measures.phases(run)
    step, data = ph.get("step", 0.0), ph.get("data", 0.0)
    if step <= 0 or data / step < DATA_SHARE:
        return None
    share = data / step
    workers, why = dataloader_workers(hw)
    if workers < 2:  # the loop waits, so loading is not competing for compute: overlap it anyway
        workers, why = 2, f"the loop idles while loading, so 2 worker processes overlap it with compute"
    pin = discrete_gpu(hw)  # unified memory (Apple, integrated GPUs): nothing to pin
    loader = ctx.data
    current = {"num_workers": getattr(loader, "num_workers", None), "pin_memory": getattr(loader, "pin_memory", None)}
    variant = Variant(f"DataLoader num_workers={workers}, pin_memory={pin}, prefetch_factor=4",
                      make_data=faster_loading(workers, pin))
    return Suggestion(
        rule="data_loader", category="speed", severity="warning",
        title=f"The step waits for data {100 * share:.0f}% of the time: load in parallel",
        evidence={"data_ms": 1e3 * data, "step_ms": 1e3 * step, "data_share": share,
                  **{k: v for k, v in current.items() if v is not None}},
        gain=f"up to x{1 / (1 - share):.2f} if loading fully overlaps compute",
        snippet=(f"loader = torch.utils.data.DataLoader(dataset, batch_size=..., shuffle=True,\n"
                 f"    num_workers={workers}, pin_memory={pin}, persistent_workers=True, prefetch_factor=4)"
                 + (f"\n# and move batches with x.to('{hw.device}', non_blocking=True)" if pin else "")),
        verify_hint="suggestion.verify(step_fn, data=loader): step_fn(batch) under the current loader vs the "
                    f"same loader with {workers} workers ({why})",
        variant=variant if loader is not None else None)
