// The histogram panel's view: header (tensor, shape, close button), the canvas (non-finite row
// on top, the log2|g| bins in use, exact zeros below, steps along x), the tooltip and the draw
// loop. Colours: the shared LUT on a log scale over the bins' positive counts; non-finite
// elements in the mark colour. All text goes through textContent / fillText.
import type { Render } from "@anywidget/types";
import { scale } from "../shared/colors";
import { toBytes } from "../shared/series";
import type { SeriesStore } from "../shared/store";
import { el, formatCount, shapeText, text } from "../shared/ui";
import { binSpan, cellAt, computeGeometry, countRange, Geometry, maxCount, nonfiniteRow, rowLabel, tooltipLines,
  ZERO_ROW } from "./counts";
import { CSS } from "./style";
import type { BinRow, Model } from "./types";

const FONT = "10px var(--jp-ui-font-family, system-ui, sans-serif)";

function rgb(list: number[] | undefined, fallback: string): string {
  return list && list.length >= 3 ? `rgb(${list[0]}, ${list[1]}, ${list[2]})` : fallback;
}

/** The anywidget render of a histogram panel showing `store`. */
export function createRender(store: SeriesStore): Render<Model> {
  return ({ model, el: host }) => {
    const root = el("div", "dsn-histogram");
    const style = document.createElement("style");
    style.textContent = CSS;
    const header = el("div", "dsn-hist-header");
    const title = el("span", "dsn-hist-title");
    const tensor = el("span", "dsn-hist-tensor");
    const info = el("span", "dsn-hist-info");
    const status = el("span", "dsn-hist-status");
    const close = text("button", "dsn-hist-close", "×");
    close.type = "button";
    close.title = "close the histogram";
    header.append(title, tensor, info, status, close);
    const empty = text("div", "dsn-hist-empty", "");
    const wrap = el("div", "dsn-hist-wrap");
    const canvas = el("canvas", "dsn-hist-canvas");
    canvas.setAttribute("role", "img");
    const tooltip = el("div", "dsn-hist-tooltip");
    wrap.append(canvas, tooltip);
    root.append(style, header, empty, wrap);
    host.appendChild(root);

    let draws = 0;
    let frame = 0;
    let geom: Geometry | null = null;
    let hover: { x: number; y: number } | null = null;
    const rows = (): BinRow[] => model.get("rows") || [];

    const syncText = () => {
      const name = model.get("tensor") || "";
      const ready = name !== "" && name === (model.get("shown") || "");
      title.textContent = model.get("title") || "";
      tensor.textContent = name;
      const numel = model.get("numel") || 0;
      info.textContent = ready ? `${shapeText(model.get("shape"))} ${numel ? `(${formatCount(numel)} elements)` : ""}`.trim() : "";
      status.textContent = ready ? model.get("status") || "" : "";
      empty.textContent = "waiting for the kernel: a running cell delays the data until it ends";
      empty.style.display = name && !ready ? "" : "none";
      wrap.style.display = ready ? "" : "none";
      root.style.display = name ? "" : "none";
      root.dataset.tensor = name;
      root.dataset.ready = String(ready);
    };

    const draw = () => {
      frame = 0;
      const ctx = canvas.getContext("2d");
      if (!ctx) return;
      const R = rows().length;
      const nf = nonfiniteRow(rows());
      const span = R === store.nRows ? binSpan(store, R) : null;
      const g = computeGeometry(store.nCols, span, host.clientWidth || root.clientWidth || 800);
      geom = g;
      const dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(g.cssW * dpr);
      canvas.height = Math.round(g.cssH * dpr);
      canvas.style.width = `${g.cssW}px`;
      canvas.style.height = `${g.cssH}px`;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, g.cssW, g.cssH);
      const lut = toBytes(model.get("lut"));
      const [lo, hi] = span ? countRange(store, span[0], span[1]) : [NaN, NaN];
      const idx = scale(lo, hi, true);
      const fill = (v: number): string | null => {
        if (!(v > 0)) return null;
        const i = idx(v);
        return i < 0 ? null : `rgb(${lut[3 * i]}, ${lut[3 * i + 1]}, ${lut[3 * i + 2]})`;
      };
      const mark = rgb(model.get("mark_color"), "rgb(255, 32, 32)");
      for (let i = 0; i < g.nBins; i++) {
        const c0 = i * g.agg;
        const c1 = Math.min(store.nCols, c0 + g.agg);
        const x = g.x0 + i * g.cellW;
        if (span) {
          for (let b = g.b0; b <= g.b1; b++) {
            const color = fill(maxCount(store, b, c0, c1));
            if (!color) continue;
            ctx.fillStyle = color;
            ctx.fillRect(x, g.binsY + (g.b1 - b) * g.cellH, g.cellW, g.cellH);
          }
        }
        const zc = fill(maxCount(store, ZERO_ROW, c0, c1));
        if (zc) {
          ctx.fillStyle = zc;
          ctx.fillRect(x, g.zeroY, g.cellW, g.cellH);
        }
        if (maxCount(store, nf, c0, c1) > 0) {
          ctx.fillStyle = mark;
          ctx.fillRect(x, g.nfY, g.cellW, g.cellH);
        }
      }
      drawLabels(ctx, g, rows(), store, getComputedStyle(root).color || "#222");
      if (hover) onHover(hover.x, hover.y);
      canvas.setAttribute("aria-label", `log2|g| histogram of ${model.get("tensor") || "no tensor"}: ` +
        `${span ? span[1] - span[0] + 1 : 0} bins × ${store.nCols} steps`);
      Object.assign(root.dataset, {
        draws: String(++draws), columns: String(store.nCols), seq: String(store.seq), stale: String(store.stale),
        bin0: String(span ? span[0] : -1), bin1: String(span ? span[1] : -1), vmin: String(lo), vmax: String(hi),
        agg: String(g.agg), cellW: String(g.cellW), cellH: String(g.cellH), x0: String(g.x0), nfY: String(g.nfY),
        binsY: String(g.binsY), zeroY: String(g.zeroY), dpr: String(dpr),
      });
    };

    const schedule = () => {
      if (frame) return;
      if (document.hidden) frame = window.setTimeout(draw, 100) as unknown as number;
      else frame = requestAnimationFrame(draw);
    };

    const onHover = (x: number, y: number) => {
      const cell = geom ? cellAt(geom, x, y, store.nCols, nonfiniteRow(rows())) : null;
      if (!cell) {
        tooltip.style.display = "none";
        return;
      }
      const lines = tooltipLines(store, rows(), cell.row, cell.c0, cell.c1, model.get("numel") || 0);
      tooltip.replaceChildren(...lines.map((l) => text("div", "dsn-tt-line", l)));
      tooltip.style.display = "block";
      tooltip.style.left = `${Math.min(x + 14, Math.max(0, wrap.clientWidth - tooltip.offsetWidth - 4))}px`;
      tooltip.style.top = `${y + 14}px`;
      Object.assign(tooltip.dataset, { row: String(cell.row), col: String(cell.c0) });
    };
    const onMove = (ev: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      hover = { x: ev.clientX - rect.left, y: ev.clientY - rect.top };
      onHover(hover.x, hover.y);
    };
    const onLeave = () => {
      hover = null;
      tooltip.style.display = "none";
    };
    const onClose = () => {
      model.set("tensor", "");
      model.save_changes();
    };
    const onText = () => {
      syncText();
      schedule();
    };

    canvas.addEventListener("mousemove", onMove);
    canvas.addEventListener("mouseleave", onLeave);
    close.addEventListener("click", onClose);
    const events = ["change:tensor", "change:shown", "change:numel", "change:shape", "change:status", "change:title"];
    for (const ev of events) model.on(ev, onText);
    for (const ev of ["change:lut", "change:mark_color", "change:rows"]) model.on(ev, schedule);
    const unsubscribe = store.subscribe(schedule);
    const resize = new ResizeObserver(() => schedule());
    resize.observe(host);
    syncText();
    draw();

    return () => {
      unsubscribe();
      resize.disconnect();
      if (frame) {
        cancelAnimationFrame(frame);
        clearTimeout(frame);
      }
      canvas.removeEventListener("mousemove", onMove);
      canvas.removeEventListener("mouseleave", onLeave);
      close.removeEventListener("click", onClose);
      for (const ev of events) model.off(ev, onText);
      for (const ev of ["change:lut", "change:mark_color", "change:rows"]) model.off(ev, schedule);
      root.remove();
    };
  };
}

/** Row labels left of the cells and a few step numbers below them. */
function drawLabels(ctx: CanvasRenderingContext2D, g: Geometry, rows: BinRow[], store: SeriesStore, fg: string): void {
  ctx.font = FONT;
  ctx.fillStyle = fg;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const lx = g.x0 - 6;
  ctx.fillText(rowLabel(rows, nonfiniteRow(rows)), lx, g.nfY + g.cellH / 2);
  ctx.fillText(rowLabel(rows, ZERO_ROW), lx, g.zeroY + g.cellH / 2);
  const every = Math.max(1, Math.ceil(11 / g.cellH));
  for (let b = g.b1; b >= g.b0; b--) {
    if ((g.b1 - b) % every) continue;
    ctx.fillText(rowLabel(rows, b), lx, g.binsY + (g.b1 - b + 0.5) * g.cellH);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const every2 = Math.max(1, Math.ceil(60 / g.cellW));
  for (let i = 0; i < g.nBins; i += every2) {
    const c = i * g.agg;
    if (c < store.nCols) ctx.fillText(String(store.steps[c]), g.x0 + (i + 0.5) * g.cellW, g.axisY + 2);
  }
}
