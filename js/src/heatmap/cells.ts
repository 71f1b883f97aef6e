// The heatmap's cells on the canvas: one colour per drawn bin (the max over its columns,
// exact LUT colours) and the non-finite marks drawn over them.
//
// Speed (2,000 tensors x thousands of steps redraw in well under 50 ms): the cells live in an
// image of one pixel per drawn cell, copied to the canvas (putImageData when a cell is one
// device pixel, else a nearest-neighbour drawImage). A repaint reuses what it can: bins are
// named by the steps they hold, so after a live update (columns thinned away and new ones
// appended) the bins still shown are moved, not recomputed, and only the new ones are coloured;
// the image before the last one and the bin maxima (several columns per bin) of the last two
// paints are kept too, so that zooming back out finds what was shown before zooming in. Colours
// come from a table (lut.ts), not a log10 per cell. A redraw that changes nothing the cells show
// (labels, theme, selection) only copies the image again.
import { cssRgb, RGB } from "../shared/colors";
import type { SeriesStore } from "../shared/store";
import { binMarks, binMax, Geometry, Mark } from "./geometry";
import { ColorMap, colorRun } from "./lut";

const MAX_RUNS = 64; // more runs of moved bins than this: repaint instead (a copy per row per run)

/** An image of the cells: its pixels (row-major, W x R) and the bin in each of its columns. */
interface Shown {
  buf: Int32Array<ArrayBuffer>;
  ids: string[];
  W: number;
}

/** The cells of the heatmap as an image of one pixel per drawn cell; one per view. */
export class CellLayer {
  // the image shown and the one before (row-major, W x R, the bin in each column; ids empty when
  // not reusable), and a spare buffer the next image is composed in
  private front: Shown = { buf: new Int32Array(0), ids: [], W: 0 };
  private before: Shown = { buf: new Int32Array(0), ids: [], W: 0 };
  private spare = new Int32Array(0);
  private img: ImageData | null = null;
  private scaled: HTMLCanvasElement | null = null; // the image, for a scaled drawImage
  private scaledKey = "";
  private key = "";
  private lut: Uint32Array | null = null;
  private cmap: ColorMap | null = null;
  private source = ""; // statistic and epoch of the store the bins were computed from
  private maxima = new Map<string, Float32Array>(); // bin -> its max per row (bins of > 1 column)
  private older = new Map<string, Float32Array>(); // ... of the paint before
  private marks: Mark[] = [];
  private binMark = new Uint8Array(0);
  /** images painted, bins coloured, bins moved from the previous image (for tests and tools) */
  readonly counts = { paints: 0, colored: 0, moved: 0 };

  /** Draws the cells of `g` (ctx in device pixels, identity transform); returns the cells to
   * mark, or null when there was nothing to draw. */
  draw(
    ctx: CanvasRenderingContext2D,
    g: Geometry,
    store: SeriesStore,
    si: number,
    mi: number,
    lo: number,
    hi: number,
    log: boolean,
    lutPacked: Uint32Array,
    nanPx: number,
    dpr: number,
  ): Mark[] | null {
    const R = store.nRows;
    const W = g.nBins;
    const px0 = Math.round(g.x0 * dpr);
    const py0 = Math.round(g.y0 * dpr);
    const pw = Math.round(W * g.cellW * dpr);
    const ph = Math.round(R * g.cellH * dpr);
    if (!(pw > 0 && ph > 0 && W > 0 && R > 0)) return null;
    const key = `${store.revision} ${si} ${mi} ${lo} ${hi} ${log} ${nanPx} ${g.col0} ${g.nVis} ${g.agg} ${W} ${R}`;
    if (key !== this.key || lutPacked !== this.lut || !this.img) {
      this.paint(g, store, si, mi, lo, hi, log, lutPacked, nanPx);
      this.key = key;
      this.lut = lutPacked;
      this.scaledKey = "";
    }
    const img = this.img as ImageData;
    if (pw === W && ph === R) ctx.putImageData(img, px0, py0);
    else {
      if (!this.scaled) this.scaled = document.createElement("canvas");
      const sc = this.scaled;
      if (this.scaledKey !== this.key) {
        if (sc.width !== W || sc.height !== R) {
          sc.width = W;
          sc.height = R;
        }
        const sctx = sc.getContext("2d");
        if (!sctx) return null;
        sctx.putImageData(img, 0, 0);
        this.scaledKey = this.key;
      }
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(sc, 0, 0, W, R, px0, py0, pw, ph);
    }
    return this.marks;
  }

