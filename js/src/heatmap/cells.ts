// The heatmap's cells on the canvas: one colour per drawn bin (the max over its columns,
// exact LUT colours written as device pixels) and the non-finite marks drawn over them.
import { cssRgb, RGB, scale } from "../shared/colors";
import type { SeriesStore } from "../shared/store";
import { binMarks, binMax, Geometry, Mark } from "./geometry";

/** Writes the cells as device pixels (exact colours, no smoothing), each drawn bin the max
 * over its columns; returns the cells to mark, or null when there was nothing to draw. */
export function drawCells(
  ctx: CanvasRenderingContext2D,
  g: Geometry,
  store: SeriesStore,
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
  const binMark = new Uint8Array(R); // stays 0 without a mark statistic
  const rowY: number[] = [];
  for (let r = 0; r <= R; r++) rowY.push(Math.round(r * g.cellH * dpr));
  for (let b = 0; b < g.nBins; b++) {
    const c0 = g.col0 + b * g.agg;
    const c1 = Math.min(cEnd, c0 + g.agg);
    binMax(vals, R, c0, c1, binVal);
    if (markVals !== null && colMarked !== null) binMarks(markVals, colMarked, R, c0, c1, binMark);
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
