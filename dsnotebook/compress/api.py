"""``compress(model, methods, example_inputs, eval_fn=None, data=None)``: every method applied to its
own copy of the model, every model measured the same way, one table.

The user's model is never touched: a deep copy (in eval mode) is the reference the methods start
from and the "original" row measures; the global RNG state is restored afterwards.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import warnings
from typing import Any, Callable, Iterable

import pandas as pd
import torch
from torch import nn

from dsnotebook.compress.config import tracer_factory
from dsnotebook.compress.latency import Timing, interleaved_latency
from dsnotebook.compress.measure import batch_of, batch_size, call_metric, deviation, serialized_bytes, weight_counts
from dsnotebook.compress.methods import (COMPRESSIBLE, CompressionWarning, Context, Method, NotApplicable,
                                         compressible_layers, resolve)
from dsnotebook.compress.result import CompressionResult
from dsnotebook.compress.sensitivity import layer_sensitivity

__all__ = ["compress"]

NAN = math.nan


def compress(model: nn.Module, methods: str | Method | Iterable[str | Method], example_inputs: Any,
             eval_fn: Callable[[nn.Module], float] | None = None, data: Any = None, *, metric: str = "metric",
             higher_is_better: bool = True, tolerance: float = 0.01, rounds: int = 5, block_s: float = 0.02,
             threads: int | None = None, sensitivity: bool = True, max_layers: int = 64, errors: str = "warn",
             seed: int = 0) -> CompressionResult:
    """Compress ``model`` with each of ``methods`` and measure every result against the original.

    ``methods``: names (``"dynamic_int8"``, ``"int8_weight_only"``, ``"magnitude_prune"``,
    ``"channel_prune"``, ``"distill"``, chains such as ``"channel_prune+dynamic_int8"``) or
    :class:`Method` objects with their own settings.  ``example_inputs``: a tensor or a tuple of
    positional arguments, a batch of N (latency is measured at batch 1 and batch N, output deviation
    on all of it).  ``eval_fn(model) -> float``: your metric (``metric`` names it); a drop of more
    than ``tolerance`` warns.  ``data``: batches for distillation.  ``rounds`` x ``block_s``: the
    latency budget per model and batch size; ``threads``: torch's CPU threads while timing (default:
    as set; 1 gives steadier numbers on a busy shared machine).  ``sensitivity``: per-layer rows for
    the first ``max_layers`` layers of each method that compresses single layers.  ``errors="raise"``
    stops at the first failing method (default: its row says why and a warning is shown).
    """
    _check_model(model)
    todo = resolve(methods)
    args = _args(example_inputs)
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be a function eval_fn(model) -> number, got {type(eval_fn).__name__}")
    if errors not in ("warn", "raise"):
        raise ValueError(f"errors must be 'warn' or 'raise', got {errors!r}")
    taken = {c.replace("METRIC", "") for c in COLUMNS} | {"notes", "value", "nonzero"}
    if not metric or metric in taken or f"{metric}_delta" in COLUMNS:
        raise ValueError(f"metric={metric!r} names a column of the table already; call it something else")
    needs = [m.name for m in todo if m.needs_data]
    if needs and data is None:
        raise ValueError(f"{', '.join(needs)} train(s) a model: pass data= (batches of inputs or (inputs, labels))")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    gpus = [device.index or 0] if device.type == "cuda" else []
    found: list[str] = []
    with torch.random.fork_rng(devices=gpus), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantize_per_tensor).*deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        torch.manual_seed(seed)
        timing = dict(rounds=rounds, block_s=block_s, threads=threads, device=device)
        result = _run(model, todo, args, eval_fn, data, device, metric, higher_is_better, tolerance, timing,
                      sensitivity, max_layers, errors, found)
    for w in found:
        warnings.warn(w, CompressionWarning, stacklevel=_caller_level())
    return result


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside this package (``dsnotebook.compress(...)`` goes
    through the package's ``__call__``), so a warning names the user's line."""
    here = os.path.dirname(os.path.abspath(__file__))
    f, level = sys._getframe(1), 1
    while f is not None and os.path.dirname(os.path.abspath(f.f_code.co_filename)) == here:
        f, level = f.f_back, level + 1
    return level


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"compress needs a torch.nn.Module, got {type(model).__name__}")
    if not compressible_layers(model):
        kinds = sorted({type(m).__name__ for m in model.modules()} - {type(model).__name__}) or ["none"]
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layer ({', '.join(t.__name__ for t in COMPRESSIBLE)}); "
                         f"quantization and pruning act on those, so there is nothing to compress "
                         f"(its submodules: {', '.join(kinds[:8])})")


