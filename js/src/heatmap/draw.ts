// The heatmap's canvas drawing: geometry (cell sizes, column aggregation), the cells
// (max over aggregated columns), non-finite marks, row labels, the step axis and the
// colour bar. Pure functions of their arguments; the view owns the DOM and the state.
import { cssRgb, formatFloat32, RGB, scale, tickLabel, ticks } from "../colors";
import type { RowInfo, Store } from "./store";

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

export function ellipsize(ctx: CanvasRenderingContext2D, text: string, maxW: number): string {
  if (ctx.measureText(text).width <= maxW) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(text.slice(0, mid) + "…").width <= maxW) lo = mid;
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

/** Label widths of `rs`, re-measured only when the rows array changed. */
export function measureLabels(ctx: CanvasRenderingContext2D, rs: RowInfo[], cached: LabelWidths): LabelWidths {
  if (cached.rows === rs) return cached;
  let modW = 0;
  let tenW = 0;
  const seen = new Set<string>();
  for (const r of rs) {
    const key = `${r.module}\u0000${r.tensor}`;
    if (seen.has(key)) continue;
    seen.add(key);
    modW = Math.max(modW, ctx.measureText(r.module || "(root)").width);
    tenW = Math.max(tenW, ctx.measureText(r.tensor || "").width);
  }
  return { rows: rs, modW, tenW };
}

/** Geometry of R rows x the visible columns [col0, col0 + C) in `widthPx` CSS pixels. */
export function computeGeometry(
  R: number,
  col0: number,
  C: number,
  labels: LabelWidths,
  widthPx: number,
): Geometry {
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
  const cssW = Math.ceil(x0 + plotW + 34);
  const cssH = PAD_TOP + R * cellH + 2;
  return { cssW, cssH, x0, y0: PAD_TOP, cellW, cellH, agg, nBins, col0, nVis: C, moduleColW, tensorColW };
}

/** Writes the cells as device pixels (exact colours, no smoothing), each drawn bin the max
 * over its columns; returns the cells to mark, or null when there was nothing to draw. */
export function drawCells(
  ctx: CanvasRenderingContext2D,
  g: Geometry,
  store: Store,
  si: number,
  mi: number,
  lo: number,
  hi: number,
  log: boolean,
  lutPacked: Uint32Array,
  nanPx: number,
  dpr: number,
): Mark[] | null {
  const R = store.nRows;
  const cEnd = g.col0 + g.nVis;
  const marks: Mark[] = [];
  const px0 = Math.round(g.x0 * dpr);
  const py0 = Math.round(g.y0 * dpr);
  const pw = Math.round(g.nBins * g.cellW * dpr);
  const ph = Math.round(R * g.cellH * dpr);
  if (!(pw > 0 && ph > 0)) return null;
  const img = ctx.createImageData(pw, ph);
  const out = new Uint32Array(img.data.buffer);
  const vals = store.data[si];
  const markVals = mi >= 0 ? store.data[mi] : null;
  const colMarked = mi >= 0 ? store.marked(mi) : null;
  const binVal = new Float32Array(R);
  const toIndex = scale(lo, hi, log);
  const binMark = new Uint8Array(R);
  const rowY: number[] = [];
  for (let r = 0; r <= R; r++) rowY.push(Math.round(r * g.cellH * dpr));
  for (let b = 0; b < g.nBins; b++) {
    const c0 = g.col0 + b * g.agg;
    const c1 = Math.min(cEnd, c0 + g.agg);
    if (c1 - c0 === 1) {
      binVal.set(vals.subarray(c0 * R, c0 * R + R));
    } else {
      // max over the bin; NaN (no data) never wins (NaN > x is false)
      binVal.fill(-Infinity);
      for (let c = c0; c < c1; c++) {
        for (let i = c * R, r = 0; r < R; i++, r++) {
          const v = vals[i];
          if (v > binVal[r]) binVal[r] = v;
        }
      }
      for (let r = 0; r < R; r++) if (binVal[r] === -Infinity) binVal[r] = NaN;
    }
    binMark.fill(0);
    if (markVals !== null && colMarked !== null) {
      for (let c = c0; c < c1; c++) {
        if (!colMarked[c]) continue;
        for (let i = c * R, r = 0; r < R; i++, r++) if (markVals[i] > 0) binMark[r] = 1;
      }
    }
    const xa = Math.round(b * g.cellW * dpr);
    const xb = Math.round((b + 1) * g.cellW * dpr);
    for (let r = 0; r < R; r++) {
      const idx = toIndex(binVal[r]);
      const color = idx < 0 ? nanPx : lutPacked[idx] ?? nanPx;
      const ya = rowY[r];
      const yb = rowY[r + 1];
      for (let y = ya; y < yb; y++) {
        const o = y * pw;
        for (let x = xa; x < xb; x++) out[o + x] = color;
      }
      if (binMark[r]) marks.push([b, r]);
    }
  }
  ctx.putImageData(img, px0, py0);
  return marks;
}

