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
  version = 0; // bumped by changed(): what subscribers hear
  revision = 0; // bumped by every change of the columns (reset, append, drop): caches key on it
  epoch = 0; // bumped by reset: a step's values are the same within one epoch
  private listeners = new Set<() => void>();
  // per statistic (and scale): the range of each column, and "any value > 0" per column, kept
  // up to date on append and compacted on drop (a drop never rescans the columns kept); the
  // range over all columns is reduced from the per-column ones when asked for
  private colRanges = new Map<string, { lo: Float32Array; hi: Float32Array }>();
  private ranges = new Map<string, [number, number]>();
  private flags = new Map<number, Uint8Array>();

  reset(nStats: number, nRows: number): void {
    this.nStats = nStats;
    this.nRows = nRows;
    this.revision++;
    this.epoch++;
    this.steps = [];
    this.cap = 0;
    this.data = [];
    this.colRanges.clear();
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
    this.revision++;
    this.ensure(n + k);
    for (let s = 0; s < this.nStats; s++) {
      this.data[s].set(block.subarray(s * k * R, (s + 1) * k * R), n * R);
    }
    for (const st of steps) this.steps.push(st);
    for (const [key, cr] of this.colRanges) {
      const [si, log] = key.split("/");
      this.colRanges.set(key, this.columnRanges(Number(si), log === "1", cr, n));
      const r = this.ranges.get(key);
      if (r) this.ranges.set(key, reduceRange(this.colRanges.get(key)!, n, n + k, r));
    }
    for (const [si, f] of this.flags) this.flags.set(si, this.columnFlags(si, f, n));
  }

  /** [vmin, vmax] of statistic si over all columns held (see colors.valueRange). */
  range(si: number, log: boolean): [number, number] {
    if (si < 0 || si >= this.nStats) return [NaN, NaN];
    const key = `${si}/${log ? 1 : 0}`;
    let r = this.ranges.get(key);
    if (!r) {
      let cr = this.colRanges.get(key);
      if (!cr || cr.lo.length < this.nCols) {
        cr = this.columnRanges(si, log, { lo: new Float32Array(0), hi: new Float32Array(0) }, 0);
        this.colRanges.set(key, cr);
      }
      r = reduceRange(cr, 0, this.nCols, [NaN, NaN]);
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

  /** Per-column ranges of statistic si: those of `prev` for the columns before `from`, then
   * computed (NaN for a column without a value on the scale). */
  private columnRanges(si: number, log: boolean, prev: { lo: Float32Array; hi: Float32Array }, from: number): { lo: Float32Array; hi: Float32Array } {
    const C = this.nCols;
    let { lo, hi } = prev;
    if (lo.length < C) {
      const cap = Math.max(C, this.cap);
      const lo2 = new Float32Array(cap);
      const hi2 = new Float32Array(cap);
      lo2.set(lo.subarray(0, from));
      hi2.set(hi.subarray(0, from));
      lo = lo2;
      hi = hi2;
    }
    const d = this.data[si];
    const R = this.nRows;
    for (let c = from; c < C; c++) {
      const [a, b] = valueRange(d.subarray(c * R, c * R + R), R, log);
      lo[c] = a;
      hi[c] = b;
    }
    return { lo, hi };
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

  /** Removes the columns of `steps`: every statistic, flag and per-column range is compacted
   * in place (runs of kept columns move with one copyWithin each). */
  drop(steps: number[]): void {
    const gone = new Set(steps);
    this.revision++;
    const R = this.nRows;
    const C = this.nCols;
    const keep: number[] = []; // [from, to) runs of kept columns
    for (let c = 0; c < C; c++) {
      if (gone.has(this.steps[c])) continue;
      if (keep.length && keep[keep.length - 1] === c) keep[keep.length - 1] = c + 1;
      else keep.push(c, c + 1);
    }
    const move = (a: { copyWithin(t: number, s: number, e: number): unknown }, width: number): void => {
      let w = 0;
      for (let i = 0; i < keep.length; i += 2) {
        if (keep[i] !== w) a.copyWithin(w * width, keep[i] * width, keep[i + 1] * width);
        w += keep[i + 1] - keep[i];
      }
    };
    for (let s = 0; s < this.nStats; s++) move(this.data[s], R);
    for (const cr of this.colRanges.values()) {
      move(cr.lo, 1);
      move(cr.hi, 1);
    }
    const kept: number[] = [];
    for (let i = 0; i < keep.length; i += 2) for (let c = keep[i]; c < keep[i + 1]; c++) kept.push(this.steps[c]);
    for (const [si, f] of this.flags) {
      move(f, 1);
      this.flags.set(si, f.slice(0, kept.length));
    }
    this.steps = kept;
    this.ranges.clear(); // reduced again from the per-column ranges when asked for
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

/** [min, max] of `r` merged with the per-column ranges of columns [c0, c1) (NaN: none). */
function reduceRange(cr: { lo: Float32Array; hi: Float32Array }, c0: number, c1: number, r: [number, number]): [number, number] {
  let lo = Number.isNaN(r[0]) ? Infinity : r[0];
  let hi = Number.isNaN(r[1]) ? -Infinity : r[1];
  for (let c = c0; c < c1; c++) {
    const a = cr.lo[c];
    const b = cr.hi[c];
    if (a < lo) lo = a; // NaN (a column without values) compares false
    if (b > hi) hi = b;
  }
  return lo > hi ? [NaN, NaN] : [lo, hi];
}
