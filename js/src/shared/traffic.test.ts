// Replays traffic recorded from the Python widget (testdata/series_traffic.json, kept current by
// tests/widgets/test_series_traffic.py) through followModel, losing some messages on the way:
// the browser must end with exactly the columns Python holds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DeltaMsg, followModel, SeriesModel, SnapshotMeta } from "./series";
import { SeriesStore } from "./store";
import { FakeModel, fromBase64, unalignedView } from "./testing";
import traffic from "./testdata/series_traffic.json";

interface Snap {
  kind: string;
  meta: SnapshotMeta;
  data: string;
}

function replay(lose: Set<number>): SeriesStore {
  const rows = Array.from({ length: traffic.rows }, (_, i) => ({ id: String(i) }));
  const stats = Array.from({ length: traffic.stats }, (_, i) => ({ key: `s${i}`, label: `s${i}`, log: false }));
  const init = traffic.initial as Snap;
  const model = new FakeModel<SeriesModel>({ rows, stats, snapshot_meta: init.meta, snapshot: unalignedView(fromBase64(init.data)) });
  const store = new SeriesStore();
  followModel(model, store);
  let n = 0;
  for (const ev of traffic.events) {
    if (ev.kind === "msg") {
      const buffers = (ev.buffers ?? []).map((b) => unalignedView(fromBase64(b)));
      if (!lose.has(n++)) model.send(ev.content as DeltaMsg, buffers);
    } else {
      const s = ev as Snap;
      model.set({ snapshot: unalignedView(fromBase64(s.data)), snapshot_meta: s.meta });
    }
  }
  return store;
}

function assertFinal(store: SeriesStore, what: string): void {
  const want = new Float32Array(fromBase64(traffic.final.values).slice().buffer);
  const C = traffic.final.steps.length;
  assert.deepEqual(store.steps, traffic.final.steps, what);
  assert.equal(store.seq, traffic.final.seq, what);
  assert.ok(!store.stale, what);
  for (let s = 0; s < traffic.stats; s++) {
    const got = store.data[s].subarray(0, C * traffic.rows);
    assert.deepEqual(Array.from(got), Array.from(want.subarray(s * C * traffic.rows, (s + 1) * C * traffic.rows)), `${what}: stat ${s}`);
  }
}

const nMsgs = traffic.events.filter((e) => e.kind === "msg").length;

test("every delta applied in order gives Python's columns", () => {
  const store = replay(new Set());
  assertFinal(store, "no loss");
  assert.equal(store.gaps, 0);
});

test("lost messages are repaired by the next snapshot", () => {
  for (const lose of [[0, 1, 2], [5], [nMsgs - 1], [3, 4, 9]]) {
    const store = replay(new Set(lose));
    assertFinal(store, `lost ${lose}`);
    if (lose[0] !== nMsgs - 1) assert.ok(store.gaps >= 1, `lost ${lose}: a gap was seen`);
  }
});
