// The browser's column store: growth, incremental range and flags, drop, lookups.
import assert from "node:assert/strict";
import { test } from "node:test";
import { valueRange } from "./colors";
import { SeriesStore } from "./store";

/** k columns of 2 stats x 3 rows, stat 0 = col + 0.1 * row + 1, stat 1 = 1 where col % 7 == 3 (row 2). */
function block(c0: number, k: number): Float32Array {
  const out = new Float32Array(2 * k * 3);
  for (let c = 0; c < k; c++) {
    for (let r = 0; r < 3; r++) {
      out[c * 3 + r] = c0 + c + 0.1 * r + 1;
      out[k * 3 + c * 3 + r] = (c0 + c) % 7 === 3 && r === 2 ? 1 : 0;
    }
  }
  return out;
}

test("appends grow past the initial capacity and keep every column", () => {
  const s = new SeriesStore();
  s.reset(2, 3);
  for (let c0 = 0; c0 < 40; c0 += 5) s.appendBlock([0, 1, 2, 3, 4].map((i) => c0 + i), block(c0, 5));
  assert.equal(s.nCols, 40);
  assert.ok(s.cap >= 40);
  assert.equal(s.value(0, 37, 1), Math.fround(37 + 0.1 + 1));
  assert.ok(Number.isNaN(s.value(0, 40, 0)) && Number.isNaN(s.value(2, 0, 0)) && Number.isNaN(s.value(0, 0, 3)));
  assert.throws(() => s.appendBlock([99], new Float32Array(5)), /block of 5 values/);
});

test("the incremental range equals a full recomputation, and drop resets it", () => {
  const s = new SeriesStore();
  s.reset(2, 3);
  s.appendBlock([0, 1], block(0, 2));
  assert.deepEqual(s.range(0, true), [1, Math.fround(2.2)]);
  const weird = block(2, 2);
  weird[0] = Infinity;
  weird[1] = NaN;
  weird[2] = -5;
  s.appendBlock([2, 3], weird);
  for (const log of [true, false]) {
    assert.deepEqual(s.range(0, log), valueRange(s.data[0], s.nCols * s.nRows, log), `log=${log}`);
  }
  assert.equal(s.range(0, false)[0], -5);
  assert.equal(s.range(0, true)[0], 1, "non-positive values are off a log scale");
  s.drop([0, 1]);
  assert.deepEqual(s.steps, [2, 3]);
  assert.equal(s.range(0, true)[0], 4, "the +inf, NaN and -5 of step 2 are off the scale");
  assert.deepEqual(s.range(5, false).map(Number.isNaN), [true, true]);
});

test("marked columns follow appends and drops", () => {
  const s = new SeriesStore();
  s.reset(2, 3);
  s.appendBlock([0, 1, 2, 3, 4], block(0, 5));
  assert.deepEqual(Array.from(s.marked(1)), [0, 0, 0, 1, 0]);
  s.appendBlock([5, 6, 7, 8, 9, 10], block(5, 6));
  assert.deepEqual(Array.from(s.marked(1)), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]);
  s.drop([3]);
  assert.deepEqual(Array.from(s.marked(1)), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
});

test("columnAt: the latest column at or before a step", () => {
  const s = new SeriesStore();
  s.reset(1, 1);
  assert.equal(s.columnAt(5), -1);
  s.appendBlock([2, 4, 8], new Float32Array(3));
  assert.equal(s.columnAt(-1), 2);
  assert.equal(s.columnAt(0), 0, "before the first step: the first column");
  assert.equal(s.columnAt(4), 1);
  assert.equal(s.columnAt(7), 1);
  assert.equal(s.columnAt(100), 2);
});

test("subscribers hear changed() until they unsubscribe", () => {
  const s = new SeriesStore();
  let n = 0;
  const off = s.subscribe(() => n++);
  s.changed();
  off();
  s.changed();
  assert.equal(n, 1);
  assert.equal(s.version, 2);
});

test("ranges and flags kept through many drops equal a full recomputation", () => {
  let seed = 5;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) | 0) >>> 0) / 4294967296;
  const s = new SeriesStore();
  s.reset(2, 4);
  let step = 0;
  for (let it = 0; it < 200; it++) {
    if (rand() < 0.6 || s.nCols < 5) {
      const k = 1 + Math.floor(rand() * 4);
      const steps = Array.from({ length: k }, () => ++step);
      const b = new Float32Array(2 * k * 4);
      for (let i = 0; i < k * 4; i++) {
        const u = rand();
        b[i] = u < 0.1 ? NaN : u < 0.15 ? Infinity : u < 0.2 ? -3 * rand() : 10 ** (6 * rand() - 3);
        b[k * 4 + i] = rand() < 0.05 ? 1 : 0;
      }
      s.appendBlock(steps, b);
    } else {
      const at = Math.floor(rand() * s.nCols);
      s.drop(s.steps.slice(at, at + 1 + Math.floor(rand() * 3)));
    }
    for (const log of [true, false]) {
      assert.deepEqual(s.range(0, log), valueRange(s.data[0], s.nCols * s.nRows, log), `iteration ${it}, log=${log}`);
    }
    const flags = Array.from({ length: s.nCols }, (_, c) => (s.data[1].subarray(c * 4, c * 4 + 4).some((v) => v > 0) ? 1 : 0));
    assert.deepEqual(Array.from(s.marked(1)), flags, `flags at iteration ${it}`);
  }
});

test("revision counts every change of the columns, epoch every reset", () => {
  const s = new SeriesStore();
  s.reset(2, 3);
  const [r0, e0] = [s.revision, s.epoch];
  s.appendBlock([0, 1], block(0, 2));
  s.drop([0]);
  assert.equal(s.revision, r0 + 2);
  assert.equal(s.epoch, e0);
  s.reset(2, 3);
  assert.equal(s.epoch, e0 + 1);
});