def _args(example_inputs: Any) -> tuple[Any, ...]:
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not any(isinstance(a, torch.Tensor) for a in args):
        raise TypeError("example_inputs must be a tensor or a tuple of the model's positional arguments "
                        f"(with at least one tensor), got {type(example_inputs).__name__}")
    batch_size(args)
    return args


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as exc:
        raise TypeError(f"compress works on copies and could not copy {type(model).__name__} "
                        f"({type(exc).__name__}: {exc}); make the model deep-copyable") from exc


def _run(model: nn.Module, todo: list[Method], args: tuple[Any, ...], eval_fn: Any, data: Any, device: torch.device,
         metric: str, higher_is_better: bool, tolerance: float, timing: dict[str, Any], sensitivity: bool,
         max_layers: int, errors: str, found: list[str]) -> CompressionResult:
    reference = _copy(model).eval()
    try:
        with torch.no_grad():
            ref_out = reference(*args)
    except Exception as exc:
        raise ValueError(f"model(*example_inputs) raised {type(exc).__name__}: {exc}") from exc
    base_metric = call_metric(eval_fn, reference, "original") if eval_fn is not None else NAN
    ctx = Context(args, data, device, tracer_factory())
    rows: dict[str, dict[str, Any]] = {"original": _measure(reference, "-", "ok", deviation(ref_out, ref_out), base_metric, {})}
    models: dict[str, nn.Module] = {}
    notes: dict[str, list[str]] = {}
    tracers: dict[str, Any] = {}
    for m in todo:
        try:
            out = m.apply(_copy(reference), ctx)
            cm = out.model.eval()
            with torch.no_grad():
                dev = deviation(ref_out, cm(*args))
            value = call_metric(eval_fn, cm, m.name) if eval_fn is not None else NAN
        except NotApplicable as exc:
            rows[m.name] = _empty(f"skipped: {exc}")
            notes[m.name] = [f"not applicable: {exc}"]
            continue
        except Exception as exc:
            if errors == "raise":
                raise
            rows[m.name] = _empty(f"error: {type(exc).__name__}: {exc}")  # warned about with the table's rows
            notes[m.name] = [f"failed: {type(exc).__name__}: {exc}"]
            continue
        models[m.name] = cm
        notes[m.name] = out.notes
        if out.info.get("tracer") is not None:
            tracers[m.name] = out.info["tracer"]
        rows[m.name] = _measure(cm, out.backend, "ok", dev, value, out.info)
    n = batch_size(args)
    timed = {"original": reference, **models}
    t1 = interleaved_latency(timed, batch_of(args, 1), **timing)
    tn = interleaved_latency(timed, args, **timing) if n > 1 else t1
    sens_rows: list[dict[str, Any]] = []
    if sensitivity:
        per_layer = [m for m in todo if m.name in models and m.per_layer]
        sens_rows, problems = layer_sensitivity(reference, per_layer, ctx, ref_out, eval_fn, base_metric, max_layers)
        notes.setdefault("sensitivity", []).extend(problems)
    table = _table(rows, t1, tn, metric)
    for name in table.index[1:]:
        worse = _worse(table.loc[name], metric, higher_is_better, tolerance, n, eval_fn is not None)
        table.at[name, "worse"] = ",".join(k for k, _ in worse)
        table.at[name, "warnings"] = "; ".join(w for _, w in worse)
        found += [f"{name}: {w}" for _, w in worse]
    table["notes"] = ["; ".join(notes.get(k, [])) for k in table.index]
    sens = pd.DataFrame(sens_rows, columns=["method", "layer", "type", "metric", "metric_delta", "max_abs_dev",
                                            "rel_dev", "agreement"])
    return CompressionResult(table=table, models=models, sensitivity=sens, notes=notes, warnings=list(found),
                             tracers=tracers, metric=metric, higher_is_better=higher_is_better, batch=n,
                             device=str(device))


