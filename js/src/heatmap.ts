// dsnotebook gradient heatmap: tensors (rows, model order, grouped by module) x steps.
//
// Data arrives as custom messages {type: "append"|"drop", seq, steps, shape} with one
// float32 buffer (layout stat, col, row), applied strictly in seq order; a periodic
// snapshot trait repairs gaps (messages sent before this model existed are lost).
// All text goes through textContent / fillText, never innerHTML.
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import {
  cssRgb,
  formatFloat32,
  packLut,
  packRgb,
  RGB,
  scale,
  tickLabel,
  ticks,
  valueRange,
} from "./colors";

interface RowInfo {
  name: string;
  module: string;
  tensor: string;
  shape?: number[];
}
interface StatInfo {
  key: string;
  label: string;
  log: boolean;
}
interface SnapshotMeta {
  seq?: number;
  steps?: number[];
  shape?: number[];
  truncated?: boolean;
  total_columns?: number;
}
interface Model {
  rows: RowInfo[];
  stats: StatInfo[];
  stat: string;
  mark_stat: string;
  status: string;
  title: string;
  lut: DataView;
  nan_color: number[];
  mark_color: number[];
  snapshot: DataView;
  snapshot_meta: SnapshotMeta;
  selected_module?: string;
  selected_step?: number;
  hover_step?: number;
}
interface DeltaMsg {
  type: string;
  seq: number;
  steps: number[];
  shape?: number[];
}

/** Columns held by the browser: per statistic a growable [col][row] float32 block. */
export class Store {
  nStats = 0;
  nRows = 0;
  steps: number[] = [];
  data: Float32Array[] = [];
  cap = 0;
  seq = 0;
  stale = false;
  gaps = 0; // deltas ignored because of a seq gap
  snapshots = 0; // snapshots applied
  version = 0;
  private listeners = new Set<() => void>();
  // per statistic: value range over all columns, and "any value > 0" per column;
  // kept up to date incrementally on append, dropped on drop/reset
  private ranges = new Map<string, [number, number]>();
  private flags = new Map<number, Uint8Array>();

  reset(nStats: number, nRows: number): void {
    this.nStats = nStats;
    this.nRows = nRows;
    this.steps = [];
    this.cap = 0;
    this.data = [];
    this.ranges.clear();
    this.flags.clear();
    for (let s = 0; s < nStats; s++) this.data.push(new Float32Array(0));
  }

  get nCols(): number {
    return this.steps.length;
  }

  private ensure(cols: number): void {
    if (cols <= this.cap) return;
    let cap = Math.max(16, this.cap);
    while (cap < cols) cap *= 2;
    for (let s = 0; s < this.nStats; s++) {
      const next = new Float32Array(cap * this.nRows);
      next.set(this.data[s].subarray(0, this.nCols * this.nRows));
      this.data[s] = next;
    }
    this.cap = cap;
  }

  /** Append k columns from a [stat][col][row] block. */
  appendBlock(steps: number[], block: Float32Array): void {
    const k = steps.length;
    const R = this.nRows;
    if (block.length !== this.nStats * k * R) throw new Error("dsnotebook heatmap: bad block size");
    const n = this.nCols;
    this.ensure(n + k);
    for (let s = 0; s < this.nStats; s++) {
      this.data[s].set(block.subarray(s * k * R, (s + 1) * k * R), n * R);
    }
    for (const st of steps) this.steps.push(st);
    for (const [key, r] of this.ranges) {
      const [si, log] = key.split("/");
      const [lo, hi] = valueRange(this.data[Number(si)].subarray(n * R, (n + k) * R), k * R, log === "1");
      if (!Number.isNaN(lo)) this.ranges.set(key, Number.isNaN(r[0]) ? [lo, hi] : [Math.min(r[0], lo), Math.max(r[1], hi)]);
    }
    for (const [si, f] of this.flags) this.flags.set(si, this.columnFlags(si, f, n));
  }

  /** [vmin, vmax] of statistic si over all columns held (see colors.valueRange). */
  range(si: number, log: boolean): [number, number] {
    const key = `${si}/${log ? 1 : 0}`;
    let r = this.ranges.get(key);
    if (!r) {
      r = si < this.nStats ? valueRange(this.data[si], this.nCols * this.nRows, log) : [NaN, NaN];
      this.ranges.set(key, r);
    }
    return r;
  }

