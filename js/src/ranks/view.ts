// The rank x phase panel's DOM: one row per rank, one column per phase, cells shaded by how far
// a rank stands above the fastest one, the straggler score per rank, the skew per phase below.
// Text only through textContent.
import type { Render } from "@anywidget/types";
import { css, el, formatSeconds, text } from "../shared/ui";
import { column, shade, stragglerLine, type Model } from "./model";

const STYLE = `
.dsn-ranks { box-sizing: border-box; padding: 6px 4px; font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); }
.dsn-ranks-title { font-weight: 600; margin-right: 10px; }
.dsn-ranks-status { color: var(--jp-ui-font-color2, #666); font-size: var(--jp-ui-font-size0, 11px); }
.dsn-ranks-line { margin: 4px 0 8px 0; }
.dsn-ranks-line.dsn-ranks-hit { color: #b3261e; font-weight: 600; }
.dsn-ranks-grid { display: grid; gap: 1px; align-items: stretch; font-size: var(--jp-ui-font-size0, 12px);
  font-variant-numeric: tabular-nums; max-width: 980px; }
.dsn-ranks-grid > div { padding: 3px 6px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.dsn-ranks-grid > .dsn-ranks-head { font-weight: 600; border-bottom: 2px solid var(--jp-border-color2, #ddd);
  white-space: normal; align-self: end; }
.dsn-ranks-rank { font-weight: 600; cursor: pointer; }
.dsn-ranks-cell { text-align: right; cursor: pointer; }
.dsn-ranks-row-straggler { color: #b3261e; }
.dsn-ranks-sel { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: -2px; }
.dsn-ranks-skew { color: var(--jp-ui-font-color2, #555); border-top: 1px solid var(--jp-border-color2, #ddd); text-align: right; }
.dsn-ranks-score { display: flex; align-items: center; gap: 6px; }
.dsn-ranks-bar { height: 10px; background: #b3261e; border-radius: 2px; min-width: 1px; }
.dsn-ranks-empty { color: var(--jp-ui-font-color2, #777); font-style: italic; }
`;

const TRAITS = ["ranks", "columns", "matrix", "skew", "scores", "excess", "straggler", "steps", "selected_rank",
  "status", "title"];

/** rgba of a column colour at a shading strength (0: none). */
function tint(hex: string, a: number): string {
  const h = hex.replace("#", "");
  const n = parseInt(h.length === 3 ? h.split("").map((c) => c + c).join("") : h, 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${(0.08 + 0.55 * a).toFixed(3)})`;
}

export const render: Render<Model> = ({ model, el: host }) => {
  const root = el("div", "dsn-ranks");
  host.appendChild(root);
  let draws = 0;

  const select = (r: number) => {
    model.set("selected_rank", model.get("selected_rank") === r ? -1 : r);
    model.save_changes();
  };

  const draw = () => {
    const ranks = model.get("ranks") || [];
    const cols = model.get("columns") || [];
    const matrix = model.get("matrix") || [];
    const skew = model.get("skew") || [];
    const scores = model.get("scores") || [];
    const straggler = model.get("straggler") ?? -1;
    const sel = model.get("selected_rank") ?? -1;
    const head = el("div", "");
    head.append(text("span", "dsn-ranks-title", model.get("title") || "ranks"),
      text("span", "dsn-ranks-status", model.get("status") || ""));
    const line = text("div", `dsn-ranks-line${straggler >= 0 ? " dsn-ranks-hit" : ""}`, stragglerLine({
      straggler, scores, excess: model.get("excess") || [], ranks, steps: model.get("steps") || 0, columns: cols }));
    const parts: Element[] = [css(STYLE), head, line];
    if (ranks.length) {
      const grid = el("div", "dsn-ranks-grid");
      grid.style.gridTemplateColumns = `minmax(60px, auto) repeat(${cols.length}, minmax(min-content, 1fr)) minmax(120px, 1.4fr)`;
      grid.appendChild(text("div", "dsn-ranks-head", "rank"));
      for (const [, label] of cols) grid.appendChild(text("div", "dsn-ranks-head dsn-ranks-cell", label));
      grid.appendChild(text("div", "dsn-ranks-head", "straggler score"));
      const maxScore = Math.max(...scores.map((s) => s ?? 0), 1e-9);
      ranks.forEach((r, i) => {
        const rowCls = `${r === straggler ? " dsn-ranks-row-straggler" : ""}${r === sel ? " dsn-ranks-sel" : ""}`;
        const name = text("div", `dsn-ranks-rank${rowCls}`, r === straggler ? `rank ${r} ◀` : `rank ${r}`);
        name.dataset.rank = String(r);
        name.addEventListener("click", () => select(r));
        grid.appendChild(name);
        cols.forEach(([key, label, color], j) => {
          const v = matrix[i]?.[j] ?? null;
          const a = shade(column(matrix, j), i);
          const cell = text("div", `dsn-ranks-cell${rowCls}`, v === null ? "–" : formatSeconds(v));
          cell.style.background = tint(color, a);
          cell.dataset.rank = String(r);
          cell.dataset.phase = key;
          cell.title = `rank ${r}, ${label}: ${v === null ? "not measured" : formatSeconds(v)}`;
          cell.addEventListener("click", () => select(r));
          grid.appendChild(cell);
        });
        const sc = scores[i] ?? 0;
        const box = el("div", `dsn-ranks-score${rowCls}`);
        const bar = el("div", "dsn-ranks-bar");
        bar.style.width = `${Math.max(1, (80 * sc) / maxScore)}px`;
        box.append(bar, document.createTextNode(`${(100 * sc).toFixed(1)}%`));
        grid.appendChild(box);
      });
      grid.appendChild(text("div", "dsn-ranks-skew", "skew"));
      cols.forEach(([key, label], j) => {
        const v = skew[j] ?? null;
        const cell = text("div", "dsn-ranks-skew", v === null ? "–" : formatSeconds(v));
        cell.title = `${label}: slowest minus fastest rank (median over steps)`;
        cell.dataset.phase = key;
        grid.appendChild(cell);
      });
      grid.appendChild(text("div", "dsn-ranks-skew", ""));
      parts.push(grid);
    } else parts.push(text("div", "dsn-ranks-empty", "waiting for the ranks' first sampled steps"));
    root.replaceChildren(...parts);
    root.dataset.draws = String(++draws);
    root.dataset.ranks = String(ranks.length);
    root.dataset.straggler = String(straggler);
  };

  for (const n of TRAITS) model.on(`change:${n}`, draw);
  draw();
  return () => {
    for (const n of TRAITS) model.off(`change:${n}`, draw);
    root.remove();
  };
};