def _measure(model: nn.Module, backend: str, status: str, dev: dict[str, float], value: float,
             info: dict[str, Any]) -> dict[str, Any]:
    params, nonzero = weight_counts(model)
    return {"status": status, "backend": backend, "params": params, "nonzero": nonzero,
            "size_bytes": serialized_bytes(model), "sparse_bytes": info.get("sparse_bytes", NAN),
            "sparse_format": info.get("sparse_format", ""), "value": value, **dev}


def _empty(status: str) -> dict[str, Any]:
    return {"status": status, "backend": "", "params": NAN, "nonzero": NAN, "size_bytes": NAN, "sparse_bytes": NAN,
            "sparse_format": "", "value": NAN, "max_abs_dev": NAN, "rel_dev": NAN, "agreement": NAN}


COLUMNS = ["status", "backend", "params", "params_ratio", "sparsity", "size_bytes", "size_ratio", "sparse_bytes",
           "sparse_format", "latency_b1_ms", "latency_b1_iqr_ms", "speedup_b1", "speedup_b1_lo", "speedup_b1_hi",
           "verdict_b1", "latency_bN_ms", "latency_bN_iqr_ms", "speedup_bN", "speedup_bN_lo", "speedup_bN_hi",
           "verdict_bN", "METRIC", "METRIC_delta", "max_abs_dev", "rel_dev", "agreement", "worse", "warnings"]


def _table(rows: dict[str, dict[str, Any]], t1: dict[str, Timing], tn: dict[str, Timing], metric: str) -> pd.DataFrame:
    base = rows["original"]
    out = []
    for name, r in rows.items():
        d = dict(r)
        d["params_ratio"] = r["params"] / base["params"] if base["params"] else NAN
        d["sparsity"] = 1 - r["nonzero"] / r["params"] if r["params"] else NAN
        d["size_ratio"] = r["size_bytes"] / base["size_bytes"]
        for b, timings in (("b1", t1), ("bN", tn)):
            t = timings.get(name)
            d[f"latency_{b}_ms"] = 1e3 * t.median_s if t else NAN
            d[f"latency_{b}_iqr_ms"] = 1e3 * t.iqr_s if t else NAN
            d[f"speedup_{b}"] = t.speedup if t else NAN
            d[f"speedup_{b}_lo"] = t.speedup_lo if t else NAN
            d[f"speedup_{b}_hi"] = t.speedup_hi if t else NAN
            d[f"verdict_{b}"] = t.verdict if t else ""
        d["METRIC"] = r["value"]
        d["METRIC_delta"] = r["value"] - base["value"]
        d["worse"] = d["warnings"] = ""
        out.append(d)
    cols = [c.replace("METRIC", metric) for c in COLUMNS]
    table = pd.DataFrame([{c.replace("METRIC", metric): d[c] for c in COLUMNS} for d in out], index=list(rows),
                         columns=cols)
    table.index.name = "method"
    return table


def _worse(r: Any, metric: str, higher_is_better: bool, tolerance: float, n: int,
           has_metric: bool) -> list[tuple[str, str]]:
    """What got worse than the original: (size | b1 | bN | metric | error, in words); empty when nothing did."""
    if r["status"] != "ok":
        return [] if str(r["status"]).startswith("skipped") else [("error", str(r["status"]))]
    out = []
    base_bytes = r["size_bytes"] / r["size_ratio"]
    if r["size_bytes"] - base_bytes > max(1024, 0.01 * base_bytes):  # the zip container's padding moves by bytes
        out.append(("size", f"bigger than the original ({r['size_ratio']:.2f}x the serialized bytes)"))
    for b, label in (("b1", "batch 1"), ("bN", f"batch {n}")):
        if r[f"verdict_{b}"] == "slower" and not (b == "bN" and n == 1):
            out.append((b, f"slower than the original at {label} (x{r[f'speedup_{b}']:.3g} speed, quartiles "
                           f"x{r[f'speedup_{b}_lo']:.3g}-x{r[f'speedup_{b}_hi']:.3g})"))
    delta = r[f"{metric}_delta"]
    if has_metric and delta == delta and (delta if higher_is_better else -delta) < -tolerance:
        out.append(("metric", f"{metric} {r[metric] - delta:.4g} -> {r[metric]:.4g} ({delta:+.4g})"))
    elif not has_metric and r["agreement"] == r["agreement"] and r["agreement"] < 1 - tolerance:
        out.append(("metric", f"top-1 agrees with the original on {100 * r['agreement']:.1f}% of the examples"))
    return out
