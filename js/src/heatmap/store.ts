// The heatmap's data protocol: the browser-side column store and the two ways it is fed,
// ordered custom messages (applyDelta) and the periodic snapshot trait (applySnapshot).
// graph.ts reuses this protocol for per-node values; the node replay tests drive it too.
import type { AnyModel } from "@anywidget/types";
import { valueRange } from "../colors";

export interface RowInfo {
  name: string;
  module: string;
  tensor: string;
  shape?: number[];
}
export interface StatInfo {
  key: string;
  label: string;
  log: boolean;
}
export interface SnapshotMeta {
  seq?: number;
  steps?: number[];
  shape?: number[];
  truncated?: boolean;
  total_columns?: number;
}
export interface Model {
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
export interface DeltaMsg {
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

export function toFloat32(view: DataView | ArrayBuffer | null | undefined): Float32Array {
  if (!view) return new Float32Array(0);
  if (view instanceof ArrayBuffer) return new Float32Array(view.slice(0));
  // copy: the DataView's byteOffset need not be 4-aligned
  const buf = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  return new Float32Array(buf as ArrayBuffer);
}

export function toBytes(view: DataView | null | undefined): Uint8Array {
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

/** Keep `store` in step with a model on this protocol (deltas, snapshots, shape changes);
 *  used by every widget that carries per-step series. Returns the function that stops it. */
export function followModel(model: AnyModel<Model>, store: Store): () => void {
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
}
