// The suggestions card with and without the loop figure (extra.with_loading). Whether the loop
// hides the step's gain is verify.py's call (loop_figure): the card shows the note it was given.
import assert from "node:assert/strict";
import { test } from "node:test";
import suggestions from "../suggestions";
import { FakeElement, FakeModel, withFakeDom } from "../shared/testing";
import { loopText } from "./loop";

const WAITS_NOTE = "the loop waits for its data: speed up loading to get the step's gain";
const LOOP = { note: WAITS_NOTE, baseline_s: 0.04161, variant_s: 0.04292, speedup: 0.9695, speedup_iqr: [0.95, 0.99], pair_speedups: [0.96, 0.97, 0.98] };

function result(extra: Record<string, unknown> | undefined, speedup = 1.5) {
  return { variant: "bf16 autocast", verdict: "verified", reason: "faster", speedup, speedup_iqr: [1.4, 1.6],
    baseline_s: 0.03, variant_s: 0.02, memory_change: null, loss_drift: 0.001, pairs: 3, steps_per_block: 8, extra };
}

function card(res: unknown): FakeElement {
  return withFakeDom(() => {
    const host = new FakeElement("div");
    const model = new FakeModel<Record<string, unknown>>({
      suggestions: [{ id: "amp", rule: "amp", title: "mixed precision", category: "speed", severity: "info", evidence: {},
        gain: "x1.5", snippet: "", verify_hint: "", can_verify: true, status: "verified", result: res }],
      progress: {}, title: "suggestions", status: "", verify_steps: 8,
    });
    suggestions.render({ model, el: host } as never);
    return host;
  });
}

test("loopText: the line as verify.py writes it, its note, missing numbers as dashes, nothing without with_loading", () => {
  const t = loopText({ timing: "step", with_loading: LOOP })!;
  assert.equal(t.line, "with loading in the loop: 41.61 → 42.92 ms/step, ×0.97");
  assert.equal(t.note, WAITS_NOTE);
  assert.equal(t.detail, "loop with loading: IQR ×0.95–×0.99 over 3 pairs");
  assert.equal(loopText({ with_loading: { ...LOOP, note: "" } })!.note, "", "the loop agrees");
  assert.equal(loopText({ with_loading: { ...LOOP, note: undefined } })!.note, "", "a record without a note (older runs)");
  // non-finite floats arrive as null (core/jsonsafe.py)
  assert.equal(loopText({ with_loading: { baseline_s: null, variant_s: 0.04, speedup: null, speedup_iqr: [null, null] } })!.line,
    "with loading in the loop: ×–");
  assert.equal(loopText({ timing: "loop" }), null);
  assert.equal(loopText(undefined), null);
  assert.equal(loopText({ with_loading: null }), null);
  assert.equal(loopText({ with_loading: {} }), null);
});

test("the card shows the loop figure under the verdict, with the reason when the loop hides the gain", () => {
  const host = card(result({ timing: "step", in_effect: true, with_loading: LOOP }));
  const res = host.byClass("dsn-result")[0];
  assert.equal(host.byClass("dsn-result-head")[0].textContent, "verified — median speed-up ×1.500 on the step");
  const box = host.byClass("dsn-result-loop");
  assert.equal(box.length, 1);
  assert.equal(box[0].parent, res, "inside the verdict box, after its lines");
  assert.equal(res.children[res.children.length - 1], box[0]);
  assert.equal(host.byClass("dsn-result-loop-line")[0].textContent, "with loading in the loop: 41.61 → 42.92 ms/step, ×0.97");
  assert.equal(host.byClass("dsn-result-loop-note")[0].textContent, WAITS_NOTE);
  assert.equal(box[0].dataset.disagrees, "1");
  assert.equal(box[0].title, "loop with loading: IQR ×0.95–×0.99 over 3 pairs");
});

test("a loop that keeps the gain gets the figure without the note", () => {
  const host = card(result({ timing: "step", with_loading: { ...LOOP, baseline_s: 0.031, variant_s: 0.021, speedup: 1.45, note: "" } }));
  assert.equal(host.byClass("dsn-result-loop-line")[0].textContent, "with loading in the loop: 31.00 → 21.00 ms/step, ×1.45");
  assert.equal(host.byClass("dsn-result-loop-note").length, 0);
  assert.equal(host.byClass("dsn-result-loop")[0].dataset.disagrees, "0");
});

test("without with_loading the card is as before", () => {
  for (const extra of [undefined, { timing: "loop" }]) {
    const host = card(result(extra));
    assert.equal(host.byClass("dsn-result-loop").length, 0);
    assert.equal(host.byClass("dsn-result-head")[0].textContent, "verified — median speed-up ×1.500");
    assert.ok(!host.textContent.includes("with loading"));
    assert.ok(host.textContent.includes("30.00 → 20.00 ms/step"));
  }
  assert.equal(card({ error: "RuntimeError: boom" }).byClass("dsn-result-loop").length, 0);
});