  private paint(g: Geometry, store: SeriesStore, si: number, mi: number, lo: number, hi: number, log: boolean, lutPacked: Uint32Array, nanPx: number): void {
    this.counts.paints++;
    const R = store.nRows;
    const W = g.nBins;
    const source = `${si} ${store.epoch} ${R}`;
    if (source !== this.source) {
      this.maxima.clear();
      this.older.clear();
      this.front.ids = [];
      this.before.ids = [];
      this.source = source;
    }
    if (!this.cmap || !this.cmap.same(lo, hi, log, lutPacked, nanPx)) {
      this.cmap = new ColorMap(lo, hi, log, lutPacked, nanPx);
      this.front.ids = []; // every colour changes
      this.before.ids = [];
    }
    const cmap = this.cmap;
    // the bins, named by the steps they hold (steps only grow; a thinned column changes its bin's name)
    const steps = store.steps;
    const cEnd = g.col0 + g.nVis;
    const ids: string[] = new Array(W);
    for (let b = 0; b < W; b++) {
      const c0 = g.col0 + b * g.agg;
      const c1 = Math.min(cEnd, c0 + g.agg);
      ids[b] = c1 - c0 === 1 ? `${steps[c0]}` : `${steps[c0]}/${steps[c1 - 1]}/${c1 - c0}`;
    }
    // runs of bins that sit side by side in an earlier image too: [new bin, image, its bin, length]
    // (the image before the last one: zooming out finds the bins shown before zooming in)
    const shown = [this.front, this.before];
    const oldAt = new Map<string, number>(); // id -> image * 2^24 + bin
    for (let s = shown.length - 1; s >= 0; s--) shown[s].ids.forEach((id, j) => oldAt.set(id, s * 16777216 + j));
    const runs: number[] = [];
    for (let b = 0; b < W; b++) {
      const at = oldAt.get(ids[b]);
      if (at === undefined) continue;
      const s = Math.floor(at / 16777216);
      const j = at % 16777216;
      const n = runs.length;
      if (n && runs[n - 4] + runs[n - 1] === b && runs[n - 3] === s && runs[n - 2] + runs[n - 1] === j) runs[n - 1]++;
      else runs.push(b, s, j, 1);
    }
    if (runs.length / 4 > MAX_RUNS) runs.length = 0;
    if (runs.length === 4 && runs[0] === 0 && runs[2] === 0 && runs[3] === W && shown[runs[1]].W === W) {
      // the very image shown before (e.g. zoomed back out): show it again as it is
      if (runs[1] === 1) {
        [this.front, this.before] = [this.before, this.front];
        [this.maxima, this.older] = [this.older, this.maxima];
      }
      this.counts.moved += W;
      this.show(this.front, R);
      this.marks = this.findMarks(g, store, mi);
      return;
    }
    if (this.spare.length < W * R) this.spare = new Int32Array(W * R);
    const out = this.spare;
    const moved = new Uint8Array(W);
    for (let i = 0; i < runs.length; i += 4) {
      const [b, s, j, n] = [runs[i], runs[i + 1], runs[i + 2], runs[i + 3]];
      const { buf, W: oldW } = shown[s];
      moved.fill(1, b, b + n);
      for (let r = 0; r < R; r++) out.set(buf.subarray(r * oldW + j, r * oldW + j + n), r * W + b);
      this.counts.moved += n;
    }
    const vals = store.data[si];
    const bits = new Int32Array(vals.buffer, vals.byteOffset, vals.length);
    const maxima = new Map<string, Float32Array>();
    for (let b = 0; b < W; b++) {
      const c0 = g.col0 + b * g.agg;
      const c1 = Math.min(cEnd, c0 + g.agg);
      let m: Float32Array | undefined;
      if (c1 - c0 > 1) {
        m = this.maxima.get(ids[b]) ?? this.older.get(ids[b]);
        if (!m) {
          m = new Float32Array(R);
          binMax(vals, R, c0, c1, m);
        }
        maxima.set(ids[b], m);
      }
      if (moved[b]) continue;
      this.counts.colored++;
      if (m) colorRun(cmap, new Int32Array(m.buffer), 0, R, out, b, W);
      else colorRun(cmap, bits, c0 * R, R, out, b, W);
    }
    this.older = this.maxima;
    this.maxima = maxima;
    this.spare = this.before.buf;
    this.before = this.front;
    this.front = { buf: out, ids, W };
    this.show(this.front, R);
    this.marks = this.findMarks(g, store, mi);
  }

