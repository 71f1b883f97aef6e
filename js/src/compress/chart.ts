// Per-layer sensitivity: for each method, one bar per layer: how much the metric dropped (or,
// without a metric, the output deviation) when only that layer was compressed.
import { el, text } from "../shared/ui";
import { barFraction, deltaText, groupSensitivity, harm, numText } from "./scale";
import type { Model } from "./types";

type Get = <K extends keyof Model>(k: K) => Model[K];

export function buildSensitivity(get: Get): HTMLElement | null {
  const rows = get("sensitivity") || [];
  if (!rows.length) return null;
  const hasMetric = get("has_metric");
  const hib = get("higher_is_better");
  const box = el("div", "dsn-cmp-sens");
  box.appendChild(text("h4", "", hasMetric
    ? `per-layer sensitivity: ${get("metric_name")} change when only that layer is compressed`
    : "per-layer sensitivity: max |Δ output| when only that layer is compressed"));
  const max = Math.max(0, ...rows.map((r) => harm(r, hasMetric, hib)));
  for (const [method, group] of groupSensitivity(rows, hasMetric, hib)) {
    const sec = el("div", "dsn-cmp-sens-group");
    sec.dataset.method = method;
    sec.appendChild(text("div", "dsn-cmp-sens-title", method));
    const grid = el("div", "dsn-cmp-sens-grid");
    for (const r of group) {
      const h = harm(r, hasMetric, hib);
      const name = text("div", "dsn-cmp-sens-layer", `${r.layer} (${r.type})`);
      name.title = `${r.layer} (${r.type})`;
      const track = el("div", "dsn-cmp-track");
      const fill = el("div", "dsn-cmp-bar dsn-cmp-sensbar");
      const frac = barFraction(h, max);
      fill.style.width = `${(100 * frac).toFixed(1)}%`;
      fill.dataset.frac = frac.toFixed(4);
      fill.dataset.layer = r.layer;
      track.appendChild(fill);
      const val = hasMetric ? `${deltaText(r.metric_delta) || "±0"}  (Δout ${numText(r.max_abs_dev)})` : numText(r.max_abs_dev);
      grid.append(name, track, text("div", "dsn-cmp-sens-val", val));
    }
    sec.appendChild(grid);
    box.appendChild(sec);
  }
  return box;
}
