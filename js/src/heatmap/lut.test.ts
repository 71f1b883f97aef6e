// The table colour map equals the exact scale (shared/colors.ts) for every float32 tried.
import assert from "node:assert/strict";
import { test } from "node:test";
import { packLut, packRgb, scale } from "../shared/colors";
import { ColorMap, colorRun, keyValue, orderKey } from "./lut";

const lut = packLut(Uint8Array.from({ length: 768 }, (_, i) => (i * 37 + (i >> 3)) & 255));
const nanPx = packRgb([128, 128, 128]);

/** Random float32 bit patterns over every exponent, plus the values near each run start. */
function samples(cm: ColorMap, n: number): Float32Array {
  const out = new Float32Array(n + 255 * 3 + 12);
  const bits = new Int32Array(out.buffer);
  let seed = 7;
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
    bits[i] = seed;
  }
  let j = n;
  for (const k of cm.starts) {
    if (!Number.isFinite(k) || k > 2147483647) continue;
    for (const d of [-1, 0, 1]) out[j++] = keyValue(k + d);
  }
  for (const v of [0, -0, Infinity, -Infinity, NaN, cm.lo, cm.hi, 1e-45, -1e-45, 3.4e38, -3.4e38, 1]) out[j++] = v;
  return out.subarray(0, j);
}

function check(lo: number, hi: number, log: boolean): number {
  const cm = new ColorMap(lo, hi, log, lut, nanPx);
  const exact = scale(lo, hi, log);
  const vals = samples(cm, 200000);
  const bits = new Int32Array(vals.buffer, vals.byteOffset, vals.length);
  let steps = 0;
  for (let i = 0; i < vals.length; i++) {
    const idx = exact(vals[i]);
    const want = idx < 0 ? nanPx : lut[idx];
    assert.equal(cm.colorOfBits(bits[i]) >>> 0, want, `value ${vals[i]} on [${lo}, ${hi}] log=${log}`);
    const k = orderKey(bits[i]);
    for (let run = cm.runAt[(k >> 16) + 32768]; k >= cm.starts[run]; run++) steps++;
  }
  const out = new Int32Array(vals.length);
  colorRun(cm, bits, 0, vals.length, out, 0, 1);
  for (let i = 0; i < vals.length; i++) assert.equal(out[i], cm.colorOfBits(bits[i]));
  return steps / vals.length;
}

test("orderKey sorts float32 values like the values, keyValue inverts it", () => {
  const vs = [-Infinity, -3e38, -1, -1e-40, -0, 0, 1e-45, 1e-3, 1, 7.5, 3e38, Infinity];
  const f = new Float32Array(vs);
  const keys = Array.from(new Int32Array(f.buffer), orderKey);
  const nanKeys = Array.from(new Int32Array(new Float32Array([NaN, -NaN]).buffer), orderKey);
  assert.ok(nanKeys.every((k) => k > keys[keys.length - 1] || k < keys[0]), "NaN keys lie outside -inf..+inf");
  for (let i = 1; i < keys.length; i++) assert.ok(keys[i] > keys[i - 1], `${vs[i - 1]} < ${vs[i]}`);
  for (let i = 0; i < keys.length; i++) assert.ok(Object.is(keyValue(keys[i]), f[i]), String(vs[i]));
});

test("ColorMap equals the exact scale: log, linear, negative, flat, no range", () => {
  const steps = check(Math.fround(2.3e-7), Math.fround(41.5), true);
  assert.ok(steps < 0.1, `the bucket table all but answers a cell (${steps} steps per cell)`);
  check(Math.fround(-3.5), Math.fround(12.25), false);
  check(Math.fround(1e-30), Math.fround(1e30), true);
  check(0, 1, false);
  check(5, 5, true);
  check(-2, -2, false);
  const none = new ColorMap(NaN, NaN, true, lut, nanPx);
  for (const v of [1, 0, NaN, Infinity]) assert.equal(none.colorOfBits(new Int32Array(new Float32Array([v]).buffer)[0]) >>> 0, nanPx);
});

test("a LUT of another length: entries past its end take the NaN colour, as in the exact scale", () => {
  const short = packLut(new Uint8Array([0, 0, 0, 255, 255, 255]));
  const cm = new ColorMap(1, 10, false, short, nanPx);
  const exact = scale(1, 10, false);
  for (const v of [1, 1.01, 5, 10, 0, NaN]) {
    const idx = exact(v);
    const bits = new Int32Array(new Float32Array([v]).buffer)[0];
    assert.equal(cm.colorOfBits(bits) >>> 0, idx < 0 ? nanPx : short[idx] ?? nanPx, String(v));
  }
});