  private show(im: Shown, R: number): void {
    this.img = new ImageData(new Uint8ClampedArray(im.buf.buffer, 0, im.W * R * 4), im.W, R);
  }

  /** The (bin, row) cells with a mark statistic > 0 in one of their columns. */
  private findMarks(g: Geometry, store: SeriesStore, mi: number): Mark[] {
    const marks: Mark[] = [];
    if (mi < 0) return marks;
    const R = store.nRows;
    const colMarked = store.marked(mi);
    const cEnd = g.col0 + g.nVis;
    if (this.binMark.length !== R) this.binMark = new Uint8Array(R);
    for (let b = 0; b < g.nBins; b++) {
      const c0 = g.col0 + b * g.agg;
      const c1 = Math.min(cEnd, c0 + g.agg);
      let any = false;
      for (let c = c0; c < c1 && !any; c++) any = colMarked[c] === 1;
      if (!any) continue;
      binMarks(store.data[mi], colMarked, R, c0, c1, this.binMark);
      for (let r = 0; r < R; r++) if (this.binMark[r]) marks.push([b, r]);
    }
    return marks;
  }
}

/** Non-finite marks, over whatever statistic is shown (ctx in CSS pixels). */
export function drawMarks(ctx: CanvasRenderingContext2D, g: Geometry, marks: Mark[], markRgb: RGB): void {
  if (!marks.length) return;
  ctx.strokeStyle = cssRgb(markRgb);
  ctx.fillStyle = cssRgb(markRgb);
  const big = g.cellW >= 5 && g.cellH >= 5;
  ctx.lineWidth = big ? 1.5 : 1;
  ctx.beginPath();
  for (const [b, r] of marks) {
    const x = g.x0 + b * g.cellW;
    const y = g.y0 + r * g.cellH;
    if (big) {
      ctx.rect(x + 0.75, y + 0.75, g.cellW - 1.5, g.cellH - 1.5);
      ctx.moveTo(x + 1, y + 1);
      ctx.lineTo(x + g.cellW - 1, y + g.cellH - 1);
      ctx.moveTo(x + g.cellW - 1, y + 1);
      ctx.lineTo(x + 1, y + g.cellH - 1);
    }
  }
  if (big) ctx.stroke();
  else {
    // tiny cells: a dot on the cell, plus a tick in the row gutter so it can be found
    for (const [b, r] of marks) {
      const cx = g.x0 + (b + 0.5) * g.cellW;
      const cy = g.y0 + (r + 0.5) * g.cellH;
      ctx.fillRect(cx - 1.5, cy - 1.5, 3, 3);
    }
  }
}
