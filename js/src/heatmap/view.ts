// The heatmap panel's view: the DOM, the draw loop (cells.ts and axes.ts draw), and the wiring
// of the tooltip, zoom, linked selection (selected_module / selected_step / hover_step) and
// model changes. All text goes through textContent / fillText.
import type { Render } from "@anywidget/types";
import { packLut, packRgb } from "../shared/colors";
import { toBytes, type StatInfo } from "../shared/series";
import type { SeriesStore } from "../shared/store";
import { el } from "../shared/ui";
import { drawAxis, drawColorbar, drawRowLabels } from "./axes";
import { CellLayer, drawMarks } from "./cells";
import { cellAt, computeGeometry, Geometry, LABEL_FONT, LabelWidths, Mark, measureLabels, rgbOf, visibleColumns, Zoom } from "./geometry";
import { attachClickSelect, placeSelection } from "./selection";
import { CSS } from "./style";
import { showTooltip, tooltipLines } from "./tooltip";
import type { Model, RowInfo } from "./types";
import { attachZoom } from "./zoom";

/** The anywidget render of a heatmap panel showing `store`. */
export function createRender(store: SeriesStore): Render<Model> {
  return ({ model, el: host }) => {
    const root = el("div", "dsn-heatmap");
    const style = document.createElement("style");
    style.textContent = CSS;
    const header = el("div", "dsn-heatmap-header");
    const title = el("span", "dsn-heatmap-title");
    const select = el("select", "dsn-stat-select");
    select.setAttribute("aria-label", "statistic");
    const barWrap = el("div", "dsn-colorbar-wrap");
    const colorbar = el("canvas", "dsn-colorbar");
    barWrap.appendChild(colorbar);
    const zoomReset = el("button", "dsn-zoom-reset");
    zoomReset.type = "button";
    zoomReset.textContent = "show all steps";
    zoomReset.style.display = "none";
    const zoomBox = el("div", "dsn-zoom-box");
    header.append(title, select, barWrap, zoomReset);
    const status = el("div", "dsn-status");
    const scroll = el("div", "dsn-heatmap-scroll");
    const canvas = el("canvas", "dsn-heatmap-canvas");
    canvas.setAttribute("role", "img");
    canvas.title = "drag across steps to zoom in; double-click to show all steps";
    const selBox = el("div", "dsn-heatmap-selection");
    const stepMark = el("div", "dsn-heatmap-step-mark");
    scroll.append(canvas, selBox, stepMark);
    const axis = el("canvas", "dsn-heatmap-axis");
    const tooltip = el("div", "dsn-tooltip");
    root.append(style, header, status, scroll, axis, tooltip, zoomBox);
    host.appendChild(root);

    let draws = 0;
    let geom: Geometry | null = null;
    let lutPacked = packLut(toBytes(model.get("lut")));
    let lutVersion = 0;
    let frame = 0;
    let hover: { x: number; y: number } | null = null;
    let zoom: Zoom | null = null;
    let labelWidths: LabelWidths = { rows: null, modW: 0, tenW: 0 };
    const cells = new CellLayer();
    let colorbarKey = "";

    const stats = (): StatInfo[] => model.get("stats") || [];
    const rows = (): RowInfo[] => model.get("rows") || [];
    const statIndex = (): number => Math.max(0, stats().findIndex((s) => s.key === model.get("stat")));
    const markIndex = (): number => stats().findIndex((s) => s.key === model.get("mark_stat"));
    const selectionParts = { root, scroll, box: selBox, stepMark };
    const syncSelection = (reveal: boolean) =>
      placeSelection(selectionParts, geom, rows(), store, model.get("selected_module") || "", model.get("selected_step") ?? -1, reveal);

    const fillSelect = () => {
      select.replaceChildren();
      for (const s of stats()) {
        const o = document.createElement("option");
        o.value = s.key;
        o.textContent = s.label || s.key;
        select.appendChild(o);
      }
      const cur = stats()[statIndex()];
      if (cur) select.value = cur.key;
    };
    const syncText = () => {
      title.textContent = model.get("title") || "";
      status.textContent = model.get("status") || "";
    };

    const draw = () => {
      frame = 0;
      const t0 = performance.now();
      const ctx = canvas.getContext("2d");
      if (!ctx) return;
      const dpr = window.devicePixelRatio || 1;
      let vis = visibleColumns(store.steps, zoom);
      if (!vis) {
        zoom = null; // fewer than two columns left in the zoomed range
        vis = [0, store.nCols];
      }
      ctx.font = LABEL_FONT;
      labelWidths = measureLabels((s) => ctx.measureText(s).width, rows(), labelWidths);
      const g = computeGeometry(store.nRows, vis[0], vis[1], labelWidths, host.clientWidth || root.clientWidth || 800);
      geom = g;
      // resizing a canvas reallocates it: only when the size changed (else clear it)
      const cw = Math.round(g.cssW * dpr);
      const ch = Math.round(g.cssH * dpr);
      if (canvas.width !== cw || canvas.height !== ch) {
        canvas.width = cw;
        canvas.height = ch;
        canvas.style.width = `${g.cssW}px`;
        canvas.style.height = `${g.cssH}px`;
      }
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);

      const fg = getComputedStyle(root).color || "#222";
      const si = statIndex();
      const st = stats()[si];
      const log = !!(st && st.log);
      const [lo, hi] = st ? store.range(si, log) : [NaN, NaN];
      const tRange = performance.now();
      const markRgb = rgbOf(model.get("mark_color"), [255, 32, 32]);
      const nanPx = packRgb(rgbOf(model.get("nan_color"), [128, 128, 128]));
      // cells in device pixels, then marks and labels in CSS pixels
      const marks: Mark[] = (st && cells.draw(ctx, g, store, si, markIndex(), lo, hi, log, lutPacked, nanPx, dpr)) || [];
      const tCells = performance.now();
      ctx.scale(dpr, dpr);
      drawMarks(ctx, g, marks, markRgb);
      const tMarks = performance.now();
      drawRowLabels(ctx, g, rows(), store.nRows, fg, marks, markRgb);
      // the step axis on its own canvas below the (maybe scrolled) rows
      if (!drawAxis(axis, g, store.steps, g.nVis, fg, marks, markRgb, dpr)) return;
      const barKey = `${lo} ${hi} ${log} ${fg} ${dpr} ${lutVersion}`; // redrawn only when it changes
      if (barKey !== colorbarKey) {
        drawColorbar(colorbar, lutPacked.length, toBytes(model.get("lut")), lo, hi, log, fg);
        colorbarKey = barKey;
      }
      zoomReset.style.display = g.nVis !== store.nCols ? "" : "none";
      if (hover) onHover(hover.x, hover.y);
      syncSelection(false);
      const tEnd = performance.now();
      canvas.setAttribute(
        "aria-label",
        `${model.get("title") || "heatmap"}: ${store.nRows} tensors × ${g.nVis} steps, ${st ? st.label : ""}` +
          (marks.length ? `, ${marks.length} cells with non-finite values` : ""),
      );
      // geometry and state for tests and tools
      Object.assign(root.dataset, {
        draws: String(++draws), columns: String(store.nCols), zoomed: String(g.nVis !== store.nCols),
        rows: String(store.nRows), seq: String(store.seq), stale: String(store.stale), gaps: String(store.gaps),
        snapshots: String(store.snapshots), stat: st ? st.key : "", drawMs: (tEnd - t0).toFixed(1),
        drawPhases: `range:${(tRange - t0).toFixed(1)} cells:${(tCells - tRange).toFixed(1)} ` +
          `marks:${(tMarks - tCells).toFixed(1)} labels:${(tEnd - tMarks).toFixed(1)}`,
      });
      Object.assign(canvas.dataset, {
        col0: String(g.col0), visible: String(g.nVis), vmin: String(lo), vmax: String(hi), cellW: String(g.cellW),
        cellH: String(g.cellH), x0: String(g.x0), y0: String(g.y0), agg: String(g.agg), bins: String(g.nBins),
        dpr: String(dpr), log: String(log), paints: String(cells.counts.paints), colored: String(cells.counts.colored), moved: String(cells.counts.moved),
      });
    };

    const schedule = () => {
      if (frame) return;
      if (document.hidden) frame = window.setTimeout(draw, 100) as unknown as number;
      else frame = requestAnimationFrame(draw);
    };

    const zoomer = attachZoom(canvas, root, scroll, zoomBox, {
      geometry: () => geom,
      nRows: () => store.nRows,
      steps: () => store.steps,
      onStart: () => hideTooltip(),
      onZoom: (z) => {
        zoom = z;
        schedule();
      },
    });

    // tooltip, and the step under the pointer (debounced) for linked panels (-1: none)
    const hideTooltip = () => {
      tooltip.style.display = "none";
    };
    const onHover = (x: number, y: number): number => {
      const cell = geom && !zoomer.dragging() ? cellAt(geom, x, y, store.nRows, store.nCols) : null;
      if (!cell) {
        hideTooltip();
        return -1;
      }
      const si = statIndex();
      showTooltip(tooltip, root, canvas, x, y, tooltipLines(store, cell, rows()[cell.row], stats()[si], si, markIndex()));
      tooltip.dataset.row = String(cell.row);
      tooltip.dataset.col = String(cell.c0);
      return store.steps[cell.c0];
    };
    let hoverTimer = 0;
    let hoverSent = -1;
    const sendHover = (step: number) => {
      window.clearTimeout(hoverTimer);
      hoverTimer = window.setTimeout(() => {
        if (step === hoverSent) return;
        hoverSent = step;
        model.set("hover_step", step);
        model.save_changes();
      }, 150);
    };
    const onMove = (ev: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      hover = { x: ev.clientX - rect.left, y: ev.clientY - rect.top };
      sendHover(onHover(hover.x, hover.y));
    };
    const onLeave = () => {
      hover = null;
      hideTooltip();
      sendHover(-1);
    };
    const resetZoom = () => {
      zoom = null;
      schedule();
    };
    const onSelect = () => {
      model.set("stat", select.value);
      model.save_changes();
      schedule();
    };
    const onStat = () => {
      const cur = stats()[statIndex()];
      if (cur && select.value !== cur.key) select.value = cur.key;
      schedule();
    };
    const onStats = () => {
      fillSelect();
      schedule();
    };
    const onLut = () => {
      lutPacked = packLut(toBytes(model.get("lut")));
      lutVersion++;
      schedule();
    };
    const onSelection = () => syncSelection(true);
    const detachClick = attachClickSelect(canvas, () => geom, rows, store, (module, step, tensor) => {
      model.set("selected_module", module);
      model.set("selected_tensor", tensor);
      if (step >= 0) model.set("selected_step", step);
      model.save_changes();
    });

    const domEvents: Array<[EventTarget, string, EventListener]> = [
      [canvas, "mousemove", onMove as EventListener],
      [canvas, "dblclick", resetZoom],
      [canvas, "mouseleave", onLeave],
      [zoomReset, "click", resetZoom],
      [select, "change", onSelect],
    ];
    for (const [t, ev, fn] of domEvents) t.addEventListener(ev, fn);
    const modelEvents: Array<[string, () => void]> = [
      ["change:selected_module", onSelection],
      ["change:selected_step", onSelection],
      ["change:stat", onStat],
      ["change:mark_stat", schedule],
      ["change:stats", onStats],
      ["change:rows", schedule],
      ["change:status", syncText],
      ["change:title", syncText],
      ["change:lut", onLut],
      ["change:nan_color", schedule],
      ["change:mark_color", schedule],
    ];
    for (const [ev, fn] of modelEvents) model.on(ev, fn);
    const unsubscribe = store.subscribe(schedule);
    let lastWidth = 0;
    const resize = new ResizeObserver(() => {
      const w = host.clientWidth;
      if (w !== lastWidth) {
        lastWidth = w;
        schedule();
      }
    });
    resize.observe(host);

    fillSelect();
    syncText();
    draw();

    return () => {
      unsubscribe();
      window.clearTimeout(hoverTimer);
      resize.disconnect();
      if (frame) {
        cancelAnimationFrame(frame);
        clearTimeout(frame);
      }
      zoomer.detach();
      detachClick();
      for (const [t, ev, fn] of domEvents) t.removeEventListener(ev, fn);
      for (const [ev, fn] of modelEvents) model.off(ev, fn);
      root.remove();
    };
  };
}
