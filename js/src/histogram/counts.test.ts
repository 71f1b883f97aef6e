// The histogram panel's pure parts: exact counts from two float32 planes (also above 2^24),
// the bin span, column aggregation and hit-testing, and the tooltip's text; plus the panel's
// text-is-text check with a hostile tensor name.
import assert from "node:assert/strict";
import { test } from "node:test";
import histogram from "../histogram";
import { SeriesStore } from "../shared/store";
import { FakeElement, FakeModel, withFakeDom } from "../shared/testing";
import { binSpan, cellAt, computeGeometry, count, countRange, maxCount, rowLabel, SPLIT, tooltipLines } from "./counts";
import type { BinRow } from "./types";

const R = 65; // 64 bins + non-finite, as the Python feeder sends (views/histograms.bin_rows)
const rows: BinRow[] = Array.from({ length: R }, (_, b) => ({
  name: b === R - 1 ? "non-finite" : b === 0 ? "0" : `[2^${b - 47}, 2^${b - 46})`,
  bin: b,
  exp: b === 0 || b === R - 1 ? null : b - 47,
}));

/** A store holding `cols` (each a map row -> exact count) split into lo/hi planes as Python does. */
function storeOf(steps: number[], cols: Array<Record<number, number>>): SeriesStore {
  const s = new SeriesStore();
  s.reset(2, R);
  const k = steps.length;
  const block = new Float32Array(2 * k * R);
  cols.forEach((col, c) => {
    for (const [r, v] of Object.entries(col)) {
      block[0 * k * R + c * R + Number(r)] = v % SPLIT;
      block[1 * k * R + c * R + Number(r)] = Math.floor(v / SPLIT);
    }
  });
  s.appendBlock(steps, block);
  return s;
}

test("counts above 2^24 are exact (two float32 planes)", () => {
  const big = 2 ** 24 + 1; // float32 alone would read 2^24
  const huge = 3 * 2 ** 32 + 12345; // beyond uint32 too
  const s = storeOf([7, 8], [{ 30: big }, { 30: huge, 31: 1 }]);
  assert.equal(Math.fround(big), 2 ** 24, "float32 alone rounds it");
  assert.equal(count(s, 0, 30), big);
  assert.equal(count(s, 1, 30), huge);
  assert.equal(maxCount(s, 30, 0, 2), huge);
  assert.deepEqual(countRange(s, 30, 31), [1, huge]);
});

test("bin span covers the bins in use only; zeros and non-finite rows are apart", () => {
  const s = storeOf([0, 1, 2], [{ 0: 5, 20: 1 }, { 25: 3, 64: 2 }, { 22: 1 }]);
  assert.deepEqual(binSpan(s, R), [20, 25]);
  assert.equal(binSpan(storeOf([0], [{ 0: 4, 64: 1 }]), R), null);
  assert.equal(rowLabel(rows, 64), "non-finite");
  assert.equal(rowLabel(rows, 0), "0 (exact)");
  assert.equal(rowLabel(rows, 20), "2^-27");
});

test("columns aggregate when they do not fit; cellAt finds rows and columns", () => {
  const g = computeGeometry(1000, [20, 25], 96 + 12 + 500);
  assert.equal(g.agg, 4); // 1000 columns x 2 px minimum in 500 px
  assert.equal(g.nBins, 250);
  const g1 = computeGeometry(10, [20, 25], 800);
  assert.equal(g1.agg, 1);
  assert.equal(g1.cellW, 16);
  const x = g1.x0 + 3 * g1.cellW + 1;
  assert.deepEqual(cellAt(g1, x, g1.nfY + 1, 10, 64), { row: 64, c0: 3, c1: 4 });
  assert.deepEqual(cellAt(g1, x, g1.zeroY + 1, 10, 64), { row: 0, c0: 3, c1: 4 });
  assert.deepEqual(cellAt(g1, x, g1.binsY + 1, 10, 64), { row: 25, c0: 3, c1: 4 }, "largest bin on top");
  assert.deepEqual(cellAt(g1, x, g1.binsY + 5 * g1.cellH + 1, 10, 64), { row: 20, c0: 3, c1: 4 });
  assert.equal(cellAt(g1, g1.x0 - 1, g1.binsY + 1, 10, 64), null, "labels are not cells");
  assert.equal(cellAt(g1, x, g1.zeroY - 2, 10, 64), null, "the gap is not a cell");
});

test("tooltip: exact count with thousands separators, share of numel, non-finite at the step", () => {
  const s = storeOf([10, 11, 12], [{ 30: 2 ** 24 + 1, 64: 3 }, { 30: 5 }, { 30: 7 }]);
  assert.deepEqual(tooltipLines(s, rows, 30, 0, 1, 2 ** 25), [
    "step 10", "|g| in [2^-17, 2^-16)", "count: 16,777,217 (50.0% of 33,554,432)", "non-finite at this step: 3"]);
  assert.deepEqual(tooltipLines(s, rows, 30, 1, 3, 0), ["steps 11–12 (max of 2)", "|g| in [2^-17, 2^-16)", "count: 7"]);
  assert.equal(tooltipLines(s, rows, 64, 0, 1, 0)[1], "non-finite elements (NaN, ±inf)");
});

test("the panel shows the tensor name as text", () => {
  const HOSTILE = "<img src=x onerror=alert(1)>.weight";
  withFakeDom(() => {
    const g = globalThis as Record<string, unknown>;
    const saved = { ResizeObserver: g.ResizeObserver, getComputedStyle: g.getComputedStyle };
    g.ResizeObserver = class { observe() {} disconnect() {} };
    g.getComputedStyle = () => ({ color: "#222" });
    try {
      const host = new FakeElement("div");
      const model = new FakeModel<Record<string, unknown>>({ rows, stats: [], tensor: HOSTILE, numel: 10, shape: [2, 5],
        title: "log2|g| histogram over steps", status: "", snapshot_meta: {} });
      const panel = histogram();
      panel.render({ model: model as never, el: host } as never);
      const t = host.all().map((n) => n.textContent);
      assert.ok(t.includes(HOSTILE), "the tensor name is one text node");
      assert.ok(!host.all().some((n) => n.tagName === "IMG"));
    } finally {
      g.ResizeObserver = saved.ResizeObserver;
      g.getComputedStyle = saved.getComputedStyle;
    }
  });
});
