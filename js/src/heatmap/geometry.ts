// The heatmap's geometry: cell sizes and column aggregation for the width available, which
// cell is under a point, which columns a drag spans, and the per-bin aggregation of values.
// Pure functions (no DOM): the drawing (cells.ts, axes.ts) and the view use them.
import type { RGB } from "../shared/colors";
import type { RowInfo } from "./types";

export const LABEL_FONT = "11px var(--jp-ui-font-family, system-ui, sans-serif)";
const MAX_CELL_W = 24;
const MAX_CELL_H = 18;
const TARGET_PLOT_H = 420;
const MODULE_COL_MAX = 170;
const TENSOR_COL_MAX = 90;
export const AXIS_H = 18;
const PAD_TOP = 2;

export interface Geometry {
  cssW: number;
  cssH: number;
  x0: number;
  y0: number;
  cellW: number;
  cellH: number;
  agg: number; // data columns per drawn bin
  nBins: number;
  col0: number; // first column shown (zoom)
  nVis: number; // columns shown
  moduleColW: number;
  tensorColW: number;
}

/** Widest module and tensor label, cached per rows array. */
export interface LabelWidths {
  rows: RowInfo[] | null;
  modW: number;
  tenW: number;
}

/** A cell (bin, row) with a non-finite value. */
export type Mark = [number, number];

/** Steps shown when zoomed (inclusive). */
export interface Zoom {
  start: number;
  end: number;
}

/** The cell under a point: its drawn bin and row, and the data columns [c0, c1) of the bin. */
export interface Cell {
  bin: number;
  row: number;
  c0: number;
  c1: number;
}

/** `text`, cut with an ellipsis to fit `maxW` as measured by `width`. */
export function ellipsize(width: (s: string) => number, text: string, maxW: number): string {
  if (width(text) <= maxW) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (width(text.slice(0, mid) + "…") <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + "…";
}

/** First index i with a[i] >= v (a ascending). */
export function lowerBound(a: number[], v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function rgbOf(list: number[] | undefined, fallback: RGB): RGB {
  return list && list.length >= 3 ? [list[0], list[1], list[2]] : fallback;
}

/** Label widths of `rs` as measured by `width`, re-measured only when the rows array changed. */
export function measureLabels(width: (s: string) => number, rs: RowInfo[], cached: LabelWidths): LabelWidths {
  if (cached.rows === rs) return cached;
  let modW = 0;
  let tenW = 0;
  const seen = new Set<string>();
  for (const r of rs) {
    const key = `${r.module}\u0000${r.tensor}`;
    if (seen.has(key)) continue;
    seen.add(key);
    modW = Math.max(modW, width(r.module || "(root)"));
    tenW = Math.max(tenW, width(r.tensor || ""));
  }
  return { rows: rs, modW, tenW };
}

/** Geometry of R rows x the visible columns [col0, col0 + C) in `widthPx` CSS pixels. */
export function computeGeometry(R: number, col0: number, C: number, labels: LabelWidths, widthPx: number): Geometry {
  const { modW, tenW } = labels;
  const cellH = Math.max(1, Math.min(MAX_CELL_H, Math.floor(TARGET_PLOT_H / Math.max(1, R))));
  const showTensor = cellH >= 9;
  const moduleColW = Math.min(MODULE_COL_MAX, Math.ceil(modW) + 10);
  const tensorColW = showTensor ? Math.min(TENSOR_COL_MAX, Math.ceil(tenW) + 8) : 0;
  const x0 = moduleColW + tensorColW + 4;
  const avail = Math.max(240, Math.floor(widthPx) - 12);
  const plotMax = Math.max(60, avail - x0 - 34);
  let cellW: number;
  let agg = 1;
  let nBins = C;
  if (C === 0) cellW = MAX_CELL_W;
  else if (C <= plotMax) cellW = Math.max(1, Math.min(MAX_CELL_W, Math.floor(plotMax / C)));
  else {
    agg = Math.ceil(C / plotMax);
    nBins = Math.ceil(C / agg);
    cellW = 1;
  }
  const plotW = Math.max(nBins * cellW, 60);
  // the canvas spans the width available whatever is shown: zooming then never resizes it (a
  // resize reallocates the canvas and lays the page out again: ~5-20 ms at 2,000 rows)
  const cssW = Math.max(Math.ceil(x0 + plotW + 34), avail);
  const cssH = PAD_TOP + R * cellH + 2;
  return { cssW, cssH, x0, y0: PAD_TOP, cellW, cellH, agg, nBins, col0, nVis: C, moduleColW, tensorColW };
}

/** [first column, number of columns] shown for `zoom` over columns of `steps`; null when the
 * zoom holds fewer than two columns (show everything). */
export function visibleColumns(steps: number[], zoom: Zoom | null): [number, number] | null {
  const C = steps.length;
  if (!zoom || C === 0) return [0, C];
  const a = lowerBound(steps, zoom.start);
  const b = lowerBound(steps, zoom.end + 1e-9);
  return b - a < 2 ? null : [a, b - a];
}

/** The cell at (x, y) in canvas CSS pixels, or null outside the cells / past the data. */
export function cellAt(g: Geometry, x: number, y: number, nRows: number, nCols: number): Cell | null {
  if (g.nVis === 0) return null;
  const bin = Math.floor((x - g.x0) / g.cellW);
  const row = Math.floor((y - g.y0) / g.cellH);
  if (bin < 0 || bin >= g.nBins || row < 0 || row >= nRows) return null;
  const c0 = g.col0 + bin * g.agg;
  if (c0 >= nCols) return null;
  return { bin, row, c0, c1: Math.min(g.col0 + g.nVis, c0 + g.agg) };
}

/** The data columns [first, last] a horizontal drag from x `a` to x `b` spans; null for a
 * click (less than 3 px) or fewer than two columns. */
export function dragColumns(g: Geometry, a: number, b: number): [number, number] | null {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  const b0 = Math.floor((lo - g.x0) / g.cellW);
  const b1 = Math.floor((hi - g.x0) / g.cellW);
  const first = g.col0 + Math.max(0, b0) * g.agg;
  const last = Math.min(g.col0 + g.nVis - 1, g.col0 + b1 * g.agg + g.agg - 1);
  if (last - first < 1 || hi - lo < 3) return null;
  return [first, last];
}

/** Into out[r]: the max over columns [c0, c1) of each row of `vals` ([col][row], R rows);
 * NaN (no data) never wins (-Infinity does), a row without data stays NaN. */
export function binMax(vals: Float32Array, R: number, c0: number, c1: number, out: Float32Array): void {
  if (c1 - c0 === 1) {
    out.set(vals.subarray(c0 * R, c0 * R + R));
    return;
  }
  out.fill(NaN);
  for (let c = c0; c < c1; c++) {
    for (let i = c * R, r = 0; r < R; i++, r++) {
      const v = vals[i];
      const o = out[r];
      if (v > o || (o !== o && v === v)) out[r] = v; // comparisons with NaN are false
    }
  }
}

/** Into out[r]: 1 when some column of [c0, c1) flagged in `colMarked` has marks[c][r] > 0. */
export function binMarks(marks: Float32Array, colMarked: Uint8Array, R: number, c0: number, c1: number, out: Uint8Array): void {
  out.fill(0);
  for (let c = c0; c < c1; c++) {
    if (!colMarked[c]) continue;
    for (let i = c * R, r = 0; r < R; i++, r++) if (marks[i] > 0) out[r] = 1;
  }
}
