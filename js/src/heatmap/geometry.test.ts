// The heatmap's geometry: cell sizes and aggregation, hit-testing, drags, bins.
import assert from "node:assert/strict";
import { test } from "node:test";
import { binMarks, binMax, cellAt, computeGeometry, dragColumns, ellipsize, lowerBound, measureLabels, visibleColumns } from "./geometry";

const labels = { rows: null, modW: 60, tenW: 40 };

test("few columns: wide cells; many: aggregated into bins of one pixel", () => {
  const few = computeGeometry(3, 0, 10, labels, 800);
  assert.equal(few.agg, 1);
  assert.equal(few.nBins, 10);
  assert.equal(few.cellW, 24, "capped");
  assert.equal(few.cellH, 18);
  assert.equal(few.x0, 70 + 48 + 4);
  const many = computeGeometry(2000, 0, 5000, labels, 800);
  const plotMax = 800 - 12 - many.x0 - 34;
  assert.equal(many.cellW, 1);
  assert.equal(many.agg, Math.ceil(5000 / plotMax));
  assert.ok(many.nBins * many.agg >= 5000 && (many.nBins - 1) * many.agg < 5000);
  assert.equal(many.cellH, 1);
  assert.equal(many.tensorColW, 0, "rows too thin for tensor names");
  assert.equal(computeGeometry(3, 0, 0, labels, 800).nBins, 0);
});

test("cellAt maps a point to its bin, row and data columns", () => {
  const g = computeGeometry(4, 10, 300, labels, 400); // zoomed: columns 10..309, 2 per bin
  assert.equal(g.agg, 2);
  const x = g.x0 + 2.5 * g.cellW;
  const y = g.y0 + 1.5 * g.cellH;
  assert.deepEqual(cellAt(g, x, y, 4, 400), { bin: 2, row: 1, c0: 10 + 2 * g.agg, c1: 10 + 3 * g.agg });
  assert.equal(cellAt(g, g.x0 - 1, y, 4, 400), null, "on the labels");
  assert.equal(cellAt(g, x, g.y0 + 4 * g.cellH, 4, 400), null, "below the rows");
  const last = cellAt(g, g.x0 + (g.nBins - 0.5) * g.cellW, y, 4, 400);
  assert.equal(last && last.c1, 310, "the last bin ends at the visible columns");
  assert.equal(cellAt(g, x, y, 4, 12), null, "past the data held");
});

test("dragColumns: a drag's column span; a click is none", () => {
  const g = computeGeometry(2, 0, 20, labels, 800);
  assert.deepEqual(dragColumns(g, g.x0 + 3.5 * g.cellW, g.x0 + 7.2 * g.cellW), [3, 7]);
  assert.deepEqual(dragColumns(g, g.x0 + 7.2 * g.cellW, g.x0 + 3.5 * g.cellW), [3, 7], "either direction");
  assert.equal(dragColumns(g, g.x0 + 5, g.x0 + 6), null);
});

test("visibleColumns: the zoomed step range; too narrow shows everything", () => {
  const steps = [0, 2, 4, 6, 8, 10];
  assert.deepEqual(visibleColumns(steps, null), [0, 6]);
  assert.deepEqual(visibleColumns(steps, { start: 3, end: 8 }), [2, 3]);
  assert.equal(visibleColumns(steps, { start: 3, end: 5 }), null);
  assert.equal(lowerBound(steps, 5), 3);
});

test("binMax: max over a bin's columns; NaN never wins, -inf does", () => {
  const R = 3;
  // columns: [1, NaN, -inf], [5, NaN, -inf], [2, NaN, NaN]
  const vals = new Float32Array([1, NaN, -Infinity, 5, NaN, -Infinity, 2, NaN, NaN]);
  const out = new Float32Array(R);
  binMax(vals, R, 0, 3, out);
  assert.equal(out[0], 5);
  assert.ok(Number.isNaN(out[1]));
  assert.equal(out[2], -Infinity, "a -inf gradient is data (the bottom colour), not 'no data'");
  binMax(vals, R, 2, 3, out);
  assert.deepEqual([out[0], Number.isNaN(out[1])], [2, true]);
});

test("binMarks: rows with a mark in a flagged column of the bin", () => {
  const marks = new Float32Array([0, 0, 0, 0, 3, 0, 0, 0, 1]);
  const out = new Uint8Array(3);
  binMarks(marks, new Uint8Array([0, 1, 1]), 3, 0, 3, out);
  assert.deepEqual(Array.from(out), [0, 1, 1]);
  binMarks(marks, new Uint8Array([0, 1, 0]), 3, 2, 3, out);
  assert.deepEqual(Array.from(out), [0, 0, 0], "column 2 is not flagged");
});

test("labels: measured once per rows array, ellipsized to fit", () => {
  const width = (s: string) => s.length * 6;
  const rows = [{ name: "a.w", module: "encoder.layer", tensor: "weight" }, { name: "w", module: "", tensor: "w" }];
  let calls = 0;
  const counting = (s: string) => (calls++, width(s));
  const m = measureLabels(counting, rows, { rows: null, modW: 0, tenW: 0 });
  assert.deepEqual([m.modW, m.tenW], [13 * 6, 6 * 6]);
  assert.equal(measureLabels(counting, rows, m), m);
  assert.equal(calls, 4);
  assert.equal(ellipsize(width, "encoder.layer", 40), "encod…");
  assert.equal(ellipsize(width, "fc", 40), "fc");
});
