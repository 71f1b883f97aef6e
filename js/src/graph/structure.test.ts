// The graph's structure: groups, depth, default expansion under a budget of visible boxes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Structure } from "./structure";
import type { GNode } from "./types";

function node(id: string, parent: string | null, kind = "module"): GNode {
  return { id, kind, label: id, name: id, type: "T", params: 0, call: 0, parent, leaf: false, shapes: [] };
}

// root -> [a -> [a1, a2, a3], b -> [b1 -> [b1x, b1y]], relu]; plus the input
const nodes = [
  node("input:x", null, "input"), node("root", null), node("a", "root"), node("a1", "a"), node("a2", "a"), node("a3", "a"),
  node("b", "root"), node("b1", "b"), node("b1x", "b1"), node("b1y", "b1"), node("relu", "root", "op"),
];

test("groups, children, depth, root and ancestors", () => {
  const S = new Structure({ nodes, edges: [] });
  assert.equal(S.root, "root");
  assert.deepEqual(S.groups.map((g) => g.id), ["root", "a", "b", "b1"]);
  assert.deepEqual(S.children.get("root"), ["a", "b", "relu"]);
  assert.equal(S.depth.get("b1x"), 3);
  assert.deepEqual(S.ancestors("b1y"), ["b1", "b", "root"]);
  assert.ok(S.isGroup("a") && !S.isGroup("a1"));
});

test("defaultExpanded opens shallow groups first while the boxes fit the budget", () => {
  const S = new Structure({ nodes, edges: [] });
  assert.deepEqual([...S.defaultExpanded(0)].sort(), ["root"]);
  // root open: input + a + b + relu = 4 boxes; a adds 2 (6), b adds 0 (6), b1 adds 1 (7)
  assert.deepEqual([...S.defaultExpanded(6)].sort(), ["a", "b", "root"]);
  assert.deepEqual([...S.defaultExpanded(7)].sort(), ["a", "b", "b1", "root"]);
  assert.deepEqual([...S.defaultExpanded(5)].sort(), ["b", "b1", "root"], "a does not fit, b and b1 do");
});

test("an empty or missing graph has no structure", () => {
  const S = new Structure({});
  assert.equal(S.nodes.length, 0);
  assert.equal(S.root, null);
  assert.equal(S.defaultExpanded(10).size, 0);
});
