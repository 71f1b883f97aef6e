// Pure logic of the compression panel.
import assert from "node:assert/strict";
import { test } from "node:test";
import { barFraction, columnMax, deltaText, groupSensitivity, harm, msText, speedText, tone } from "./scale";
import type { Row, SensRow } from "./types";

function row(over: Partial<Row>): Row {
  return {
    method: "m", status: "ok", backend: "", params: 10, size_bytes: 100, size_ratio: 1, sparse_bytes: null,
    sparse_format: "", latency_b1_ms: 1, latency_b1_iqr_ms: 0.1, speedup_b1: 1, speedup_b1_lo: 0.9,
    speedup_b1_hi: 1.1, verdict_b1: "same", latency_bN_ms: 2, latency_bN_iqr_ms: 0.1, speedup_bN: 1,
    speedup_bN_lo: 0.9, speedup_bN_hi: 1.1, verdict_bN: "same", metric: 0.9, metric_delta: 0, max_abs_dev: 0,
    rel_dev: 0, agreement: 1, worse: [], warnings: [], notes: [], ...over,
  };
}

test("barFraction and columnMax ignore missing values", () => {
  assert.equal(columnMax([1, null, 4, NaN, 2]), 4);
  assert.equal(columnMax([null]), 0);
  assert.equal(barFraction(2, 4), 0.5);
  assert.equal(barFraction(null, 4), 0);
  assert.equal(barFraction(8, 4), 1);
  assert.equal(barFraction(1, 0), 0);
});

test("tone: worse comes from Python's verdicts, better from size ratio and verdict faster", () => {
  assert.equal(tone(row({}), "size", true), "base");
  assert.equal(tone(row({ worse: ["b1"], verdict_b1: "slower" }), "b1", false), "worse");
  assert.equal(tone(row({ verdict_bN: "faster" }), "bN", false), "better");
  assert.equal(tone(row({ size_ratio: 0.3 }), "size", false), "better");
  assert.equal(tone(row({ size_ratio: 1.0 }), "size", false), "same");
  assert.equal(tone(row({ worse: ["metric"] }), "metric", false), "worse");
  assert.equal(tone(row({ status: "error: x" }), "size", false), "none");
});

test("speed, delta and time text", () => {
  assert.equal(speedText(2.5, 2.1, 3.0, "faster"), "×2.50 faster [2.10–3.00]");
  assert.equal(speedText(0.5, 0.4, 0.6, "slower"), "×0.50 slower [0.40–0.60]");
  assert.equal(speedText(1, 1, 1, "baseline"), "baseline");
  assert.equal(speedText(null, null, null, ""), "");
  assert.equal(speedText(0.0033, 0.0031, 0.0035, "slower"), "×0.0033 slower [0.0031–0.0035]");
  assert.equal(deltaText(-0.0279), "−0.028");
  assert.equal(deltaText(0.5), "+0.50");
  assert.equal(deltaText(0), "±0");
  assert.equal(msText(0.25), "250 µs");
  assert.equal(msText(2.5), "2.50 ms");
});

test("sensitivity: metric drop when there is a metric, deviation otherwise; worst first", () => {
  const s: SensRow[] = [
    { method: "a", layer: "x", type: "Linear", metric: 0.9, metric_delta: -0.01, max_abs_dev: 5 },
    { method: "a", layer: "y", type: "Linear", metric: 0.8, metric_delta: -0.1, max_abs_dev: 1 },
    { method: "b", layer: "x", type: "Linear", metric: 0.9, metric_delta: 0.02, max_abs_dev: 2 },
  ];
  assert.equal(harm(s[1], true, true), 0.1);
  assert.equal(harm(s[2], true, true), 0);
  assert.equal(harm(s[2], true, false), 0.02);
  assert.equal(harm(s[0], false, true), 5);
  const g = groupSensitivity(s, true, true);
  assert.deepEqual(g.map(([m, rows]) => [m, rows.map((r) => r.layer)]), [["a", ["y", "x"]], ["b", ["x"]]]);
  assert.deepEqual(groupSensitivity(s, false, true)[0][1].map((r) => r.layer), ["x", "y"]);
});
