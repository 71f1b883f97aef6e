"""The outcome of :func:`dsnotebook.compress`: the measured table, the compressed models, the
per-layer sensitivity, and the warnings; ``best()`` picks a trade-off, ``choose()`` hands a model
back (the widget's button calls it), ``str(result)`` is the text version of the widget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
from torch import nn

from dsnotebook.compress.config import widget_factory

__all__ = ["CompressionResult", "format_bytes"]


def format_bytes(n: float) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _ms(v: float) -> str:
    return "-" if v is None or v != v else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}")


@dataclass
class CompressionResult:
    table: pd.DataFrame  # one row per model ("original" first), columns described in the README
    models: dict[str, nn.Module]  # compressed models by method name (rows with status "ok")
    sensitivity: pd.DataFrame  # method, layer, type, metric, metric_delta, max_abs_dev, rel_dev, agreement
    notes: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tracers: dict[str, Any] = field(default_factory=dict)  # the distillation runs' tracers, by method name
    metric: str = "metric"
    higher_is_better: bool = True
    batch: int = 1  # the example inputs' batch size (the "bN" columns)
    device: str = "cpu"
    chosen: str | None = None
    on_choose: list[Callable[[str, nn.Module], Any]] = field(default_factory=list, repr=False)

    # -- choosing -------------------------------------------------------------------------
    def choose(self, name: str) -> nn.Module:
        """The compressed model ``name`` (also kept as :attr:`chosen` / :attr:`chosen_model`)."""
        if name not in self.models:
            raise KeyError(f"no compressed model {name!r}; available: {', '.join(self.models) or 'none'}")
        self.chosen = name
        model = self.models[name]
        for fn in list(self.on_choose):
            fn(name, model)
        return model

    @property
    def chosen_model(self) -> nn.Module | None:
        return self.models.get(self.chosen) if self.chosen else None

    def best(self, max_drop: float = 0.01, by: str = "size", max_rel_dev: float = 0.05) -> str | None:
        """The smallest (``by="size"``) or fastest (``"latency_b1"``, ``"latency_bN"``) model whose metric
        fell by at most ``max_drop`` (without ``eval_fn``: whose relative output deviation is at most
        ``max_rel_dev``) and that is not slower at batch 1 or N; ``None`` when none qualifies."""
        if by not in ("size", "latency_b1", "latency_bN"):
            raise ValueError(f"by must be 'size', 'latency_b1' or 'latency_bN', got {by!r}")
        t = self.table.drop(index="original", errors="ignore")
        t = t[t["status"] == "ok"]
        if f"{self.metric}_delta" in t and t[f"{self.metric}_delta"].notna().any():
            d = t[f"{self.metric}_delta"] * (1 if self.higher_is_better else -1)
            t = t[d >= -max_drop]
        else:
            t = t[t["rel_dev"] <= max_rel_dev]
        t = t[(t["verdict_b1"] != "slower") & (t["verdict_bN"] != "slower")]
        if t.empty:
            return None
        if by == "size":
            return str(t["size_bytes"].idxmin())
        return str(t[f"speedup_{by.split('_')[1]}"].idxmax())

    # -- showing --------------------------------------------------------------------------
    def widget(self, on_choose: Callable[[str, nn.Module], Any] | None = None) -> Any:
        """The compression widget (table with bars, sensitivity chart, a button per model that
        calls :meth:`choose`); ``on_choose(name, model)`` runs when a model is chosen."""
        factory = widget_factory()
        if factory is None:
            raise RuntimeError("no widget here: import dsnotebook (its front door configures the widget)")
        return factory(self, on_choose=on_choose)

    def summary(self) -> str:
        """The table as text (what the widget shows outside a browser)."""
        t = self.table
        n = self.batch
        m = self.metric
        lines = [f"compression on {self.device}: size = torch.save(state_dict); latency = median ms per call "
                 f"(speed-up vs original, interleaved rounds); {m} "
                 f"({'higher' if self.higher_is_better else 'lower'} is better)"]
        head = ["method", "size", "x size", "weights", "b1 ms", "x b1", f"b{n} ms", f"x b{n}", m, "max dev", "status"]
        rows = [head]
        for name, r in t.iterrows():
            rows.append([str(name), format_bytes(r["size_bytes"]), f"{r['size_ratio']:.2f}" if r["size_ratio"] == r["size_ratio"] else "-",
                         f"{int(r['params'])}" if r["params"] == r["params"] else "-",
                         _ms(r["latency_b1_ms"]), _speed(r, "b1"), _ms(r["latency_bN_ms"]), _speed(r, "bN"),
                         f"{r[m]:.4g}" if m in r and r[m] == r[m] else "-",
                         f"{r['max_abs_dev']:.3g}" if r["max_abs_dev"] == r["max_abs_dev"] else "-",
                         _short(str(r["status"]))])
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        sparse = t["sparse_bytes"].dropna()
        for name, v in sparse.items():
            lines.append(f"{name}: dense storage keeps the zeros; as {t.at[name, 'sparse_format']} it would take "
                         f"{format_bytes(v)} (measured)")
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  ! {w}" for w in self.warnings]
        if self.chosen:
            lines.append(f"chosen: {self.chosen}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())


def _short(text: str, n: int = 90) -> str:
    """A status cut for the text table (the whole text is in the table and the notes)."""
    return text if len(text) <= n else text[:n - 1] + "…"


def _speed(r: Any, b: str) -> str:
    v = r[f"speedup_{b}"]
    if v != v:
        return "-"
    mark = {"faster": "+", "slower": "!", "same": "~"}.get(r[f"verdict_{b}"], "")
    return f"x{v:.2f}{mark}" if v >= 0.1 else f"x{v:.2g}{mark}"
