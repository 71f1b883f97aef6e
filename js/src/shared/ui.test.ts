// The pure formatting helpers of shared/ui.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatBytes, formatCount, formatSeconds, lumaText, shapeText } from "./ui";

test("shapeText", () => {
  assert.equal(shapeText([16, 8, 8, 8]), "16×8×8×8");
  assert.equal(shapeText([]), "scalar");
  assert.equal(shapeText(null), "");
});

test("formatCount", () => {
  assert.deepEqual([12, 9999, 12345, 2.5e6, 7e9, Infinity].map(formatCount), ["12", "9999", "12.3k", "2.50M", "7.00G", "Infinity"]);
});

test("formatBytes", () => {
  assert.deepEqual([512, 2048, 5 * 1024 ** 2, 123.4 * 1024 ** 3, NaN].map(formatBytes), ["512 B", "2.00 KiB", "5.00 MiB", "123.4 GiB", "–"]);
});

test("formatSeconds", () => {
  assert.deepEqual([2.5, 0.25, 0.0123, 0.0012, 3e-5, NaN].map(formatSeconds), ["2.50 s", "250 ms", "12.3 ms", "1.20 ms", "30 µs", "–"]);
});

test("lumaText: dark text on light fills", () => {
  assert.equal(lumaText([253, 231, 36]), "#111");
  assert.equal(lumaText([68, 1, 84]), "#fff");
});
