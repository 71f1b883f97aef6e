// The suggestions panel rebuilds a card only when what it shows changed: a progress tick of one
// verification must not replace the other cards (a user's focus or a half-read card would go).
import assert from "node:assert/strict";
import { test } from "node:test";
import suggestions from "../suggestions";
import { FakeElement, FakeModel, withFakeDom } from "../shared/testing";

const sugg = (id: string, extra: Record<string, unknown> = {}) => ({
  id, rule: id, title: id, category: "speed", severity: "info", evidence: {}, gain: "x1.2", snippet: "",
  verify_hint: "", can_verify: true, status: "open", result: null, ...extra,
});

function cardsOf(host: FakeElement): FakeElement[] {
  const root = host.children[0];
  return root.children.find((c) => c.className === "dsn-cards")!.children;
}

test("cards keep their nodes across unrelated redraws and are rebuilt when they change", () => {
  withFakeDom(() => {
    const host = new FakeElement("div");
    const model = new FakeModel<Record<string, unknown>>({
      suggestions: [sugg("a"), sugg("b")], progress: {}, title: "suggestions", status: "",
    });
    suggestions.render({ model, el: host } as never);
    const [a0, b0] = cardsOf(host);
    model.set({ status: "advised at step 8" });
    assert.deepEqual(cardsOf(host), [a0, b0], "a status line leaves the cards alone");

    // b is being verified: only b shows progress; a's verify button is disabled (one at a time)
    model.set({ progress: { running: true, id: "b", done: 1, total: 6, message: "pair 1" } });
    const [a1, b1] = cardsOf(host);
    assert.notEqual(b1, b0);
    assert.notEqual(a1, a0, "a's button is disabled while b runs");
    model.set({ progress: { running: true, id: "b", done: 2, total: 6, message: "pair 2" } });
    const [a2, b2] = cardsOf(host);
    assert.equal(a2, a1, "a progress tick of b leaves a alone");
    assert.notEqual(b2, b1);
    assert.match(b2.textContent, /2\/6 pair 2/);

    // order changes and removals follow the list
    model.set({ progress: {}, suggestions: [sugg("b", { status: "verified" }), sugg("c")] });
    const ids = cardsOf(host).map((c) => c.dataset.id);
    assert.deepEqual(ids, ["b", "c"]);
    assert.equal(cardsOf(host)[0].dataset.status, "verified");
  });
});

test("two suggestions with one id both show", () => {
  withFakeDom(() => {
    const host = new FakeElement("div");
    const model = new FakeModel<Record<string, unknown>>({ suggestions: [sugg("a"), sugg("a")], progress: {} });
    suggestions.render({ model, el: host } as never);
    const [x, y] = cardsOf(host);
    assert.notEqual(x, y);
    model.set({ status: "x" });
    assert.equal(cardsOf(host).length, 2);
  });
});

test("a memory suggestion's verdict leads with the memory change", () => {
  withFakeDom(() => {
    const host = new FakeElement("div");
    const result = { verdict: "verified", speedup: 0.8, memory_change: -0.241, baseline_s: 0.02, variant_s: 0.025,
      extra: { timing: "step" } };
    const model = new FakeModel<Record<string, unknown>>({
      suggestions: [sugg("checkpointing", { category: "memory", status: "verified", result }),
                    sugg("amp", { status: "verified", result: { ...result, speedup: 1.5, memory_change: -0.1 } })],
      progress: {},
    });
    suggestions.render({ model, el: host } as never);
    const heads = host.byClass("dsn-result-head").map((h) => h.textContent);
    assert.deepEqual(heads, ["verified — memory -24.1%, speed ×0.8000 on the step",
                             "verified — median speed-up ×1.500 on the step"]);
  });
});
