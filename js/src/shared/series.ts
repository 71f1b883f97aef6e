// The series protocol, browser side (the kernel side is dsnotebook/widgets/series.py):
// every panel whose rows carry per-step values (heatmap, graph) follows its model with it.
//
//  * custom message {type: "append", seq, steps, shape: [S, k, R], layout: "stat,col,row",
//    dtype: "float32"} + one buffer: k new columns;
//  * custom message {type: "drop", seq, steps}: columns removed;
//  * traits snapshot (bytes, shape [S, C, R]) + snapshot_meta {seq, steps, shape, ...}: the
//    state after message seq.
// Deltas apply strictly in seq order; after a gap the store is stale until a snapshot with a
// higher seq arrives (messages sent before this model existed are lost).
import type { AnyModel } from "@anywidget/types";
import { SeriesStore } from "./store";

export const LAYOUT = "stat,col,row";

export interface StatInfo {
  key: string;
  label: string;
  log: boolean;
}
export interface SnapshotMeta {
  seq?: number;
  steps?: number[];
  shape?: number[];
  layout?: string;
  dtype?: string;
  truncated?: boolean;
  total_columns?: number;
}
/** The traits every series panel has (rows are panel-specific records). */
export interface SeriesModel {
  rows: unknown[];
  stats: StatInfo[];
  snapshot: DataView;
  snapshot_meta: SnapshotMeta;
}
export interface DeltaMsg {
  type: string;
  seq: number;
  steps: number[];
  shape?: number[];
  layout?: string;
  dtype?: string;
}
/** The JSON header that describes one binary buffer. */
export interface ArrayHeader {
  dtype?: string;
  shape?: number[];
  layout?: string;
}
export interface DecodedArray {
  data: Float32Array;
  dtype: "float32";
  shape: number[];
}

/** A header/buffer pair that does not describe a float32 array of its shape. */
export class SeriesDecodeError extends Error {}

type Binary = DataView | ArrayBuffer | ArrayBufferView | null | undefined;

/** The bytes of a binary trait or message buffer, copied (a DataView's offset need not be
 * 4-aligned, and the copy outlives the message). */
export function copyBytes(view: Binary): ArrayBuffer {
  if (!view) return new ArrayBuffer(0);
  if (view instanceof ArrayBuffer) return view.slice(0);
  return (view.buffer as ArrayBuffer).slice(view.byteOffset, view.byteOffset + view.byteLength);
}

export function toFloat32(view: Binary): Float32Array {
  return new Float32Array(copyBytes(view));
}

/** A read-only byte view (no copy), e.g. of the colour LUT trait. */
export function toBytes(view: Binary): Uint8Array {
  if (!view) return new Uint8Array(0);
  if (view instanceof ArrayBuffer) return new Uint8Array(view);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Decodes `buffer` as the array its header describes: float32 only (never float64 on this
 * wire), row-major `shape`, exactly prod(shape) * 4 bytes; throws SeriesDecodeError otherwise. */
export function decodeArray(header: ArrayHeader, buffer: Binary): DecodedArray {
  const dtype = header.dtype ?? "float32";
  if (dtype !== "float32") throw new SeriesDecodeError(`dtype ${dtype}: only float32 is sent`);
  if (header.layout !== undefined && header.layout !== LAYOUT)
    throw new SeriesDecodeError(`layout ${header.layout}: expected ${LAYOUT}`);
  const shape = header.shape ?? [];
  if (!shape.every((d) => Number.isInteger(d) && d >= 0))
    throw new SeriesDecodeError(`bad shape ${JSON.stringify(shape)}`);
  const n = shape.reduce((a, d) => a * d, 1);
  const bytes = copyBytes(buffer);
  if (bytes.byteLength !== n * 4)
    throw new SeriesDecodeError(`shape ${shape.join("x")} needs ${n * 4} bytes, got ${bytes.byteLength}`);
  return { data: new Float32Array(bytes), dtype: "float32", shape };
}

/** Replaces the store's columns by the snapshot traits when they are newer than what it holds
 * (or always with `force`, e.g. after rows/stats changed); true when applied. */
export function applySnapshot(model: Pick<AnyModel<SeriesModel>, "get">, store: SeriesStore, force: boolean): boolean {
  const meta = model.get("snapshot_meta") || {};
  const seq = meta.seq ?? 0;
  const nRows = (model.get("rows") || []).length;
  const nStats = (model.get("stats") || []).length;
  const shapeOk = store.nRows === nRows && store.nStats === nStats;
  if (!force && shapeOk && seq <= store.seq) return false;
  const steps = meta.steps || [];
  store.reset(nStats, nRows);
  try {
    const arr = decodeArray({ dtype: meta.dtype, layout: meta.layout, shape: [nStats, steps.length, nRows] }, model.get("snapshot"));
    store.appendBlock(steps, arr.data);
  } catch (e) {
    if (!(e instanceof SeriesDecodeError)) throw e;
    store.decodeErrors++; // an empty store until the next snapshot
  }
  store.seq = seq;
  store.stale = false;
  store.snapshots++;
  return true;
}

/** Applies one custom message if it is the next in order; true when the store changed. */
export function applyDelta(store: SeriesStore, msg: DeltaMsg, buffers: DataView[]): boolean {
  if (!msg || typeof msg.seq !== "number") return false;
  if (msg.seq <= store.seq) return false; // already contained in a snapshot
  if (msg.seq !== store.seq + 1) {
    store.stale = true; // a gap: wait for the next snapshot
    store.gaps++;
    return false;
  }
  if (msg.type === "append") {
    const shape = msg.shape || [];
    if (shape[0] !== store.nStats || shape[2] !== store.nRows || shape[1] !== msg.steps.length) {
      store.stale = true;
      return false;
    }
    try {
      store.appendBlock(msg.steps, decodeArray(msg, buffers && buffers[0]).data);
    } catch (e) {
      if (!(e instanceof SeriesDecodeError)) throw e;
      store.decodeErrors++;
      store.stale = true;
      return false;
    }
  } else if (msg.type === "drop") {
    store.drop(msg.steps);
  } else {
    return false;
  }
  store.seq = msg.seq;
  return true;
}

/** The part of an anywidget model followModel needs (so tests can pass a plain object). */
export type FollowedModel = Pick<AnyModel<SeriesModel>, "get" | "on" | "off">;

/** Keeps `store` in step with a model on this protocol (deltas, snapshots, shape changes) and
 * notifies the store's subscribers; returns the function that stops it. */
export function followModel(model: FollowedModel, store: SeriesStore): () => void {
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
