"""Training health from the statistics the tracer records anyway: gradients, update ratios, dead units."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from dsnotebook.perf.hardware import HardwareProfile
from dsnotebook.perf import measures
from dsnotebook.advisor.context import AdviceContext
from dsnotebook.advisor.suggestion import Suggestion
from dsnotebook.advisor.variants import Variant, clip_gradients, scale_lr

GROWTH = 100.0  # last global grad norm over the median of the run
VANISH_NORM = 1e-6
VANISH_RATIO = 1e-4  # first layers' gradient norm over the last layers'
RATIO_LOW, RATIO_HIGH = 1e-5, 1e-1  # update/weight ratio; healthy is about 1e-3
DEAD_SHARE = 0.5


def exploding_vanishing(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    steps, norms = measures.global_grad_norms(run)
    if len(norms) == 0:
        return None
    finite = norms[np.isfinite(norms)]
    med = float(np.median(finite)) if len(finite) else float("nan")
    nonfinite = int((~np.isfinite(norms)).sum())
    last = float(norms[-1])
    if nonfinite or (len(finite) >= 3 and math.isfinite(last) and med > 0 and last > GROWTH * med):
        clip = float(np.median(finite[: max(1, len(finite) // 2)])) if len(finite) else 1.0
        clip = clip if clip > 0 and math.isfinite(clip) else 1.0
        variant = (Variant(f"clip_grad_norm_(max_norm={clip:.3g})", enter=lambda c: clip_gradients(c.optimizer, clip))
                   if ctx.optimizer is not None else None)
        return Suggestion(
            rule="exploding_gradients", category="training", severity="warning",
            title="Gradients explode" + (f" (non-finite at {nonfinite} step(s))" if nonfinite else ""),
            evidence={"median_grad_norm": med, "last_grad_norm": last, "non_finite_steps": nonfinite,
                      "first_step": steps[0], "last_step": steps[-1]},
            gain="stable training: no loss spikes or NaN",
            snippet=f"loss.backward()\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={clip:.3g})\n"
                    "optimizer.step()\n# and/or lower the learning rate, add warm-up",
            verify_hint="A/B from the same weights: the loss with clipping stays finite and no higher",
            target="stability", variant=variant)
    df = run.to_dataframe("grads")
    trainable = {t["tensor_id"] for t in run.tensors if t.get("trainable", True)}
    per = df[df["tensor_id"].isin(trainable)].groupby("tensor_id")["norm"].median().sort_index()
    if len(per) >= 4:
        q = max(1, len(per) // 4)
        first, lastq = float(per.iloc[:q].median()), float(per.iloc[-q:].median())
        ratio = first / lastq if lastq > 0 else float("inf")
        if (math.isfinite(med) and med < VANISH_NORM) or ratio < VANISH_RATIO:
            return Suggestion(
                rule="vanishing_gradients", category="training", severity="warning",
                title="Gradients vanish toward the first layers",
                evidence={"median_grad_norm": med, "first_layers_norm": first, "last_layers_norm": lastq,
                          "first_over_last": ratio},
                gain="the early layers learn again",
                snippet="# normalisation between layers, residual connections, or a better init:\n"
                        "for m in model.modules():\n    if isinstance(m, torch.nn.Linear):\n"
                        "        torch.nn.init.kaiming_normal_(m.weight, nonlinearity='relu')",
                verify_hint="retrain a few hundred steps and compare the first layers' gradient norms in the heatmap",
                target="stability")
    return None


def update_ratio(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    df = run.to_dataframe("updates")
    if df.empty:
        return None
    trainable = {t["tensor_id"] for t in run.tensors if t.get("trainable", True)}
    df = df[df["tensor_id"].isin(trainable) & np.isfinite(df["update_ratio"]) & (df["update_ratio"] > 0)]
    if df.empty:
        return None
    med = float(df.groupby("tensor_id")["update_ratio"].median().median())
    if RATIO_LOW <= med <= RATIO_HIGH:
        return None
    factor = 10.0 if med < RATIO_LOW else 0.1
    low = med < RATIO_LOW
    variant = (Variant(f"learning rate x{factor:g}", enter=lambda c: scale_lr(c.optimizer, factor))
               if ctx.optimizer is not None else None)
    return Suggestion(
        rule="update_ratio", category="training", severity="warning",
        title=f"Updates are {'tiny' if low else 'huge'} relative to the weights (median {med:.1e}, healthy ~1e-3): "
              f"{'raise' if low else 'lower'} the learning rate",
        evidence={"median_update_ratio": med, "healthy": 1e-3, "tensors": int(df["tensor_id"].nunique())},
        gain="faster convergence" if low else "stable training (weights are rewritten every step)",
        snippet=f"for g in optimizer.param_groups:\n    g['lr'] *= {factor:g}",
        verify_hint=f"A/B from the same weights with the learning rate x{factor:g}: the loss should be lower",
        target="stability", variant=variant)


def dead_units(run: Any, hw: HardwareProfile, ctx: AdviceContext) -> Suggestion | None:
    df = run.to_dataframe("activations")
    if df.empty:
        return None
    last = df[df["step"] == df["step"].max()]
    last = last[last["units"] > 0]
    share = last["dead_units"] / last["units"]
    bad = last[share >= DEAD_SHARE]
    if bad.empty:
        return None
    worst = {r.module: f"{int(r.dead_units)}/{int(r.units)}" for r in bad.itertuples()}
    return Suggestion(
        rule="dead_units", category="training", severity="warning",
        title=f"{len(bad)} layer(s) have most of their units dead (always zero)",
        evidence={"dead_units": worst, "step": int(last["step"].iloc[0])},
        gain="capacity back: dead ReLUs get no gradient and never recover",
        snippet="# a leaky activation, a smaller learning rate, or a sane init / bias:\n"
                "model.act = torch.nn.LeakyReLU(0.01)  # or nn.GELU()",
        verify_hint="after the change, the activations panel's dead-unit count should drop",
        target="stability")