/** Non-finite marks, over whatever statistic is shown (ctx in CSS pixels). */
export function drawMarks(ctx: CanvasRenderingContext2D, g: Geometry, marks: Mark[], markRgb: RGB): void {
  if (!marks.length) return;
  ctx.strokeStyle = cssRgb(markRgb);
  ctx.fillStyle = cssRgb(markRgb);
  const big = g.cellW >= 5 && g.cellH >= 5;
  ctx.lineWidth = big ? 1.5 : 1;
  ctx.beginPath();
  for (const [b, r] of marks) {
    const x = g.x0 + b * g.cellW;
    const y = g.y0 + r * g.cellH;
    if (big) {
      ctx.rect(x + 0.75, y + 0.75, g.cellW - 1.5, g.cellH - 1.5);
      ctx.moveTo(x + 1, y + 1);
      ctx.lineTo(x + g.cellW - 1, y + g.cellH - 1);
      ctx.moveTo(x + g.cellW - 1, y + 1);
      ctx.lineTo(x + 1, y + g.cellH - 1);
    }
  }
  if (big) ctx.stroke();
  else {
    // tiny cells: a dot on the cell, plus a tick in the row gutter so it can be found
    for (const [b, r] of marks) {
      const cx = g.x0 + (b + 0.5) * g.cellW;
      const cy = g.y0 + (r + 0.5) * g.cellH;
      ctx.fillRect(cx - 1.5, cy - 1.5, 3, 3);
    }
  }
}

/** Row labels: module groups (alternating bands when tall enough) and tensor names, plus
 * the gutter ticks of rows with marks when the cells are too small to show them. */
export function drawRowLabels(
  ctx: CanvasRenderingContext2D,
  g: Geometry,
  rs: RowInfo[],
  R: number,
  fg: string,
  marks: Mark[],
  markRgb: RGB,
): void {
  const gutterMarks = marks.length > 0 && !(g.cellW >= 5 && g.cellH >= 5);
  ctx.font = LABEL_FONT;
  ctx.textBaseline = "middle";
  let r = 0;
  let band = 0;
  let nextLabelY = -Infinity;
  while (r < R) {
    const mod = rs[r] ? rs[r].module : "";
    let e = r + 1;
    while (e < R && rs[e] && rs[e].module === mod) e++;
    const yTop = g.y0 + r * g.cellH;
    const h = (e - r) * g.cellH;
    if (h >= 6) {
      if (band % 2 === 1) {
        ctx.globalAlpha = 0.07;
        ctx.fillStyle = fg;
        ctx.fillRect(0, yTop, g.x0 - 2, h);
      }
      if (r > 0) {
        ctx.globalAlpha = 0.25;
        ctx.fillStyle = fg;
        ctx.fillRect(0, yTop, g.x0 - 2, 1);
      }
      ctx.globalAlpha = 1;
    }
    ctx.fillStyle = fg;
    // module name at the group's first row; with tiny rows, as many as fit
    const ty = g.cellH >= 9 ? yTop + g.cellH / 2 : yTop + Math.min(h, 12) / 2;
    if (g.cellH >= 9 || ty >= nextLabelY) {
      ctx.textAlign = "left";
      const yy = Math.max(ty, g.y0 + 6);
      ctx.fillText(ellipsize(ctx, mod || "(root)", g.moduleColW - 10), 3, yy);
      if (g.cellH < 9) {
        ctx.globalAlpha = 0.4;
        ctx.fillRect(g.x0 - 5, yTop, 3, Math.max(1, h));
        ctx.globalAlpha = 1;
      }
      nextLabelY = yy + 13;
    }
    if (g.tensorColW > 0) {
      ctx.globalAlpha = 0.75;
      ctx.textAlign = "right";
      for (let k = r; k < e; k++) {
        const t = rs[k] ? rs[k].tensor : "";
        ctx.fillText(ellipsize(ctx, t, g.tensorColW - 6), g.x0 - 5, g.y0 + (k + 0.5) * g.cellH);
      }
      ctx.globalAlpha = 1;
    }
    r = e;
    band++;
  }
  if (gutterMarks) {
    ctx.fillStyle = cssRgb(markRgb);
    for (const [, mr] of marks) ctx.fillRect(g.x0 - 9, g.y0 + (mr + 0.5) * g.cellH - 2, 7, 4);
  }
}

/** The x axis (step numbers of the C visible columns) on its own canvas, plus a tick over
 * every marked column; false when the canvas has no 2d context. */
