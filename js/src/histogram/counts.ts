// The histogram panel's numbers and geometry, without the DOM: exact counts from the two
// float32 planes, the span of bins in use, column aggregation for the width available, the
// colour range, which cell is under a point, and the tooltip's text.
import type { SeriesStore } from "../shared/store";
import type { BinRow } from "./types";

/** count = hi * SPLIT + lo; both planes hold integers below 2^24, exact in float32. */
export const SPLIT = 16777216;
export const MIN_CELL_W = 2;
export const MAX_CELL_W = 16;
export const LABEL_W = 96;
export const GAP = 6;
export const TOP = 2;
export const AXIS_H = 18;

/** Exact count of row r at column c (NaN when out of range). */
export function count(store: SeriesStore, c: number, r: number): number {
  return store.value(1, c, r) * SPLIT + store.value(0, c, r);
}

/** Row of exact zeros (bin 0) and of non-finite elements (the last row). */
export const ZERO_ROW = 0;
export function nonfiniteRow(rows: BinRow[]): number {
  return rows.length - 1;
}

/** Largest exact count of row r over columns [c0, c1) (0 when none). */
export function maxCount(store: SeriesStore, r: number, c0: number, c1: number): number {
  let m = 0;
  for (let c = c0; c < c1; c++) {
    const v = count(store, c, r);
    if (v > m) m = v;
  }
  return m;
}

/** [first, last] bin row on the log2 axis (1 .. rows-2) with a count > 0 in some column, or null. */
export function binSpan(store: SeriesStore, nRows: number): [number, number] | null {
  let lo = -1;
  let hi = -1;
  for (let r = 1; r < nRows - 1; r++) {
    if (maxCount(store, r, 0, store.nCols) > 0) {
      if (lo < 0) lo = r;
      hi = r;
    }
  }
  return lo < 0 ? null : [lo, hi];
}

/** [vmin, vmax] of the positive counts of rows b0..b1 over every column ([NaN, NaN] if none). */
export function countRange(store: SeriesStore, b0: number, b1: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let r = b0; r <= b1; r++) {
    for (let c = 0; c < store.nCols; c++) {
      const v = count(store, c, r);
      if (v > 0) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  }
  return lo > hi ? [NaN, NaN] : [lo, hi];
}

export interface Geometry {
  agg: number; // columns per drawn bin
  nBins: number; // drawn columns
  cellW: number;
  cellH: number;
  x0: number;
  b0: number; // bin rows shown on the log2 axis: b1 (top) .. b0 (bottom)
  b1: number;
  nfY: number; // top of the non-finite row
  binsY: number; // top of the bin rows
  zeroY: number; // top of the exact-zeros row
  axisY: number;
  cssW: number;
  cssH: number;
}

/** Cell sizes and row positions for `nCols` columns and bins b0..b1 in `width` CSS px. */
export function computeGeometry(nCols: number, span: [number, number] | null, width: number): Geometry {
  const plotW = Math.max(40, width - LABEL_W - 12);
  const agg = nCols > 0 ? Math.max(1, Math.ceil((nCols * MIN_CELL_W) / plotW)) : 1;
  const nBins = Math.ceil(nCols / agg);
  const cellW = nBins ? Math.max(MIN_CELL_W, Math.min(MAX_CELL_W, Math.floor(plotW / nBins))) : MAX_CELL_W;
  const [b0, b1] = span ?? [1, 0];
  const nBinRows = Math.max(0, b1 - b0 + 1);
  const cellH = Math.max(4, Math.min(14, Math.floor(320 / Math.max(1, nBinRows + 2))));
  const nfY = TOP;
  const binsY = nfY + cellH + GAP;
  const zeroY = binsY + nBinRows * cellH + GAP;
  const axisY = zeroY + cellH + 2;
  return { agg, nBins, cellW, cellH, x0: LABEL_W, b0, b1, nfY, binsY, zeroY, axisY,
    cssW: LABEL_W + nBins * cellW + 8, cssH: axisY + AXIS_H };
}

/** The row (bin index, or the non-finite row) and data columns [c0, c1) under (x, y), or null. */
export function cellAt(g: Geometry, x: number, y: number, nCols: number, nfRow: number): { row: number; c0: number; c1: number } | null {
  if (x < g.x0 || nCols === 0) return null;
  const i = Math.floor((x - g.x0) / g.cellW);
  if (i < 0 || i >= g.nBins) return null;
  const c0 = i * g.agg;
  const c1 = Math.min(nCols, c0 + g.agg);
  let row = -1;
  if (y >= g.nfY && y < g.nfY + g.cellH) row = nfRow;
  else if (y >= g.zeroY && y < g.zeroY + g.cellH) row = 0;
  else if (y >= g.binsY && y < g.zeroY - GAP && g.b1 >= g.b0) row = g.b1 - Math.floor((y - g.binsY) / g.cellH);
  if (row < 0 || (row !== nfRow && row !== 0 && (row < g.b0 || row > g.b1))) return null;
  return { row, c0, c1 };
}

export function formatExact(n: number): string {
  return Number.isFinite(n) ? n.toLocaleString("en-US") : String(n);
}

/** Axis label of a row: "2^-10" for a bin, "non-finite", "0 (exact)". */
export function rowLabel(rows: BinRow[], r: number): string {
  if (r === nonfiniteRow(rows)) return "non-finite";
  if (r === ZERO_ROW) return "0 (exact)";
  const e = rows[r] ? rows[r].exp : null;
  return e === null || e === undefined ? String(rows[r]?.name ?? r) : `2^${e}`;
}

/** The tooltip's lines for row r over columns [c0, c1) of a tensor with `numel` elements. */
export function tooltipLines(store: SeriesStore, rows: BinRow[], r: number, c0: number, c1: number, numel: number): string[] {
  const n = c1 - c0;
  const nf = nonfiniteRow(rows);
  const v = maxCount(store, r, c0, c1);
  const what = r === nf ? "non-finite elements (NaN, ±inf)" : r === ZERO_ROW ? "exact zeros (g = 0)"
    : `|g| ${String(rows[r]?.name ?? "").startsWith("[") ? "in " : ""}${rows[r]?.name ?? ""}`;
  const share = numel > 0 ? ` (${((100 * v) / numel).toPrecision(3)}% of ${formatExact(numel)})` : "";
  const lines = [
    n > 1 ? `steps ${store.steps[c0]}–${store.steps[c1 - 1]} (max of ${n})` : `step ${store.steps[c0]}`,
    what,
    `count: ${formatExact(v)}${share}`,
  ];
  const bad = r === nf ? 0 : maxCount(store, nf, c0, c1);
  if (bad > 0) lines.push(`non-finite at ${n > 1 ? "these steps" : "this step"}: ${formatExact(bad)}`);
  return lines;
}