  /** Per column: 1 when statistic si is > 0 in some row (e.g. a non-finite count). */
  marked(si: number): Uint8Array {
    let f = this.flags.get(si);
    if (!f || f.length !== this.nCols) {
      f = this.columnFlags(si, new Uint8Array(0), 0);
      this.flags.set(si, f);
    }
    return f;
  }

  private columnFlags(si: number, prev: Uint8Array, from: number): Uint8Array {
    const out = new Uint8Array(this.nCols);
    out.set(prev.subarray(0, from));
    const d = this.data[si];
    const R = this.nRows;
    for (let c = from; c < this.nCols; c++) {
      for (let i = c * R, e = i + R; i < e; i++) {
        if (d[i] > 0) {
          out[c] = 1;
          break;
        }
      }
    }
    return out;
  }

  drop(steps: number[]): void {
    const gone = new Set(steps);
    const R = this.nRows;
    let w = 0;
    const kept: number[] = [];
    for (let c = 0; c < this.nCols; c++) {
      if (gone.has(this.steps[c])) continue;
      if (w !== c) {
        for (let s = 0; s < this.nStats; s++) this.data[s].copyWithin(w * R, c * R, (c + 1) * R);
      }
      kept.push(this.steps[c]);
      w++;
    }
    this.steps = kept;
    this.ranges.clear();
    this.flags.clear();
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(): void {
    this.version++;
    for (const fn of this.listeners) fn();
  }
}

function toFloat32(view: DataView | ArrayBuffer | null | undefined): Float32Array {
  if (!view) return new Float32Array(0);
  if (view instanceof ArrayBuffer) return new Float32Array(view.slice(0));
  // copy: the DataView's byteOffset need not be 4-aligned
  const buf = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  return new Float32Array(buf as ArrayBuffer);
}

function toBytes(view: DataView | null | undefined): Uint8Array {
  if (!view) return new Uint8Array(0);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

export function applySnapshot(model: Pick<AnyModel<Model>, "get">, store: Store, force: boolean): boolean {
  const meta = model.get("snapshot_meta") || {};
  const seq = meta.seq ?? 0;
  const rows = model.get("rows") || [];
  const stats = model.get("stats") || [];
  const shapeOk = store.nRows === rows.length && store.nStats === stats.length;
  if (!force && shapeOk && seq <= store.seq) return false;
  const steps = meta.steps || [];
  const block = toFloat32(model.get("snapshot"));
  store.reset(stats.length, rows.length);
  if (block.length === stats.length * steps.length * rows.length) {
    store.appendBlock(steps, block);
  }
  store.seq = seq;
  store.stale = false;
  store.snapshots++;
  return true;
}

export function applyDelta(store: Store, msg: DeltaMsg, buffers: DataView[]): boolean {
  if (typeof msg.seq !== "number") return false;
  if (msg.seq <= store.seq) return false; // already contained in a snapshot
  if (msg.seq !== store.seq + 1) {
    store.stale = true; // a gap: wait for the next snapshot
    store.gaps++;
    return false;
  }
  if (msg.type === "append") {
    const block = toFloat32(buffers && buffers[0]);
    const shape = msg.shape || [];
    if (shape[0] !== store.nStats || shape[2] !== store.nRows || shape[1] !== msg.steps.length) {
      store.stale = true;
      return false;
    }
    store.appendBlock(msg.steps, block);
  } else if (msg.type === "drop") {
    store.drop(msg.steps);
  } else {
    return false;
  }
  store.seq = msg.seq;
  return true;
}

const CSS = `
.dsn-heatmap { position: relative; box-sizing: border-box; padding: 6px 4px 4px 4px;
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87));
  background: var(--jp-layout-color0, transparent); max-width: 100%; }
.dsn-heatmap-header { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; margin: 0 0 6px 0; }
.dsn-heatmap-title { font-weight: 600; }
.dsn-stat-select { font: inherit; color: inherit; background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; padding: 1px 4px; }
.dsn-status { color: var(--jp-ui-font-color2, rgba(0,0,0,.6)); font-size: var(--jp-ui-font-size0, 11px);
  margin: 0 0 4px 0; min-height: 1em; white-space: pre-wrap; overflow-wrap: anywhere; }
.dsn-colorbar { display: block; }
.dsn-heatmap-scroll { overflow: auto; max-height: 560px; max-width: 100%; }
.dsn-heatmap-canvas { display: block; cursor: crosshair; }
.dsn-heatmap-axis { display: block; }
.dsn-tooltip { position: absolute; z-index: 10; pointer-events: none; display: none; max-width: 420px;
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 4px; padding: 4px 7px;
  box-shadow: 0 2px 6px rgba(0,0,0,.25); font-size: var(--jp-ui-font-size0, 11px); line-height: 1.35;
  overflow-wrap: anywhere; }
.dsn-tooltip .dsn-tt-module { font-weight: 600; }
.dsn-zoom-reset { font: inherit; font-size: var(--jp-ui-font-size0, 11px); color: inherit; cursor: pointer;
  background: var(--jp-layout-color2, #eee); border: 1px solid var(--jp-border-color1, #bdbdbd);
  border-radius: 3px; padding: 1px 6px; }
.dsn-zoom-box { position: absolute; display: none; pointer-events: none; z-index: 5;
  background: rgba(90, 150, 255, .18); border: 1px solid rgba(90, 150, 255, .8); }
.dsn-tooltip .dsn-tt-mark { color: rgb(220, 30, 30); font-weight: 600; }
.dsn-heatmap-scroll { position: relative; }
.dsn-heatmap-selection { position: absolute; display: none; pointer-events: none; box-sizing: border-box;
  border: 2px solid var(--jp-brand-color1, #1976d2); border-radius: 2px;
  box-shadow: 0 0 0 1px rgba(255, 255, 255, .7); }
.dsn-heatmap-step-mark { position: absolute; display: none; pointer-events: none; box-sizing: border-box;
  border-left: 1px dashed var(--jp-brand-color1, #1976d2); border-right: 1px dashed var(--jp-brand-color1, #1976d2); }
`;

const LABEL_FONT = "11px var(--jp-ui-font-family, system-ui, sans-serif)";
const MAX_CELL_W = 24;
const MAX_CELL_H = 18;
const TARGET_PLOT_H = 420;
const MODULE_COL_MAX = 170;
const TENSOR_COL_MAX = 90;
const AXIS_H = 18;
const PAD_TOP = 2;

interface Geometry {
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

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  return e;
}

function ellipsize(ctx: CanvasRenderingContext2D, text: string, maxW: number): string {
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
function lowerBound(a: number[], v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function rgbOf(list: number[] | undefined, fallback: RGB): RGB {
  return list && list.length >= 3 ? [list[0], list[1], list[2]] : fallback;
}

export default () => {
  const store = new Store();

  const initialize: Initialize<Model> = ({ model }) => {
    applySnapshot(model, store, true);
    const onCustom = (msg: DeltaMsg, buffers: DataView[]) => {
      if (applyDelta(store, msg, buffers)) store.changed();
    };
    const onSnapshot = () => {
      if (applySnapshot(model, store, false)) store.changed();
    };
    const onShape = () => {
      applySnapshot(model, store, true);
      store.changed();
    };
    model.on("msg:custom", onCustom);
    model.on("change:snapshot_meta", onSnapshot);
    model.on("change:rows", onShape);
    model.on("change:stats", onShape);
    return () => {
      model.off("msg:custom", onCustom);
      model.off("change:snapshot_meta", onSnapshot);
      model.off("change:rows", onShape);
      model.off("change:stats", onShape);
    };
  };

  const render: Render<Model> = ({ model, el: host }) => {
    const root = el("div", "dsn-heatmap");
    const style = document.createElement("style");
    style.textContent = CSS;
    const header = el("div", "dsn-heatmap-header");
    const title = el("span", "dsn-heatmap-title");
    const select = el("select", "dsn-stat-select");
    select.setAttribute("aria-label", "statistic");
    const barWrap = el("div", "dsn-colorbar-wrap");
    const colorbar = el("canvas", "dsn-colorbar");
    barWrap.appendChild(colorbar);
    const zoomReset = el("button", "dsn-zoom-reset");
    zoomReset.type = "button";
    zoomReset.textContent = "show all steps";
    zoomReset.style.display = "none";
    const zoomBox = el("div", "dsn-zoom-box");
    header.append(title, select, barWrap, zoomReset);
    const status = el("div", "dsn-status");
    const scroll = el("div", "dsn-heatmap-scroll");
    const canvas = el("canvas", "dsn-heatmap-canvas");
    canvas.setAttribute("role", "img");
    scroll.appendChild(canvas);
    const axis = el("canvas", "dsn-heatmap-axis");
    const tooltip = el("div", "dsn-tooltip");
    root.append(style, header, status, scroll, axis, tooltip, zoomBox);
    canvas.title = "drag across steps to zoom in; double-click to show all steps";
    host.appendChild(root);

    let draws = 0;
    let geom: Geometry | null = null;
    let lutPacked = packLut(toBytes(model.get("lut")));
    let frame = 0;
    let hover: { x: number; y: number } | null = null;
    let zoom: { start: number; end: number } | null = null; // steps shown, inclusive
    let dragFrom: number | null = null;
    let labelWidths: { rows: RowInfo[] | null; modW: number; tenW: number } = { rows: null, modW: 0, tenW: 0 };

    const stats = (): StatInfo[] => model.get("stats") || [];
    const rows = (): RowInfo[] => model.get("rows") || [];
    const statIndex = (): number => {
      const key = model.get("stat");
      const i = stats().findIndex((s) => s.key === key);
      return i >= 0 ? i : 0;
    };
    const markIndex = (): number => stats().findIndex((s) => s.key === model.get("mark_stat"));

    const fillSelect = () => {
      select.replaceChildren();
      for (const s of stats()) {
        const o = document.createElement("option");
        o.value = s.key;
        o.textContent = s.label || s.key;
        select.appendChild(o);
      }
      const cur = stats()[statIndex()];
      if (cur) select.value = cur.key;
    };
    const syncText = () => {
      title.textContent = model.get("title") || "";
      status.textContent = model.get("status") || "";
    };

    const currentRange = (): [number, number] => {
      const si = statIndex();
      const st = stats()[si];
      return st ? store.range(si, !!st.log) : [NaN, NaN];
    };

    const visible = (): [number, number] => {
      const C = store.nCols;
      if (!zoom || C === 0) return [0, C];
      const a = lowerBound(store.steps, zoom.start);
      const b = lowerBound(store.steps, zoom.end + 1e-9);
      if (b - a < 2) {
        zoom = null;
        return [0, C];
      }
      return [a, b - a];
    };

    const layout = (ctx: CanvasRenderingContext2D): Geometry => {
      const R = store.nRows;
      const [col0, C] = visible();
      ctx.font = LABEL_FONT;
      const rs = rows();
      if (labelWidths.rows !== rs) {
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
        labelWidths = { rows: rs, modW, tenW };
      }
      const { modW, tenW } = labelWidths;
      const cellH = Math.max(1, Math.min(MAX_CELL_H, Math.floor(TARGET_PLOT_H / Math.max(1, R))));
      const showTensor = cellH >= 9;
      const moduleColW = Math.min(MODULE_COL_MAX, Math.ceil(modW) + 10);
      const tensorColW = showTensor ? Math.min(TENSOR_COL_MAX, Math.ceil(tenW) + 8) : 0;
      const x0 = moduleColW + tensorColW + 4;
      const avail = Math.max(240, Math.floor(host.clientWidth || root.clientWidth || 800) - 12);
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
    };

    const draw = () => {
      frame = 0;
      const t0 = performance.now();
      const ctx0 = canvas.getContext("2d");
      if (!ctx0) return;
      const ctx: CanvasRenderingContext2D = ctx0;
      const dpr = window.devicePixelRatio || 1;
      const g = layout(ctx);
      geom = g;
      const R = store.nRows;
      const C = g.nVis;
      const cEnd = g.col0 + g.nVis;
      canvas.width = Math.round(g.cssW * dpr);
      canvas.height = Math.round(g.cssH * dpr);
      canvas.style.width = `${g.cssW}px`;
      canvas.style.height = `${g.cssH}px`;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);

      const cs = getComputedStyle(root);
      const fg = cs.color || "#222";
      const si = statIndex();
      const st = stats()[si];
      const log = !!(st && st.log);
      const [lo, hi] = currentRange();
      const tRange = performance.now();
      const nanRgb = rgbOf(model.get("nan_color"), [128, 128, 128]);
      const markRgb = rgbOf(model.get("mark_color"), [255, 32, 32]);
      const nanPx = packRgb(nanRgb);
      const mi = markIndex();
      const marks: Array<[number, number]> = [];
      let tCells = tRange;

      // cells, device pixels, written directly (exact colours, no smoothing)
      const px0 = Math.round(g.x0 * dpr);
      const py0 = Math.round(g.y0 * dpr);
      const pw = Math.round(g.nBins * g.cellW * dpr);
      const ph = Math.round(R * g.cellH * dpr);
      if (pw > 0 && ph > 0 && st) {
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
        tCells = performance.now();
      }

      ctx.scale(dpr, dpr);
      // non-finite marks, over whatever statistic is shown
      if (marks.length) {
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

      const gutterMarks = marks.length > 0 && !(g.cellW >= 5 && g.cellH >= 5);
      const tMarks = performance.now();
      // labels: module groups (alternating bands when tall enough) and tensor names
      ctx.font = LABEL_FONT;
      ctx.textBaseline = "middle";
      const rs = rows();
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

      // x axis: step numbers, on its own canvas below the (maybe scrolled) rows
      const actx0 = axis.getContext("2d");
      if (!actx0) return;
      const actx: CanvasRenderingContext2D = actx0;
      axis.width = Math.round(g.cssW * dpr);
      axis.height = Math.round(AXIS_H * dpr);
      axis.style.width = `${g.cssW}px`;
      axis.style.height = `${AXIS_H}px`;
      actx.setTransform(dpr, 0, 0, dpr, 0, 0);
      actx.clearRect(0, 0, g.cssW, AXIS_H);
      actx.font = LABEL_FONT;
      drawAxis(actx, g, C, fg);
      if (marks.length) {
        actx.fillStyle = cssRgb(markRgb);
        for (const [b] of marks) actx.fillRect(g.x0 + b * g.cellW, 0, Math.max(2, g.cellW), 2);
      }
      drawColorbar(lo, hi, log, fg);

      // geometry and state for tests and tools
      root.dataset.draws = String(++draws);
      root.dataset.columns = String(store.nCols);
      root.dataset.zoomed = String(g.nVis !== store.nCols);
      canvas.dataset.col0 = String(g.col0);
      canvas.dataset.visible = String(g.nVis);
      zoomReset.style.display = g.nVis !== store.nCols ? "" : "none";
      root.dataset.rows = String(R);
      root.dataset.seq = String(store.seq);
      root.dataset.stale = String(store.stale);
      root.dataset.gaps = String(store.gaps);
      root.dataset.snapshots = String(store.snapshots);
      root.dataset.stat = st ? st.key : "";
      canvas.dataset.vmin = String(lo);
      canvas.dataset.vmax = String(hi);
      canvas.dataset.cellW = String(g.cellW);
      canvas.dataset.cellH = String(g.cellH);
      canvas.dataset.x0 = String(g.x0);
      canvas.dataset.y0 = String(g.y0);
      canvas.dataset.agg = String(g.agg);
      canvas.dataset.bins = String(g.nBins);
      canvas.dataset.dpr = String(dpr);
      canvas.dataset.log = String(log);
      if (hover) showTooltip(hover.x, hover.y);
      placeSelection();
      const tEnd = performance.now();
      canvas.setAttribute(
        "aria-label",
        `${model.get("title") || "heatmap"}: ${R} tensors × ${C} steps, ${st ? st.label : ""}` +
          (marks.length ? `, ${marks.length} cells with non-finite values` : ""),
      );
      root.dataset.drawMs = (tEnd - t0).toFixed(1);
      root.dataset.drawPhases = [
        `range:${(tRange - t0).toFixed(1)}`,
        `cells:${(tCells - tRange).toFixed(1)}`,
        `marks:${(tMarks - tCells).toFixed(1)}`,
        `labels:${(tEnd - tMarks).toFixed(1)}`,
      ].join(" ");
    };

    const drawAxis = (ctx: CanvasRenderingContext2D, g: Geometry, C: number, fg: string) => {
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
          const label = String(store.steps[g.col0 + Math.min(C - 1, b * g.agg)]);
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
    };

    const drawColorbar = (lo: number, hi: number, log: boolean, fg: string) => {
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
      const n = lutPacked.length;
      const lut = toBytes(model.get("lut"));
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
    };

    const line = (cls: string, text: string): HTMLDivElement => {
      const d = el("div", cls);
      d.textContent = text;
      return d;
    };

    const showTooltip = (x: number, y: number) => {
      const g = geom;
      const R = store.nRows;
      if (!g || g.nVis === 0 || dragFrom !== null) return hideTooltip();
      const b = Math.floor((x - g.x0) / g.cellW);
      const r = Math.floor((y - g.y0) / g.cellH);
      if (b < 0 || b >= g.nBins || r < 0 || r >= R) return hideTooltip();
      const c0 = g.col0 + b * g.agg;
      const c1 = Math.min(g.col0 + g.nVis, c0 + g.agg);
      if (c0 >= store.nCols) return hideTooltip();
      const row = rows()[r];
      const si = statIndex();
      const st = stats()[si];
      const mi = markIndex();
      let v = NaN;
      let bad = 0;
      for (let c = c0; c < c1; c++) {
        const u = store.data[si][c * R + r];
        if (u === u && (v !== v || u > v)) v = u;
        if (mi >= 0) {
          const m = store.data[mi][c * R + r];
          if (m > 0) bad += m;
        }
      }
      const parts: HTMLElement[] = [
        line("dsn-tt-module", `module: ${row ? row.module || "(root)" : "?"}`),
        line("dsn-tt-tensor", `tensor: ${row ? row.tensor : "?"}${row && row.shape ? `  [${row.shape.join("×")}]` : ""}`),
        line(
          "dsn-tt-step",
          c1 - c0 > 1
            ? `steps: ${store.steps[c0]}–${store.steps[c1 - 1]} (max of ${c1 - c0})`
            : `step: ${store.steps[c0]}`,
        ),
        line("dsn-tt-value", `${st ? st.label : "value"}: ${formatFloat32(v)}`),
      ];
      if (bad > 0) parts.push(line("dsn-tt-mark", `non-finite values: ${formatFloat32(bad)}`));
      tooltip.replaceChildren(...parts);
      tooltip.dataset.row = String(r);
      tooltip.dataset.col = String(c0);
      tooltip.style.display = "block";
      // place near the pointer, inside the widget
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
    };
    const hideTooltip = () => {
      tooltip.style.display = "none";
    };

    const schedule = () => {
      if (frame) return;
      if (document.hidden) frame = window.setTimeout(draw, 100) as unknown as number;
      else frame = requestAnimationFrame(draw);
    };

    // the step under the pointer, debounced, for linked panels (-1: none)
    let hoverTimer = 0;
    let hoverSent = -1;
    const sendHover = (step: number) => {
      window.clearTimeout(hoverTimer);
      hoverTimer = window.setTimeout(() => {
        if (step === hoverSent) return;
        hoverSent = step;
        model.set("hover_step", step);
        model.save_changes();
      }, 150);
    };
    const onMove = (ev: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      hover = { x: ev.clientX - rect.left, y: ev.clientY - rect.top };
      showTooltip(hover.x, hover.y);
      const c = tooltip.style.display === "block" ? Number(tooltip.dataset.col) : -1;
      sendHover(c >= 0 && c < store.nCols ? store.steps[c] : -1);
    };
    // zoom: drag across steps; double-click or the button shows all again
    const plotX = (ev: MouseEvent): number => {
      const g = geom;
      const x = ev.clientX - canvas.getBoundingClientRect().left;
      if (!g) return x;
      return Math.min(Math.max(x, g.x0), g.x0 + g.nBins * g.cellW - 0.01);
    };
    const onDown = (ev: MouseEvent) => {
      const g = geom;
      if (ev.button !== 0 || !g || g.nVis < 2) return;
      const x = ev.clientX - canvas.getBoundingClientRect().left;
      if (x < g.x0 || x >= g.x0 + g.nBins * g.cellW) return;
      ev.preventDefault();
      dragFrom = x;
      hideTooltip();
      window.addEventListener("mousemove", onDrag);
      window.addEventListener("mouseup", onUp);
    };
    const onDrag = (ev: MouseEvent) => {
      const g = geom;
      if (dragFrom === null || !g) return;
      const x = plotX(ev);
      const rootRect = root.getBoundingClientRect();
      const canRect = canvas.getBoundingClientRect();
      const left = canRect.left - rootRect.left + Math.min(x, dragFrom);
      zoomBox.style.display = "block";
      zoomBox.style.left = `${left}px`;
      zoomBox.style.width = `${Math.abs(x - dragFrom)}px`;
      zoomBox.style.top = `${canRect.top - rootRect.top + g.y0}px`;
      zoomBox.style.height = `${Math.min(store.nRows * g.cellH, scroll.clientHeight || 1e9)}px`;
    };
    const onUp = (ev: MouseEvent) => {
      window.removeEventListener("mousemove", onDrag);
      window.removeEventListener("mouseup", onUp);
      const g = geom;
      const from = dragFrom;
      dragFrom = null;
      zoomBox.style.display = "none";
      if (from === null || !g) return;
      const x = plotX(ev);
      const b0 = Math.floor((Math.min(x, from) - g.x0) / g.cellW);
      const b1 = Math.floor((Math.max(x, from) - g.x0) / g.cellW);
      const a = g.col0 + Math.max(0, b0) * g.agg;
      const e = Math.min(g.col0 + g.nVis - 1, g.col0 + b1 * g.agg + g.agg - 1);
      if (e - a < 1 || Math.abs(x - from) < 3) return; // a click, not a drag
      zoom = { start: store.steps[a], end: store.steps[e] };
      schedule();
    };
    const resetZoom = () => {
      zoom = null;
      schedule();
    };
    const onLeave = () => {
      hover = null;
      hideTooltip();
      sendHover(-1);
    };
    const onSelect = () => {
      model.set("stat", select.value);
      model.save_changes();
      schedule();
    };
    const onStat = () => {
      const cur = stats()[statIndex()];
      if (cur && select.value !== cur.key) select.value = cur.key;
      schedule();
    };
    const onStats = () => {
      fillSelect();
      schedule();
    };
    const onLut = () => {
      lutPacked = packLut(toBytes(model.get("lut")));
      schedule();
    };

    // linked selection: a click on a cell (or a row label) selects its module (and the
    // cell's step); Python links `selected_module` / `selected_step` to other panels
    const selBox = el("div", "dsn-heatmap-selection");
    const stepMark = el("div", "dsn-heatmap-step-mark");
    scroll.append(selBox, stepMark);
    let clickFrom: { x: number; y: number } | null = null;
    const placeSelection = (reveal = false) => {
      const g = geom;
      const mod = model.get("selected_module") || "";
      const stepSel = model.get("selected_step");
      const rs = rows();
      let r0 = -1;
      let r1 = -1;
      for (let r = 0; r < rs.length; r++) {
        if (mod && rs[r].module === mod) {
          if (r0 < 0) r0 = r;
          r1 = r;
        }
      }
      root.dataset.selectedModule = mod;
      root.dataset.selectedStep = String(stepSel ?? -1);
      root.dataset.selectedRows = r0 >= 0 ? `${r0}-${r1}` : "";
      if (!g || r0 < 0) selBox.style.display = "none";
      else {
        selBox.style.display = "block";
        selBox.style.left = "0px";
        selBox.style.top = `${g.y0 + r0 * g.cellH - 1}px`;
        selBox.style.width = `${g.x0 + g.nBins * g.cellW + 2}px`;
        selBox.style.height = `${(r1 - r0 + 1) * g.cellH + 2}px`;
        if (reveal) {
          const top = g.y0 + r0 * g.cellH;
          const bottom = g.y0 + (r1 + 1) * g.cellH;
          if (top < scroll.scrollTop || bottom > scroll.scrollTop + scroll.clientHeight) {
            scroll.scrollTop = Math.max(0, top - 20);
          }
        }
      }
      const c = stepSel !== undefined && stepSel >= 0 ? store.steps.indexOf(stepSel) : -1;
      if (!g || c < g.col0 || c >= g.col0 + g.nVis) stepMark.style.display = "none";
      else {
        const b = Math.floor((c - g.col0) / g.agg);
        stepMark.style.display = "block";
        stepMark.style.left = `${g.x0 + b * g.cellW - 1}px`;
        stepMark.style.top = `${g.y0}px`;
        stepMark.style.width = `${Math.max(2, g.cellW) + 2}px`;
        stepMark.style.height = `${store.nRows * g.cellH}px`;
      }
    };
    const onClickDown = (ev: MouseEvent) => {
      clickFrom = { x: ev.clientX, y: ev.clientY };
    };
    const onClick = (ev: MouseEvent) => {
      const g = geom;
      const from = clickFrom;
      clickFrom = null;
      if (!g || !from || Math.abs(ev.clientX - from.x) + Math.abs(ev.clientY - from.y) > 4) return; // a drag
      const rect = canvas.getBoundingClientRect();
      const x = ev.clientX - rect.left;
      const y = ev.clientY - rect.top;
      const r = Math.floor((y - g.y0) / g.cellH);
      const row = rows()[r];
      if (!row) return;
      model.set("selected_module", row.module);
      const b = Math.floor((x - g.x0) / g.cellW);
      if (x >= g.x0 && b >= 0 && b < g.nBins) {
        const c = g.col0 + b * g.agg;
        if (c < store.nCols) model.set("selected_step", store.steps[c]);
      }
      model.save_changes();
    };
    const onSelection = () => placeSelection(true);
    canvas.addEventListener("mousedown", onClickDown);
    canvas.addEventListener("click", onClick);
    model.on("change:selected_module", onSelection);
    model.on("change:selected_step", onSelection);

    canvas.addEventListener("mousemove", onMove);
    canvas.addEventListener("mousedown", onDown);
    canvas.addEventListener("dblclick", resetZoom);
    zoomReset.addEventListener("click", resetZoom);
    canvas.addEventListener("mouseleave", onLeave);
    select.addEventListener("change", onSelect);
    const unsubscribe = store.subscribe(schedule);
    model.on("change:stat", onStat);
    model.on("change:mark_stat", schedule);
    model.on("change:stats", onStats);
    model.on("change:rows", schedule);
    model.on("change:status", syncText);
    model.on("change:title", syncText);
    model.on("change:lut", onLut);
    model.on("change:nan_color", schedule);
    model.on("change:mark_color", schedule);
    let lastWidth = 0;
    const resize = new ResizeObserver(() => {
      const w = host.clientWidth;
      if (w !== lastWidth) {
        lastWidth = w;
        schedule();
      }
    });
    resize.observe(host);

    fillSelect();
    syncText();
    draw();

    return () => {
      unsubscribe();
      window.clearTimeout(hoverTimer);
      resize.disconnect();
      if (frame) {
        cancelAnimationFrame(frame);
        clearTimeout(frame);
      }
      canvas.removeEventListener("mousedown", onClickDown);
      canvas.removeEventListener("click", onClick);
      model.off("change:selected_module", onSelection);
      model.off("change:selected_step", onSelection);
      canvas.removeEventListener("mousemove", onMove);
      canvas.removeEventListener("mousedown", onDown);
      canvas.removeEventListener("dblclick", resetZoom);
      zoomReset.removeEventListener("click", resetZoom);
      window.removeEventListener("mousemove", onDrag);
      window.removeEventListener("mouseup", onUp);
      canvas.removeEventListener("mouseleave", onLeave);
      select.removeEventListener("change", onSelect);
      model.off("change:stat", onStat);
      model.off("change:mark_stat", schedule);
      model.off("change:stats", onStats);
      model.off("change:rows", schedule);
      model.off("change:status", syncText);
      model.off("change:title", syncText);
      model.off("change:lut", onLut);
      model.off("change:nan_color", schedule);
      model.off("change:mark_color", schedule);
      root.remove();
    };
  };

  return { initialize, render };
};
