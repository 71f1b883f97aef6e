// Text is text: no panel parses a string as markup. The sources never use the markup sinks, and
// the panels' text-bearing parts, rendered in a DOM whose markup sinks throw, carry a hostile
// module name verbatim as text.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type { Render } from "@anywidget/types";
import perf from "../perf";
import suggestions from "../suggestions";
import { renderEvents, renderSide } from "../graph/panel";
import { Structure } from "../graph/structure";
import { SeriesStore } from "./store";
import { FakeElement, FakeModel, withFakeDom } from "./testing";

const HOSTILE = "<img src=x onerror=alert(1)>";
const SINKS = /\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser|srcdoc)\b/;

test("no source file uses a markup sink", () => {
  const src = process.env.DSN_JS_SRC;
  assert.ok(src, "run through `npm test` (scripts/test.mjs sets DSN_JS_SRC)");
  const files = readdirSync(src, { recursive: true }).map(String).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.endsWith("testing.ts"));
  assert.ok(files.length > 15, String(files));
  const code = (f: string) => readFileSync(path.join(src, f), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const bad = files.filter((f) => SINKS.test(code(f)));
  assert.deepEqual(bad, []);
});

/** Renders a panel's default export into a fake DOM; returns its host element. */
function render<T extends object>(mod: { render: Render<T> }, state: Partial<T>): FakeElement {
  return withFakeDom(() => {
    const host = new FakeElement("div");
    mod.render({ model: new FakeModel<T>(state), el: host } as never);
    return host;
  });
}

const texts = (e: FakeElement): string[] => e.all().map((n) => n.textContent);

test("the performance panel shows module names as text", () => {
  const host = render(perf as never, {
    layers: [{ module: HOSTILE, fwd: 0.002, bwd: 0.004, calls: 1 }, { module: "fc", fwd: 0.001, bwd: 0.001, calls: 1 }],
    memory: [{ module: HOSTILE, kind: "activations", bytes: 4096 }],
    phases: [], title: "performance", status: "", sampled_steps: 1,
  } as never);
  assert.ok(texts(host).includes(HOSTILE), "the layer name is one text node");
  assert.ok(host.all().some((n) => n.title.startsWith(`${HOSTILE}: forward`)));
  assert.ok(!host.all().some((n) => n.tagName === "IMG"));
});

test("the suggestions panel shows titles, evidence and snippets as text", () => {
  const host = render(suggestions as never, {
    suggestions: [{ id: "s", rule: "r", title: HOSTILE, category: HOSTILE, severity: "info", evidence: { [HOSTILE]: HOSTILE },
      gain: HOSTILE, snippet: `model.${HOSTILE}`, verify_hint: "", can_verify: true, status: "proposed", result: { error: HOSTILE } }],
    progress: {}, title: "suggestions", status: "",
  } as never);
  const t = texts(host);
  assert.ok(t.includes(HOSTILE) && t.includes(`model.${HOSTILE}`), "title, evidence and snippet as text");
  assert.equal(host.byClass("dsn-card-title")[0].textContent, HOSTILE);
  assert.ok(!host.all().some((n) => n.tagName === "IMG"));
});

test("the graph's details panel and events list show names as text", () => {
  const node = { id: `${HOSTILE}#0`, kind: "module", label: HOSTILE, name: HOSTILE, type: "ReLU", params: 0, call: 0,
    parent: null, leaf: true, shapes: [[2, 3]] };
  const S = new Structure({ nodes: [node], edges: [] });
  const events = [{ step: 3, kind: "nonfinite", module: HOSTILE, detail: `output of ${HOSTILE} has NaN`, node: node.id }];
  const model = new FakeModel<Record<string, unknown>>({ selected_node: node.id, selected_module: HOSTILE, events, graph: {} });
  withFakeDom(() => {
    const side = new FakeElement("div");
    const store = new SeriesStore();
    store.reset(1, 1);
    renderSide(side as never, { model: model as never, S, store, rowOf: new Map([[node.id, 0]]), value: () => NaN,
      column: () => -1, curStat: () => 0, stats: () => [], expanded: new Set(), toggle: () => undefined });
    assert.equal(side.byClass("dsn-side-title")[0].textContent, HOSTILE);
    assert.ok(texts(side).includes(`step 3: output of ${HOSTILE} has NaN`));
    const list = new FakeElement("div");
    renderEvents(list as never, model as never, S, () => undefined);
    assert.equal(list.children[0].textContent, `⚠ non-finite at step 3 in ${HOSTILE}: output of ${HOSTILE} has NaN`);
  });
});