export function drawAxis(
  axis: HTMLCanvasElement,
  g: Geometry,
  steps: number[],
  C: number,
  fg: string,
  marks: Mark[],
  markRgb: RGB,
  dpr: number,
): boolean {
  const actx0 = axis.getContext("2d");
  if (!actx0) return false;
  const ctx: CanvasRenderingContext2D = actx0;
  axis.width = Math.round(g.cssW * dpr);
  axis.height = Math.round(AXIS_H * dpr);
  axis.style.width = `${g.cssW}px`;
  axis.style.height = `${AXIS_H}px`;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, g.cssW, AXIS_H);
  ctx.font = LABEL_FONT;
  const yAxis = 4;
  ctx.textBaseline = "top";
  ctx.fillStyle = fg;
  if (C === 0) {
    ctx.textAlign = "left";
    ctx.globalAlpha = 0.7;
    ctx.fillText("waiting for the first step…", g.x0, yAxis);
    ctx.globalAlpha = 1;
  } else {
    const plotW = g.nBins * g.cellW;
    // a tick every k drawn columns, k a 1-2-5 number giving >= 70 px between ticks
    const want = Math.max(1, 70 / g.cellW);
    const mag = Math.pow(10, Math.floor(Math.log10(want)));
    const k = [1, 2, 5, 10].map((m) => m * mag).find((m) => m >= want) ?? 10 * mag;
    ctx.textAlign = "center";
    let lastRight = -Infinity;
    const tickAt = (b: number) => {
      const label = String(steps[g.col0 + Math.min(C - 1, b * g.agg)]);
      const w = ctx.measureText(label).width;
      const cx = g.x0 + (b + 0.5) * g.cellW;
      const x = Math.min(Math.max(cx, g.x0 + w / 2), g.x0 + plotW - w / 2 + 2);
      if (x - w / 2 < lastRight + 8) return;
      ctx.globalAlpha = 1;
      ctx.fillText(label, x, yAxis);
      ctx.globalAlpha = 0.5;
      ctx.fillRect(cx - 0.5, 0, 1, 3);
      ctx.globalAlpha = 1;
      lastRight = x + w / 2;
    };
    for (let b = 0; b < g.nBins; b += k) tickAt(b);
    if (g.nBins > 1 && lastRight < g.x0 + plotW - 24) tickAt(g.nBins - 1);
    ctx.globalAlpha = 0.6;
    ctx.textAlign = "left";
    ctx.fillText("step", g.x0 + plotW + 6, yAxis);
    ctx.globalAlpha = 1;
  }
  if (marks.length) {
    ctx.fillStyle = cssRgb(markRgb);
    for (const [b] of marks) ctx.fillRect(g.x0 + b * g.cellW, 0, Math.max(2, g.cellW), 2);
  }
  return true;
}

/** The colour bar of the LUT (n colours, `lut` their RGB bytes) with ticks over [lo, hi]. */
export function drawColorbar(
  colorbar: HTMLCanvasElement,
  n: number,
  lut: Uint8Array,
  lo: number,
  hi: number,
  log: boolean,
  fg: string,
): void {
  const ctx = colorbar.getContext("2d");
  if (!ctx) return;
  const dpr = window.devicePixelRatio || 1;
  const W = 220;
  const H = 30;
  const barX = 8;
  const barW = W - 16;
  colorbar.width = Math.round(W * dpr);
  colorbar.height = Math.round(H * dpr);
  colorbar.style.width = `${W}px`;
  colorbar.style.height = `${H}px`;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = `rgb(${lut[3 * i]}, ${lut[3 * i + 1]}, ${lut[3 * i + 2]})`;
    ctx.fillRect(barX + (i * barW) / n, 2, barW / n + 0.6, 10);
  }
  ctx.font = "10px var(--jp-ui-font-family, system-ui, sans-serif)";
  ctx.fillStyle = fg;
  ctx.textBaseline = "top";
  if (!(Number.isFinite(lo) && Number.isFinite(hi))) {
    ctx.textAlign = "left";
    ctx.fillText("no data yet", barX, 15);
    colorbar.title = "";
    return;
  }
  const pos = (v: number): number => {
    const t =
      hi <= lo ? 0.5 : log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo);
    return barX + Math.min(1, Math.max(0, t)) * barW;
  };
  let lastRight = -Infinity;
  for (const v of ticks(lo, hi, log)) {
    const label = tickLabel(v);
    const w = ctx.measureText(label).width;
    const x = Math.min(Math.max(pos(v), w / 2 + 1), W - w / 2 - 1);
    if (x - w / 2 < lastRight + 4) continue;
    ctx.textAlign = "center";
    ctx.fillText(label, x, 16);
    ctx.fillRect(pos(v) - 0.5, 12, 1, 3);
    lastRight = x + w / 2;
  }
  colorbar.title = `${log ? "log scale" : "linear scale"}: ${formatFloat32(lo)} … ${formatFloat32(hi)}`;
}
