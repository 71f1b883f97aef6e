// dsnotebook compression panel: the before/after table and the per-layer sensitivity chart.
// Browser -> kernel: the "use this model" button sets the `chosen` trait (Python hands the model
// back: result.chosen_model). Text through textContent only.
import type { Render } from "@anywidget/types";
import { css, el, text } from "../shared/ui";
import { buildSensitivity } from "./chart";
import { STYLE } from "./style";
import { buildTable } from "./table";
import type { Model } from "./types";

export const render: Render<Model> = ({ model, el: host }) => {
  const root = el("div", "dsn-compress");
  host.appendChild(root);
  let draws = 0;
  const get = <K extends keyof Model>(k: K): Model[K] => model.get(k);
  const choose = (method: string) => {
    model.set("chosen", method);
    model.save_changes();
  };
  const draw = () => {
    const rows = get("rows") || [];
    const parts: HTMLElement[] = [css(STYLE), text("div", "dsn-cmp-title", get("title") || "compression")];
    if (get("status")) parts.push(text("div", "dsn-cmp-statusline", get("status")));
    if (!rows.length) parts.push(text("div", "dsn-cmp-empty", "no compression results"));
    else {
      parts.push(buildTable(get, choose));
      parts.push(text("div", "dsn-cmp-hint", "latency: median per call over interleaved rounds; ×speed-up against the " +
        "original with its interquartile range; faster/slower only when the whole range clears ±5%"));
      const s = buildSensitivity(get);
      if (s) parts.push(s);
    }
    root.replaceChildren(...parts);
    root.dataset.draws = String(++draws);
    root.dataset.rows = String(rows.length);
    root.dataset.chosen = get("chosen") || "";
  };
  const names = ["rows", "sensitivity", "chosen", "status", "title", "has_metric", "metric_name", "batch"];
  for (const n of names) model.on(`change:${n}`, draw);
  draw();
  return () => {
    for (const n of names) model.off(`change:${n}`, draw);
    root.remove();
  };
};
