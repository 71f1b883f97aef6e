// The heatmap panel's view: the DOM, the draw loop (see draw.ts for the drawing itself),
// the tooltip, drag-to-zoom, the linked selection (selected_module / selected_step /
// hover_step) and the event wiring. All text goes through textContent / fillText.
import type { Render } from "@anywidget/types";
import { formatFloat32, packLut, packRgb } from "../colors";
import {
  computeGeometry,
  drawAxis,
  drawCells,
  drawColorbar,
  drawMarks,
  drawRowLabels,
  Geometry,
  LABEL_FONT,
  LabelWidths,
  lowerBound,
  Mark,
  measureLabels,
  rgbOf,
} from "./draw";
import { Model, RowInfo, StatInfo, Store, toBytes } from "./store";
import { CSS } from "./style";

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  return e;
}

/** The anywidget render of a heatmap panel showing `store`. */
export function createRender(store: Store): Render<Model> {
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
    scroll.appendChild(canvas);
    const axis = el("canvas", "dsn-heatmap-axis");
    const tooltip = el("div", "dsn-tooltip");
    root.append(style, header, status, scroll, axis, tooltip, zoomBox);
    canvas.title = "drag across steps to zoom in; double-click to show all steps";
    host.appendChild(root);

    let draws = 0;
    let geom: Geometry | null = null;
    let lutPacked = packLut(toBytes(model.get("lut")));
    let frame = 0;
    let hover: { x: number; y: number } | null = null;
    let zoom: { start: number; end: number } | null = null; // steps shown, inclusive
    let dragFrom: number | null = null;
    let labelWidths: LabelWidths = { rows: null, modW: 0, tenW: 0 };

    const stats = (): StatInfo[] => model.get("stats") || [];
    const rows = (): RowInfo[] => model.get("rows") || [];
    const statIndex = (): number => {
      const key = model.get("stat");
      const i = stats().findIndex((s) => s.key === key);
      return i >= 0 ? i : 0;
    };
    const markIndex = (): number => stats().findIndex((s) => s.key === model.get("mark_stat"));

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

    const currentRange = (): [number, number] => {
      const si = statIndex();
      const st = stats()[si];
      return st ? store.range(si, !!st.log) : [NaN, NaN];
    };

    const visible = (): [number, number] => {
      const C = store.nCols;
      if (!zoom || C === 0) return [0, C];
      const a = lowerBound(store.steps, zoom.start);
      const b = lowerBound(store.steps, zoom.end + 1e-9);
      if (b - a < 2) {
        zoom = null;
        return [0, C];
      }
      return [a, b - a];
    };

    const draw = () => {
      frame = 0;
      const t0 = performance.now();
      const ctx0 = canvas.getContext("2d");
      if (!ctx0) return;
      const ctx: CanvasRenderingContext2D = ctx0;
      const dpr = window.devicePixelRatio || 1;
      const [col0, nVis] = visible();
      ctx.font = LABEL_FONT;
      labelWidths = measureLabels(ctx, rows(), labelWidths);
      const g = computeGeometry(store.nRows, col0, nVis, labelWidths, host.clientWidth || root.clientWidth || 800);
      geom = g;
      const R = store.nRows;
      const C = g.nVis;
      canvas.width = Math.round(g.cssW * dpr);
      canvas.height = Math.round(g.cssH * dpr);
      canvas.style.width = `${g.cssW}px`;
      canvas.style.height = `${g.cssH}px`;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);

      const cs = getComputedStyle(root);
      const fg = cs.color || "#222";
      const si = statIndex();
      const st = stats()[si];
      const log = !!(st && st.log);
      const [lo, hi] = currentRange();
      const tRange = performance.now();
      const nanRgb = rgbOf(model.get("nan_color"), [128, 128, 128]);
      const markRgb = rgbOf(model.get("mark_color"), [255, 32, 32]);
      const nanPx = packRgb(nanRgb);
      const mi = markIndex();
      let marks: Mark[] = [];
      let tCells = tRange;

      // cells, device pixels (draw.ts), then marks and labels in CSS pixels
      const cells = st ? drawCells(ctx, g, store, si, mi, lo, hi, log, lutPacked, nanPx, dpr) : null;
      if (cells) {
        marks = cells;
        tCells = performance.now();
      }
      ctx.scale(dpr, dpr);
      drawMarks(ctx, g, marks, markRgb);
      const tMarks = performance.now();
      drawRowLabels(ctx, g, rows(), R, fg, marks, markRgb);

      // x axis: step numbers, on its own canvas below the (maybe scrolled) rows
      if (!drawAxis(axis, g, store.steps, C, fg, marks, markRgb, dpr)) return;
      drawColorbar(colorbar, lutPacked.length, toBytes(model.get("lut")), lo, hi, log, fg);

      // geometry and state for tests and tools
      root.dataset.draws = String(++draws);
      root.dataset.columns = String(store.nCols);
      root.dataset.zoomed = String(g.nVis !== store.nCols);
      canvas.dataset.col0 = String(g.col0);
      canvas.dataset.visible = String(g.nVis);
      zoomReset.style.display = g.nVis !== store.nCols ? "" : "none";
      root.dataset.rows = String(R);
      root.dataset.seq = String(store.seq);
      root.dataset.stale = String(store.stale);
      root.dataset.gaps = String(store.gaps);
      root.dataset.snapshots = String(store.snapshots);
      root.dataset.stat = st ? st.key : "";
      canvas.dataset.vmin = String(lo);
      canvas.dataset.vmax = String(hi);
      canvas.dataset.cellW = String(g.cellW);
      canvas.dataset.cellH = String(g.cellH);
      canvas.dataset.x0 = String(g.x0);
      canvas.dataset.y0 = String(g.y0);
      canvas.dataset.agg = String(g.agg);
      canvas.dataset.bins = String(g.nBins);
      canvas.dataset.dpr = String(dpr);
      canvas.dataset.log = String(log);
      if (hover) showTooltip(hover.x, hover.y);
      placeSelection();
      const tEnd = performance.now();
      canvas.setAttribute(
        "aria-label",
        `${model.get("title") || "heatmap"}: ${R} tensors × ${C} steps, ${st ? st.label : ""}` +
          (marks.length ? `, ${marks.length} cells with non-finite values` : ""),
      );
      root.dataset.drawMs = (tEnd - t0).toFixed(1);
      root.dataset.drawPhases = [
        `range:${(tRange - t0).toFixed(1)}`,
        `cells:${(tCells - tRange).toFixed(1)}`,
        `marks:${(tMarks - tCells).toFixed(1)}`,
        `labels:${(tEnd - tMarks).toFixed(1)}`,
      ].join(" ");
    };

    const line = (cls: string, text: string): HTMLDivElement => {
      const d = el("div", cls);
      d.textContent = text;
      return d;
    };

    const showTooltip = (x: number, y: number) => {
      const g = geom;
      const R = store.nRows;
      if (!g || g.nVis === 0 || dragFrom !== null) return hideTooltip();
      const b = Math.floor((x - g.x0) / g.cellW);
      const r = Math.floor((y - g.y0) / g.cellH);
      if (b < 0 || b >= g.nBins || r < 0 || r >= R) return hideTooltip();
      const c0 = g.col0 + b * g.agg;
      const c1 = Math.min(g.col0 + g.nVis, c0 + g.agg);
      if (c0 >= store.nCols) return hideTooltip();
      const row = rows()[r];
      const si = statIndex();
      const st = stats()[si];
      const mi = markIndex();
      let v = NaN;
      let bad = 0;
      for (let c = c0; c < c1; c++) {
        const u = store.data[si][c * R + r];
        if (u === u && (v !== v || u > v)) v = u;
        if (mi >= 0) {
          const m = store.data[mi][c * R + r];
          if (m > 0) bad += m;
        }
      }
      const parts: HTMLElement[] = [
        line("dsn-tt-module", `module: ${row ? row.module || "(root)" : "?"}`),
        line("dsn-tt-tensor", `tensor: ${row ? row.tensor : "?"}${row && row.shape ? `  [${row.shape.join("×")}]` : ""}`),
        line(
          "dsn-tt-step",
          c1 - c0 > 1
            ? `steps: ${store.steps[c0]}–${store.steps[c1 - 1]} (max of ${c1 - c0})`
            : `step: ${store.steps[c0]}`,
        ),
        line("dsn-tt-value", `${st ? st.label : "value"}: ${formatFloat32(v)}`),
      ];
      if (bad > 0) parts.push(line("dsn-tt-mark", `non-finite values: ${formatFloat32(bad)}`));
      tooltip.replaceChildren(...parts);
      tooltip.dataset.row = String(r);
      tooltip.dataset.col = String(c0);
      tooltip.style.display = "block";
      // place near the pointer, inside the widget
      const rootRect = root.getBoundingClientRect();
      const canRect = canvas.getBoundingClientRect();
      let left = canRect.left - rootRect.left + x + 14;
      let top = canRect.top - rootRect.top + y + 14;
      const tw = tooltip.offsetWidth;
      const th = tooltip.offsetHeight;
      if (left + tw > root.clientWidth) left = Math.max(0, left - tw - 28);
      if (top + th > root.clientHeight) top = Math.max(0, top - th - 24);
      tooltip.style.left = `${left}px`;
      tooltip.style.top = `${top}px`;
    };
    const hideTooltip = () => {
      tooltip.style.display = "none";
    };

    const schedule = () => {
      if (frame) return;
      if (document.hidden) frame = window.setTimeout(draw, 100) as unknown as number;
      else frame = requestAnimationFrame(draw);
    };

    // the step under the pointer, debounced, for linked panels (-1: none)
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
      showTooltip(hover.x, hover.y);
      const c = tooltip.style.display === "block" ? Number(tooltip.dataset.col) : -1;
      sendHover(c >= 0 && c < store.nCols ? store.steps[c] : -1);
    };
    // zoom: drag across steps; double-click or the button shows all again
    const plotX = (ev: MouseEvent): number => {
      const g = geom;
      const x = ev.clientX - canvas.getBoundingClientRect().left;
      if (!g) return x;
      return Math.min(Math.max(x, g.x0), g.x0 + g.nBins * g.cellW - 0.01);
    };
    const onDown = (ev: MouseEvent) => {
      const g = geom;
      if (ev.button !== 0 || !g || g.nVis < 2) return;
      const x = ev.clientX - canvas.getBoundingClientRect().left;
      if (x < g.x0 || x >= g.x0 + g.nBins * g.cellW) return;
      ev.preventDefault();
      dragFrom = x;
      hideTooltip();
      window.addEventListener("mousemove", onDrag);
      window.addEventListener("mouseup", onUp);
    };
    const onDrag = (ev: MouseEvent) => {
      const g = geom;
      if (dragFrom === null || !g) return;
      const x = plotX(ev);
      const rootRect = root.getBoundingClientRect();
      const canRect = canvas.getBoundingClientRect();
      const left = canRect.left - rootRect.left + Math.min(x, dragFrom);
      zoomBox.style.display = "block";
      zoomBox.style.left = `${left}px`;
      zoomBox.style.width = `${Math.abs(x - dragFrom)}px`;
      zoomBox.style.top = `${canRect.top - rootRect.top + g.y0}px`;
      zoomBox.style.height = `${Math.min(store.nRows * g.cellH, scroll.clientHeight || 1e9)}px`;
    };
    const onUp = (ev: MouseEvent) => {
      window.removeEventListener("mousemove", onDrag);
      window.removeEventListener("mouseup", onUp);
      const g = geom;
      const from = dragFrom;
      dragFrom = null;
      zoomBox.style.display = "none";
      if (from === null || !g) return;
      const x = plotX(ev);
      const b0 = Math.floor((Math.min(x, from) - g.x0) / g.cellW);
      const b1 = Math.floor((Math.max(x, from) - g.x0) / g.cellW);
      const a = g.col0 + Math.max(0, b0) * g.agg;
      const e = Math.min(g.col0 + g.nVis - 1, g.col0 + b1 * g.agg + g.agg - 1);
      if (e - a < 1 || Math.abs(x - from) < 3) return; // a click, not a drag
      zoom = { start: store.steps[a], end: store.steps[e] };
      schedule();
    };
    const resetZoom = () => {
      zoom = null;
      schedule();
    };
    const onLeave = () => {
      hover = null;
      hideTooltip();
      sendHover(-1);
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
      schedule();
    };

    // linked selection: a click on a cell (or a row label) selects its module (and the
    // cell's step); Python links `selected_module` / `selected_step` to other panels
    const selBox = el("div", "dsn-heatmap-selection");
    const stepMark = el("div", "dsn-heatmap-step-mark");
    scroll.append(selBox, stepMark);
    let clickFrom: { x: number; y: number } | null = null;
    const placeSelection = (reveal = false) => {
      const g = geom;
      const mod = model.get("selected_module") || "";
      const stepSel = model.get("selected_step");
      const rs = rows();
      let r0 = -1;
      let r1 = -1;
      for (let r = 0; r < rs.length; r++) {
        if (mod && rs[r].module === mod) {
          if (r0 < 0) r0 = r;
          r1 = r;
        }
      }
      root.dataset.selectedModule = mod;
      root.dataset.selectedStep = String(stepSel ?? -1);
      root.dataset.selectedRows = r0 >= 0 ? `${r0}-${r1}` : "";
      if (!g || r0 < 0) selBox.style.display = "none";
      else {
        selBox.style.display = "block";
        selBox.style.left = "0px";
        selBox.style.top = `${g.y0 + r0 * g.cellH - 1}px`;
        selBox.style.width = `${g.x0 + g.nBins * g.cellW + 2}px`;
        selBox.style.height = `${(r1 - r0 + 1) * g.cellH + 2}px`;
        if (reveal) {
          const top = g.y0 + r0 * g.cellH;
          const bottom = g.y0 + (r1 + 1) * g.cellH;
          if (top < scroll.scrollTop || bottom > scroll.scrollTop + scroll.clientHeight) {
            scroll.scrollTop = Math.max(0, top - 20);
          }
        }
      }
      const c = stepSel !== undefined && stepSel >= 0 ? store.steps.indexOf(stepSel) : -1;
      if (!g || c < g.col0 || c >= g.col0 + g.nVis) stepMark.style.display = "none";
      else {
        const b = Math.floor((c - g.col0) / g.agg);
        stepMark.style.display = "block";
        stepMark.style.left = `${g.x0 + b * g.cellW - 1}px`;
        stepMark.style.top = `${g.y0}px`;
        stepMark.style.width = `${Math.max(2, g.cellW) + 2}px`;
        stepMark.style.height = `${store.nRows * g.cellH}px`;
      }
    };
    const onClickDown = (ev: MouseEvent) => {
      clickFrom = { x: ev.clientX, y: ev.clientY };
    };
    const onClick = (ev: MouseEvent) => {
      const g = geom;
      const from = clickFrom;
      clickFrom = null;
      if (!g || !from || Math.abs(ev.clientX - from.x) + Math.abs(ev.clientY - from.y) > 4) return; // a drag
      const rect = canvas.getBoundingClientRect();
      const x = ev.clientX - rect.left;
      const y = ev.clientY - rect.top;
      const r = Math.floor((y - g.y0) / g.cellH);
      const row = rows()[r];
      if (!row) return;
      model.set("selected_module", row.module);
      const b = Math.floor((x - g.x0) / g.cellW);
      if (x >= g.x0 && b >= 0 && b < g.nBins) {
        const c = g.col0 + b * g.agg;
        if (c < store.nCols) model.set("selected_step", store.steps[c]);
      }
      model.save_changes();
    };
    const onSelection = () => placeSelection(true);
    canvas.addEventListener("mousedown", onClickDown);
    canvas.addEventListener("click", onClick);
    model.on("change:selected_module", onSelection);
    model.on("change:selected_step", onSelection);

    canvas.addEventListener("mousemove", onMove);
    canvas.addEventListener("mousedown", onDown);
    canvas.addEventListener("dblclick", resetZoom);
    zoomReset.addEventListener("click", resetZoom);
    canvas.addEventListener("mouseleave", onLeave);
    select.addEventListener("change", onSelect);
    const unsubscribe = store.subscribe(schedule);
    model.on("change:stat", onStat);
    model.on("change:mark_stat", schedule);
    model.on("change:stats", onStats);
    model.on("change:rows", schedule);
    model.on("change:status", syncText);
    model.on("change:title", syncText);
    model.on("change:lut", onLut);
    model.on("change:nan_color", schedule);
    model.on("change:mark_color", schedule);
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
      canvas.removeEventListener("mousedown", onClickDown);
      canvas.removeEventListener("click", onClick);
      model.off("change:selected_module", onSelection);
      model.off("change:selected_step", onSelection);
      canvas.removeEventListener("mousemove", onMove);
      canvas.removeEventListener("mousedown", onDown);
      canvas.removeEventListener("dblclick", resetZoom);
      zoomReset.removeEventListener("click", resetZoom);
      window.removeEventListener("mousemove", onDrag);
      window.removeEventListener("mouseup", onUp);
      canvas.removeEventListener("mouseleave", onLeave);
      select.removeEventListener("change", onSelect);
      model.off("change:stat", onStat);
      model.off("change:mark_stat", schedule);
      model.off("change:stats", onStats);
      model.off("change:rows", schedule);
      model.off("change:status", syncText);
      model.off("change:title", syncText);
      model.off("change:lut", onLut);
      model.off("change:nan_color", schedule);
      model.off("change:mark_color", schedule);
      root.remove();
    };
  };
}
