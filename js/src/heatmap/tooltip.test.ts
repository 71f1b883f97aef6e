// The tooltip's lines (text only: a hostile module name stays a string).
import assert from "node:assert/strict";
import { test } from "node:test";
import { SeriesStore } from "../shared/store";
import { FakeElement, withFakeDom } from "../shared/testing";
import { showTooltip, tooltipLines } from "./tooltip";

const HOSTILE = "<img src=x onerror=alert(1)>";

function store(): SeriesStore {
  const s = new SeriesStore();
  s.reset(2, 2); // stat 0 = value, stat 1 = non-finite count
  s.appendBlock([10, 11, 12], new Float32Array([0.5, 1, 2, NaN, 0.25, 4, /* marks */ 0, 0, 0, 3, 0, 1]));
  return s;
}

test("one column: its step and value; a bin: the step range and its max", () => {
  const s = store();
  const row = { name: `${HOSTILE}.weight`, module: HOSTILE, tensor: "weight", shape: [16, 8] };
  const st = { key: "norm", label: "grad norm", log: true };
  const one = tooltipLines(s, { bin: 0, row: 1, c0: 0, c1: 1 }, row, st, 0, 1);
  assert.deepEqual(one, [
    ["dsn-tt-module", `module: ${HOSTILE}`],
    ["dsn-tt-tensor", "tensor: weight  [16×8]"],
    ["dsn-tt-step", "step: 10"],
    ["dsn-tt-value", "grad norm: 1"],
  ]);
  const bin = tooltipLines(s, { bin: 0, row: 1, c0: 0, c1: 3 }, row, st, 0, 1);
  assert.equal(bin[2][1], "steps: 10–12 (max of 3)");
  assert.equal(bin[3][1], "grad norm: 4");
  assert.deepEqual(bin[4], ["dsn-tt-mark", "non-finite values: 4"]);
  const noData = tooltipLines(s, { bin: 1, row: 1, c0: 1, c1: 2 }, undefined, undefined, 0, -1);
  assert.equal(noData[0][1], "module: ?");
  assert.equal(noData[3][1], "value: no data");
});

test("the tooltip puts each line in as text", () => {
  withFakeDom(() => {
    const tip = new FakeElement("div");
    const root = new FakeElement("div");
    showTooltip(tip as never, root as never, new FakeElement("canvas") as never, 5, 5, [["dsn-tt-module", `module: ${HOSTILE}`]]);
    assert.equal(tip.children.length, 1);
    assert.equal(tip.children[0].textContent, `module: ${HOSTILE}`);
    assert.equal(tip.style.display, "block");
  });
});
