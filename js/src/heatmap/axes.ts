// The heatmap's labels and scales: module/tensor row labels, the step axis under the cells
// and the colour bar. Text is drawn with fillText (never parsed as markup).
import { cssRgb, formatFloat32, RGB, tickLabel, ticks } from "../shared/colors";
import { AXIS_H, ellipsize, Geometry, LABEL_FONT, Mark } from "./geometry";
import type { RowInfo } from "./types";

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
  const width = (s: string) => ctx.measureText(s).width;
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
      ctx.fillText(ellipsize(width, mod || "(root)", g.moduleColW - 10), 3, yy);
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
        ctx.fillText(ellipsize(width, t, g.tensorColW - 6), g.x0 - 5, g.y0 + (k + 0.5) * g.cellH);
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
  const w = Math.round(g.cssW * dpr);
  const h = Math.round(AXIS_H * dpr);
  if (axis.width !== w || axis.height !== h) {
    // resizing reallocates the canvas: only when the size changed
    axis.width = w;
    axis.height = h;
    axis.style.width = `${g.cssW}px`;
    axis.style.height = `${AXIS_H}px`;
  }
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
