import assert from "node:assert/strict";
import { test } from "node:test";
import ranks from "../ranks";
import { FakeElement, FakeModel, withFakeDom } from "../shared/testing";
import { column, shade, stragglerLine, type Model } from "./model";

const HOSTILE = "<img src=x onerror=alert(1)>";
const COLS: Model["columns"] = [["data", "data loading", "#8e7cc3"], ["fwd_compute", "forward compute", "#3b82c4"],
  ["wait", "waiting for others", "#c0392b"]];

test("a cell's shade is its excess over the fastest rank, as a share of the column's spread", () => {
  assert.equal(shade([0.01, 0.05, 0.03], 0), 0);
  assert.equal(shade([0.01, 0.05, 0.03], 1), 1);
  assert.ok(Math.abs(shade([0.01, 0.05, 0.03], 2) - 0.5) < 1e-12);
  assert.equal(shade([0.02, 0.02], 1), 0);  // equal ranks: nothing stands out
  assert.equal(shade([null, 0.02, 0.04], 0), 0);
  assert.equal(shade([0.02], 0), 0);
  assert.deepEqual(column([[1, 2], [3, null], []], 1), [2, null, null]);
});

test("the straggler sentence names the rank, its score and the phase of its extra work", () => {
  const base = { ranks: [0, 1, 2], scores: [0, 0.41, 0.02], excess: ["bwd", "data", "fwd"], steps: 7, columns: COLS };
  assert.equal(stragglerLine({ ...base, straggler: 1 }),
    "straggler: rank 1 - the job waits for it 41% of every step (its data loading) (medians over 7 sampled steps of 3 ranks)");
  assert.match(stragglerLine({ ...base, straggler: 2, excess: ["", "", "fwd"] }), /\(its forward compute\)/);
  assert.match(stragglerLine({ ...base, straggler: -1 }), /^no straggler/);
  assert.match(stragglerLine({ ...base, ranks: [], straggler: -1 }), /^no per-rank phases yet/);
});

test("the panel draws one row per rank, marks the straggler, and shows Python's labels as text", () => {
  const state: Partial<Model> = { ranks: [0, 1], columns: [...COLS, ["other", HOSTILE, "#888"]],
    matrix: [[0.001, 0.02, 0.03, 0.0], [0.031, 0.02, 0.001, 0.0]], skew: [0.03, 0.0, 0.029, 0.0], scores: [0, 0.48],
    excess: ["fwd", "data"], straggler: 1, steps: 5, selected_rank: -1, status: HOSTILE, title: "ranks" };
  withFakeDom(() => {
    const host = new FakeElement("div");
    const model = new FakeModel<Model>(state);
    ranks.render({ model, el: host } as never);
    const root = host.byClass("dsn-ranks")[0];
    assert.equal(root.dataset.ranks, "2");
    assert.equal(root.dataset.straggler, "1");
    const texts = host.all().map((n) => n.textContent);
    assert.ok(texts.includes(HOSTILE), "a column label is one text node");
    assert.ok(!host.all().some((n) => n.tagName === "IMG"));
    assert.equal(host.byClass("dsn-ranks-row-straggler")[0].textContent, "rank 1 ◀");
    assert.ok(texts.includes("31.0 ms") && texts.includes("48.0%"));
    model.set({ straggler: -1 });
    assert.equal(host.byClass("dsn-ranks")[0].dataset.draws, "2");
    assert.equal(host.byClass("dsn-ranks-row-straggler").length, 0);
  });
});
