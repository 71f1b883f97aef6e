// The browser's copy of a panel's per-step columns (fed by series.ts): per statistic a
// growable [col][row] float32 block, with the value range and the per-column "any > 0" flags
// kept up to date incrementally. Shared by the heatmap and the graph.
import { valueRange } from "./colors";

/** Columns held by the browser: per statistic a growable [col][row] float32 block. */
export class SeriesStore {
  nStats = 0;
  nRows = 0;
  steps: number[] = [];
  data: Float32Array[] = [];
  cap = 0;
  seq = 0;
  stale = false;
  gaps = 0; // deltas ignored because of a seq gap
  decodeErrors = 0; // buffers that did not match their header
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

  /** Value of statistic si at column c, row r (NaN when an index is out of range). */
  value(si: number, c: number, r: number): number {
    if (si < 0 || si >= this.nStats || c < 0 || c >= this.nCols || r < 0 || r >= this.nRows) return NaN;
    return this.data[si][c * this.nRows + r];
  }

  /** The latest column whose step is <= `step` (the first column if none is; -1 when empty;
   * a negative `step` means the latest column). */
  columnAt(step: number): number {
    const C = this.nCols;
    if (C === 0) return -1;
    if (step < 0) return C - 1;
    let lo = 0;
    let hi = C;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.steps[mid] <= step) lo = mid + 1;
      else hi = mid;
    }
    return Math.max(0, lo - 1);
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
    if (block.length !== this.nStats * k * R) throw new Error(`dsnotebook series: block of ${block.length} values for ${this.nStats}x${k}x${R}`);
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
