// The heatmap's tooltip: what the cell under the pointer holds (module, tensor, step or step
// range of an aggregated bin, value, non-finite count), as text lines placed near the pointer.
import { formatFloat32 } from "../shared/colors";
import type { StatInfo } from "../shared/series";
import type { SeriesStore } from "../shared/store";
import type { Cell } from "./geometry";
import type { RowInfo } from "./types";

/** [class name, text] of each tooltip line. */
export type Line = [string, string];

/** The lines for `cell` of statistic si (the max over the bin's columns), with the sum of
 * the mark statistic mi (-1: none) when it is > 0. */
export function tooltipLines(store: SeriesStore, cell: Cell, row: RowInfo | undefined, st: StatInfo | undefined, si: number, mi: number): Line[] {
  const R = store.nRows;
  let v = NaN;
  let bad = 0;
  for (let c = cell.c0; c < cell.c1; c++) {
    const u = store.data[si] ? store.data[si][c * R + cell.row] : NaN;
    if (u === u && (v !== v || u > v)) v = u;
    if (mi >= 0) {
      const m = store.data[mi][c * R + cell.row];
      if (m > 0) bad += m;
    }
  }
  const shape = row && row.shape ? `  [${row.shape.join("×")}]` : "";
  const n = cell.c1 - cell.c0;
  const lines: Line[] = [
    ["dsn-tt-module", `module: ${row ? row.module || "(root)" : "?"}`],
    ["dsn-tt-tensor", `tensor: ${row ? row.tensor : "?"}${shape}`],
    ["dsn-tt-step", n > 1 ? `steps: ${store.steps[cell.c0]}–${store.steps[cell.c1 - 1]} (max of ${n})` : `step: ${store.steps[cell.c0]}`],
    ["dsn-tt-value", `${st ? st.label : "value"}: ${formatFloat32(v)}`],
  ];
  if (bad > 0) lines.push(["dsn-tt-mark", `non-finite values: ${formatFloat32(bad)}`]);
  return lines;
}

/** Fills `tooltip` with `lines` (as text) and places it near (x, y) of `canvas`, inside `root`. */
export function showTooltip(tooltip: HTMLElement, root: HTMLElement, canvas: HTMLElement, x: number, y: number, lines: Line[]): void {
  tooltip.replaceChildren(
    ...lines.map(([cls, text]) => {
      const d = document.createElement("div");
      d.className = cls;
      d.textContent = text;
      return d;
    }),
  );
  tooltip.style.display = "block";
  const rootRect = root.getBoundingClientRect();
  const canRect = canvas.getBoundingClientRect();
  let left = canRect.left - rootRect.left + x + 14;
  let top = canRect.top - rootRect.top + y + 14;
  const tw = tooltip.offsetWidth;
  const th = tooltip.offsetHeight;
  if (left + tw > root.clientWidth) left = Math.max(0, left - tw - 28);
  if (top + th > root.clientHeight) top = Math.max(0, top - th - 24);
  tooltip.style.left = `${left}px`;
  tooltip.style.top = `${top}px`;
}
