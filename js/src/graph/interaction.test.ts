// The viewport arithmetic of the graph: fit, first view, centring on a box.
import assert from "node:assert/strict";
import { test } from "node:test";
import { centerOn, firstView, fitView } from "./interaction";

test("fitView: the whole layout, centred, top-aligned when taller", () => {
  assert.deepEqual(fitView(400, 200, 800, 520), { k: 1.2, x: 160, y: 140 });
  const tall = fitView(200, 10000, 800, 520);
  assert.equal(tall.k, 0.052);
  assert.ok(tall.y === 0 || tall.y >= 0);
});

test("firstView keeps boxes readable and starts at the top of a tall chain", () => {
  assert.deepEqual(firstView(200, 6000, 800, 520), { k: 0.75, x: 325, y: 0 });
  assert.deepEqual(firstView(2000, 100, 800, 520), { k: 0.75, x: 0, y: 222.5 });
});

test("centerOn moves only when the point is off screen", () => {
  const v = { k: 1, x: 0, y: 0 };
  assert.equal(centerOn(v, 100, 100, 800, 520), v);
  assert.deepEqual(centerOn(v, 2000, 100, 800, 520), { k: 1, x: -1600, y: 160 });
  assert.deepEqual(centerOn({ k: 0.2, x: 0, y: 0 }, 5000, 100, 800, 520), { k: 0.8, x: -3600, y: 180 });
});
