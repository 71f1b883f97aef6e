// The series protocol's browser side: decoding, ordered deltas, gaps, snapshots, following a model.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { applyDelta, applySnapshot, decodeArray, followModel, SeriesDecodeError, SeriesModel, toBytes } from "./series";
import { SeriesStore } from "./store";
import { f32View, FakeModel } from "./testing";

const stats = [{ key: "a", label: "a", log: false }, { key: "b", label: "b", log: true }];
const rows = [{ id: "r0" }, { id: "r1" }, { id: "r2" }];

/** A store for 2 stats x 3 rows holding nothing, at seq 0. */
function emptyStore(): SeriesStore {
  const s = new SeriesStore();
  s.reset(2, 3);
  return s;
}

/** An append of k columns: value = 100*stat + 10*col + row (+ base). */
function append(seq: number, steps: number[], base = 0) {
  const k = steps.length;
  const v: number[] = [];
  for (let s = 0; s < 2; s++) for (let c = 0; c < k; c++) for (let r = 0; r < 3; r++) v.push(base + 100 * s + 10 * c + r);
  return { msg: { type: "append", seq, steps, shape: [2, k, 3], layout: "stat,col,row", dtype: "float32" }, buffers: [f32View(v)] };
}

describe("decodeArray", () => {
  test("float32 with its shape, from an unaligned buffer", () => {
    const a = decodeArray({ dtype: "float32", shape: [2, 1, 3] }, f32View([1, 2, 3, 4.5, NaN, -Infinity]));
    assert.deepEqual(a.shape, [2, 1, 3]);
    assert.equal(a.dtype, "float32");
    assert.deepEqual(Array.from(a.data.subarray(0, 4)), [1, 2, 3, 4.5]);
    assert.ok(Number.isNaN(a.data[4]) && a.data[5] === -Infinity);
  });
  test("the copy does not alias the message buffer", () => {
    const view = f32View([7]);
    const a = decodeArray({ shape: [1] }, view);
    view.setFloat32(0, 9, true);
    assert.equal(a.data[0], 7);
  });
  test("rejects float64, a wrong size, a bad shape or layout", () => {
    assert.throws(() => decodeArray({ dtype: "float64", shape: [1] }, new DataView(new ArrayBuffer(8))), SeriesDecodeError);
    assert.throws(() => decodeArray({ shape: [2, 2] }, f32View([1, 2, 3])), /needs 16 bytes, got 12/);
    assert.throws(() => decodeArray({ shape: [-1] }, f32View([])), SeriesDecodeError);
    assert.throws(() => decodeArray({ shape: [1], layout: "row,col" }, f32View([1])), /layout/);
  });
  test("an empty array decodes from no buffer", () => {
    assert.equal(decodeArray({ shape: [2, 0, 3] }, undefined).data.length, 0);
  });
});

describe("applyDelta", () => {
  test("appends in seq order, drops, and ignores what a snapshot already holds", () => {
    const s = emptyStore();
    const a = append(1, [0, 1]);
    assert.ok(applyDelta(s, a.msg, a.buffers));
    assert.deepEqual(s.steps, [0, 1]);
    assert.equal(s.value(1, 1, 2), 112);
    assert.ok(!applyDelta(s, a.msg, a.buffers), "seq 1 again");
    assert.ok(applyDelta(s, { type: "drop", seq: 2, steps: [0] }, []));
    assert.deepEqual(s.steps, [1]);
    assert.equal(s.value(0, 0, 1), 11);
    assert.equal(s.seq, 2);
    assert.ok(!s.stale && s.gaps === 0);
  });
  test("a gap marks the store stale until a snapshot", () => {
    const s = emptyStore();
    const a = append(2, [5]);
    assert.ok(!applyDelta(s, a.msg, a.buffers));
    assert.ok(s.stale);
    assert.equal(s.gaps, 1);
    assert.deepEqual(s.steps, []);
  });
  test("a header that does not match the store or its buffer is not applied", () => {
    const s = emptyStore();
    const wrongRows = { ...append(1, [0]).msg, shape: [2, 1, 4] };
    assert.ok(!applyDelta(s, wrongRows, append(1, [0]).buffers));
    assert.ok(s.stale);
    const f64 = { ...append(1, [0]).msg, dtype: "float64" };
    const t = emptyStore();
    assert.ok(!applyDelta(t, f64, append(1, [0]).buffers));
    assert.ok(t.stale && t.decodeErrors === 1 && t.seq === 0);
    assert.ok(!applyDelta(emptyStore(), { type: "what", seq: 1, steps: [] }, []));
  });
});

describe("applySnapshot", () => {
  const snapshotOf = (seq: number, steps: number[], values: number[]) =>
    new FakeModel<SeriesModel>({ rows, stats, snapshot: f32View(values), snapshot_meta: { seq, steps, shape: [2, steps.length, 3], dtype: "float32", layout: "stat,col,row" } });

  test("replaces the columns when newer (or forced)", () => {
    const s = emptyStore();
    const m = snapshotOf(3, [4], [1, 2, 3, 4, 5, 6]);
    assert.ok(applySnapshot(m, s, false));
    assert.deepEqual(s.steps, [4]);
    assert.equal(s.value(1, 0, 0), 4);
    assert.equal(s.seq, 3);
    assert.ok(!applySnapshot(m, s, false), "same seq");
    assert.ok(applySnapshot(m, s, true));
    assert.equal(s.snapshots, 2);
  });
  test("a snapshot whose bytes do not match its steps leaves an empty store", () => {
    const s = emptyStore();
    assert.ok(applySnapshot(snapshotOf(1, [0, 1], [1, 2, 3]), s, false));
    assert.deepEqual(s.steps, []);
    assert.equal(s.decodeErrors, 1);
  });
});

describe("followModel", () => {
  test("applies messages and snapshots, rebuilds on new rows, and stops", () => {
    const m = new FakeModel<SeriesModel>({ rows, stats, snapshot: new DataView(new ArrayBuffer(0)), snapshot_meta: { seq: 0, steps: [] } });
    const s = new SeriesStore();
    let notified = 0;
    s.subscribe(() => notified++);
    const stop = followModel(m, s);
    assert.equal(s.nRows, 3);
    const a = append(1, [0]);
    m.send(a.msg, a.buffers);
    assert.deepEqual(s.steps, [0]);
    assert.equal(notified, 1);
    const lost = append(3, [2]);
    m.send(lost.msg, lost.buffers); // seq 2 never arrived
    assert.ok(s.stale);
    assert.equal(notified, 1);
    m.set({ rows: [{ id: "x" }], snapshot_meta: { seq: 4, steps: [] }, snapshot: new DataView(new ArrayBuffer(0)), stats });
    assert.equal(s.nRows, 1);
    assert.ok(!s.stale && s.seq === 4);
    stop();
    for (const ev of ["msg:custom", "change:snapshot_meta", "change:rows", "change:stats"]) assert.equal(m.listeners(ev), 0, ev);
  });
});

test("toBytes views a binary trait without copying", () => {
  const buf = new Uint8Array([9, 1, 2, 3]).buffer;
  const v = toBytes(new DataView(buf, 1, 3));
  assert.deepEqual(Array.from(v), [1, 2, 3]);
  assert.equal(v.buffer, buf);
  assert.equal(toBytes(null).length, 0);
});
