// The flame view's arithmetic and texts: boxes for an x range, hit testing (innermost first),
// zoom, labels, tooltip and details rows; and the panel in a fake DOM whose markup sinks throw.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeElement, FakeModel, withFakeDom } from "../shared/testing";
import { detailRows, fitLabel, FlameNode, hit, layout, ROW_H, tooltipLines, zoomTo } from "./layout";
import { FlameModel, mountFlame } from "./view";

const HOSTILE = "<img src=x onerror=alert(1)>";

function node(id: string, parent: string | null, depth: number, x: number, w: number, extra: Partial<FlameNode> = {}): FlameNode {
  return { id, parent, name: id, kind: "function", depth, x, w, count: 1, wall: w, self: w, device: null, errors: 0, error: null,
    inputs: [], outputs: [], module: "", call: 1, steps: [null, null], ...extra };
}

const tree = [node("root", null, 0, 0, 1.0), node("a", "root", 1, 0, 0.25), node("b", "root", 1, 0.5, 0.5), node("b1", "b", 2, 0.5, 0.1)];

test("layout: seconds to pixels, one row per depth", () => {
  const r = layout(tree, 0, 1, 1000);
  assert.equal(r.length, 4);
  assert.deepEqual(r[0], { i: 0, x: 0, y: 0, w: 1000, h: ROW_H - 1 });
  assert.deepEqual(r[2], { i: 2, x: 500, y: ROW_H, w: 500, h: ROW_H - 1 });
  assert.equal(r[3].y, 2 * ROW_H);
  assert.ok(Math.abs(r[3].w - 100) < 1e-9);
});

test("layout: a zoomed range clips boxes and drops those outside or too thin", () => {
  const r = layout(tree, 0.5, 0.75, 1000);
  assert.deepEqual(r.map((q) => tree[q.i].id), ["root", "b", "b1"]);
  assert.ok(Math.abs(r[2].w - 400) < 1e-6);
  assert.deepEqual(layout(tree, 0, 1, 0), []);
  assert.deepEqual(layout([node("thin", null, 0, 0, 1e-9)], 0, 1, 100).length, 0);
});

test("hit: the innermost box under the pointer, -1 outside", () => {
  const r = layout(tree, 0, 1, 1000);
  assert.equal(hit(r, 550, 2 * ROW_H + 5), 3);
  assert.equal(hit(r, 550, ROW_H + 5), 2);
  assert.equal(hit(r, 300, ROW_H + 5), -1, "a gap between siblings");
  assert.equal(hit(r, 300, 5), 0);
  assert.equal(hit(r, 5000, 5), -1);
});

test("zoomTo frames one box", () => {
  const [a, b] = zoomTo(tree[2], 1);
  assert.ok(a < 0.5 && a > 0.48 && b === 1);
  assert.deepEqual(zoomTo(node("z", null, 0, 0, 0), 2), [0, 2]);
});

test("fitLabel clips to the pixels there are", () => {
  assert.equal(fitLabel("conv", 200), "conv");
  assert.equal(fitLabel("a_long_function_name", 60), "a_long_…");
  assert.equal(fitLabel("x", 8), "");
});

test("tooltip: times, calls merged, shapes, error", () => {
  const n = node("fuse", null, 0, 0, 0.004, { count: 4, wall: 0.004, self: 0.001, device: 0.002, errors: 1, error: "ValueError: bad",
    inputs: [{ name: "x", shape: [8, 3], dtype: "float32" }], outputs: [{ name: "out", shape: [], dtype: "float32" }] });
  assert.deepEqual(tooltipLines(n), ["fuse (function)", "wall 4.00 ms in 4 calls (mean 1.00 ms)", "self 1.00 ms", "device 2.00 ms",
    "in: 8×3 float32", "out: scalar float32", "raised: ValueError: bad"]);
});

test("details: one row per input and output, statistics as text", () => {
  const n = node("f", null, 0, 0, 1, { inputs: [{ name: "x", shape: [2], dtype: "float32", device: "cpu", mean: 0.5, std: 0.25, absmax: 1,
    nonfinite: 0, zero_frac: 0, modified: true }], outputs: [{ name: "out", shape: [2], dtype: "float32", device: "cpu", mean: 1e-7 }] });
  assert.deepEqual(detailRows(n), [["in", "x (modified in place)", "2", "float32", "cpu", "0.5", "0.25", "1", "0", "0"],
    ["out", "out", "2", "float32", "cpu", "1.000e-7", "", "", "", ""]]);
});

function mount(state: Partial<FlameModel>): { root: FakeElement; model: FakeModel<FlameModel> } {
  return withFakeDom(() => {
    const root = new FakeElement("div");
    const model = new FakeModel<FlameModel>({ mode: "call", modes: ["call", "all"], calls: 1, shown_call: 0, call_index: -1, selected: "",
      selected_module: "", overhead: {}, hidden: 0, status: "", title: "traced functions", total: 1, ...state });
    (model as unknown as { save_changes: () => void }).save_changes = () => undefined;
    mountFlame(root as never, model as never).draw();
    return { root, model };
  });
}

test("a hostile function name and error are text in the details panel", () => {
  const n = node(HOSTILE, null, 0, 0, 1, { error: HOSTILE, errors: 1, inputs: [{ name: HOSTILE, shape: [1], dtype: "float32" }] });
  const { root } = mount({ nodes: [n], selected: n.id });
  const texts = root.all().map((e) => e.textContent);
  assert.equal(root.byClass("dsn-flame-details-title")[0].textContent, `${HOSTILE} (function)`);
  assert.ok(texts.includes(`raised: ${HOSTILE}`));
  assert.ok(texts.includes(HOSTILE), "the input's name is one text node");
  assert.ok(!root.all().some((e) => e.tagName === "IMG"));
});

test("controls: mode buttons and call navigation from the traits", () => {
  const { root } = mount({ nodes: [tree[0]], calls: 3, shown_call: 1, modes: ["call", "step", "all"] });
  assert.deepEqual(root.byClass("dsn-flame-mode").map((b) => b.textContent), ["one call", "per step", "all calls"]);
  assert.ok(root.all().some((e) => e.textContent === "call 2 of 3 (latest)"));
  assert.equal(root.byClass("dsn-flame-prev")[0].disabled, false);
});
