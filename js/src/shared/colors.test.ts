// The colour scale (a copy of dsnotebook/widgets/colors.py, which is the source of truth; the
// Python test test_javascript_scale_mirrors_python compares both on thousands of values).
import assert from "node:assert/strict";
import { test } from "node:test";
import { colorIndex, cssRgb, formatFloat32, packLut, packRgb, scale, tickLabel, ticks, valueRange } from "./colors";

test("colorIndex: the cases colors.py's tests pin down", () => {
  assert.equal(colorIndex(1e-3, 1e-3, 10, true), 0);
  assert.equal(colorIndex(10, 1e-3, 10, true), 255);
  assert.equal(colorIndex(0.1, 1e-3, 10, true), 128, "2 of 4 decades -> 127.5 -> 128");
  assert.equal(colorIndex(5, 0, 10, false), 128);
  assert.equal(colorIndex(0, 1e-3, 10, true), 0, "zero on a log scale: bottom");
  assert.equal(colorIndex(-1, 1e-3, 10, true), 0);
  assert.equal(colorIndex(Infinity, 1e-3, 10, true), 255);
  assert.equal(colorIndex(-Infinity, 0, 1, false), 0);
  assert.equal(colorIndex(100, 1e-3, 10, true), 255, "clamped");
  assert.equal(colorIndex(NaN, 0, 1, false), -1, "no data: the NaN colour");
  assert.equal(colorIndex(0.5, NaN, NaN, false), -1, "no range");
  assert.equal(colorIndex(3, 3, 3, true), 128, "zero-width range: middle");
});

test("scale() is colorIndex with the logs computed once", () => {
  const f = scale(2e-4, 7.5, true);
  for (const v of [1e-5, 2e-4, 3e-3, 0.5, 7.5, 9, NaN, -2]) assert.equal(f(v), colorIndex(v, 2e-4, 7.5, true), String(v));
});

test("valueRange: finite values; positive ones on a log scale", () => {
  const v = new Float32Array([NaN, 0, -1, 1e-4, 5, Infinity, -Infinity]);
  assert.deepEqual(valueRange(v, v.length, true), [Math.fround(1e-4), 5]);
  assert.deepEqual(valueRange(v, v.length, false), [-1, 5]);
  assert.deepEqual(valueRange(v, 3, false), [-1, 0], "only the first `count` values");
  assert.ok(valueRange(new Float32Array([NaN, 0]), 2, true).every(Number.isNaN));
});

test("ticks: decades on a log scale, 1-2-5 steps on a linear one", () => {
  assert.deepEqual(ticks(1e-3, 10, true), [1e-3, 1e-2, 1e-1, 1, 10]);
  assert.deepEqual(ticks(2, 5, true), [2, 5], "less than a decade: the ends");
  assert.deepEqual(ticks(0, 1, false), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1]);
  assert.deepEqual(ticks(3, 3, false), [3]);
  assert.deepEqual(ticks(NaN, 1, false), []);
  const many = ticks(1e-12, 1e12, true);
  assert.ok(many.length <= 7 && many[0] === 1e-12, String(many));
});

test("tickLabel and formatFloat32 read like numpy", () => {
  assert.deepEqual([0, 0.01, 1, 1000, 1e-5, 2.5e6, -0.5].map(tickLabel), ["0", "0.01", "1", "1000", "1e-5", "2.5e6", "-0.5"]);
  assert.equal(formatFloat32(Math.fround(0.1)), "0.1");
  assert.equal(formatFloat32(Math.fround(1 / 3)), "0.33333334");
  assert.equal(formatFloat32(Math.fround(3.4e38)), "3.4e+38");
  assert.deepEqual([NaN, Infinity, -Infinity, 0].map(formatFloat32), ["no data", "inf", "-inf", "0"]);
});

test("packed LUT entries are little-endian RGBA words", () => {
  assert.equal(packRgb([1, 2, 3]), 0xff030201);
  const lut = packLut(new Uint8Array([0x44, 0x01, 0x54, 0xfd, 0xe7, 0x24]));
  const bytes = new Uint8Array(lut.buffer);
  assert.deepEqual(Array.from(bytes), [0x44, 0x01, 0x54, 255, 0xfd, 0xe7, 0x24, 255]);
  assert.equal(cssRgb([1, 2, 3]), "rgb(1, 2, 3)");
});
