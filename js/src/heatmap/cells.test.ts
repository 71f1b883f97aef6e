// The cell layer's reuse (bins moved between images, the image before the last one, cached bin
// maxima) never changes a pixel: after every step of random appends, drops, zooms and statistic
// changes, the cached layer's image equals the one a fresh layer paints.
import assert from "node:assert/strict";
import { test } from "node:test";
import { packLut, packRgb } from "../shared/colors";
import { SeriesStore } from "../shared/store";
import { CellLayer } from "./cells";
import type { Geometry } from "./geometry";

class FakeImageData {
  constructor(readonly data: Uint8ClampedArray, readonly width: number, readonly height: number) {}
}
(globalThis as { ImageData?: unknown }).ImageData ??= FakeImageData;

/** A 2d context that keeps what putImageData got (cells of one device pixel use nothing else). */
function fakeCtx(): { ctx: CanvasRenderingContext2D; last: () => Int32Array } {
  let img: ImageData | null = null;
  const ctx = { putImageData: (i: ImageData) => { img = i; } } as unknown as CanvasRenderingContext2D;
  return { ctx, last: () => new Int32Array((img as ImageData).data.slice().buffer) };
}

function geometry(col0: number, nVis: number, agg: number): Geometry {
  const nBins = Math.ceil(nVis / agg);
  return { cssW: 0, cssH: 0, x0: 0, y0: 0, cellW: 1, cellH: 1, agg, nBins, col0, nVis, moduleColW: 0, tensorColW: 0 };
}

let seed = 11;
const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) | 0) >>> 0) / 4294967296;

const R = 23;
const S = 3; // statistics: 0 log-scaled, 1 a non-finite count (marks), 2 linear
function block(steps: number[]): Float32Array {
  const k = steps.length;
  const out = new Float32Array(S * k * R);
  for (let c = 0; c < k; c++) {
    for (let r = 0; r < R; r++) {
      const u = rand();
      out[c * R + r] = u < 0.03 ? NaN : u < 0.04 ? Infinity : Math.exp(8 * rand() - 4) * (u < 0.05 ? 1e4 : 1);
      out[k * R + c * R + r] = rand() < 0.01 ? 2 : 0;
      out[2 * k * R + c * R + r] = u < 0.03 ? NaN : rand() * 2 - 0.5;
    }
  }
  return out;
}

test("cached cell images equal fresh ones through appends, drops, zooms and statistic changes", () => {
  const lut = packLut(Uint8Array.from({ length: 768 }, (_, i) => (i * 7) & 255));
  const nanPx = packRgb([128, 128, 128]);
  const store = new SeriesStore();
  store.reset(S, R);
  const cached = new CellLayer();
  const { ctx, last } = fakeCtx();
  let step = 0;
  const append = (k: number) => {
    const steps = Array.from({ length: k }, () => (step += 1 + Math.floor(rand() * 3)));
    store.appendBlock(steps, block(steps));
  };
  append(60);
  let zoom: [number, number] | null = null;
  let si = 0;
  let checked = 0;
  for (let it = 0; it < 300; it++) {
    const op = rand();
    if (op < 0.35) append(1 + Math.floor(rand() * 6));
    else if (op < 0.6 && store.nCols > 20) {
      // a thinning drop: a run of columns before the newest quarter, or scattered ones
      const C = store.nCols;
      const at = Math.floor(rand() * (C * 0.75));
      const n = 1 + Math.floor(rand() * 4);
      const gone = rand() < 0.7 ? store.steps.slice(at, at + n) : [store.steps[at], store.steps[Math.floor(rand() * C)]];
      store.drop(gone);
    } else if (op < 0.8) zoom = rand() < 0.4 ? null : [Math.floor(rand() * store.nCols * 0.6), 2 + Math.floor(rand() * store.nCols * 0.4)];
    else if (op < 0.85) si = si === 0 ? 2 : 0;
    const C = store.nCols;
    let col0 = 0;
    let nVis = C;
    if (zoom !== null && zoom[0] + zoom[1] <= C) [col0, nVis] = zoom;
    const agg = nVis > 40 ? Math.ceil(nVis / 40) : 1;
    const g = geometry(col0, nVis, agg);
    const log = si === 0;
    const [lo, hi] = store.range(si, log);
    const marks = cached.draw(ctx, g, store, si, 1, lo, hi, log, lut, nanPx, 1);
    const got = last();
    const fresh = fakeCtx();
    const want = new CellLayer().draw(fresh.ctx, g, store, si, 1, lo, hi, log, lut, nanPx, 1);
    assert.deepEqual(got, fresh.last(), `image differs at iteration ${it} (zoom ${col0}+${nVis}, agg ${agg}, stat ${si})`);
    assert.deepEqual(marks, want, `marks differ at iteration ${it}`);
    checked++;
  }
  assert.equal(checked, 300);
  assert.ok(cached.counts.moved > 1000, `bins should mostly be moved, not recoloured (${JSON.stringify(cached.counts)})`);
});
