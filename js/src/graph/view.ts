// The graph panel's view (elements from dom.ts): the
// layout cache (one per set of expanded groups), the draw loop that recolours for the
// shown step, selection (linked to other panels via selected_module / selected_node),
// expand / collapse, and the event wiring. Every text goes through textContent.
import type { Render } from "@anywidget/types";
import type { SeriesStore } from "../shared/store";
import { scale, RGB } from "../shared/colors";
import { toBytes } from "../shared/series";
import { buildDom } from "./dom";
import { buildSvg, drawBar, legendItem, paintLayout } from "./draw";
import { attachPanZoom, centerOn, firstView, fitView } from "./interaction";
import { computeLayout, Layout } from "./layout";
import { renderEvents as renderEventList, renderSide } from "./panel";
import { Structure } from "./structure";
import type { Model, StatInfo } from "./types";

/** The anywidget render of a graph panel showing the node values in `store`. */
export function createRender(store: SeriesStore): Render<Model> {
  return ({ model, el: host }) => {
    const { root, title, select, slider, stepLabel, latestBtn, fitBtn, expandBtn, collapseBtn, legend, bar, status,
      canvasBox, sv, viewport, layers, markerId, side, events } = buildDom(host);

    let S = new Structure(model.get("graph"));
    let expanded = S.defaultExpanded(model.get("max_visible") || 160);
    let layout: Layout | null = null;
    const cache = new Map<string, Layout>();
    let rowOf = new Map<string, number>();
    let view = { k: 1, x: 0, y: 0 };
    let frame = 0;
    let draws = 0;
    let layouts = 0;
    let fitted = false;

    const stats = (): StatInfo[] => model.get("stats") || [];
    const statIdx = (key: string): number => stats().findIndex((s) => s.key === key);
    const curStat = (): number => Math.max(0, statIdx(model.get("stat")));
    const rebuildRows = () => {
      rowOf = new Map();
      (model.get("rows") || []).forEach((r, i) => rowOf.set(r.id, i));
    };
    rebuildRows();

    /** The column shown: the latest at or before the `step` trait (-1: the latest). */
    const column = (): number => store.columnAt(model.get("step") ?? -1);
    const value = (si: number, c: number, r: number): number => store.value(si, c, r);

    const applyView = () => {
      viewport.setAttribute("transform", `translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(4)})`);
      sv.classList.toggle("dsn-far", view.k < 0.6);
      root.dataset.zoom = view.k.toFixed(3);
    };
    const boxSize = (): [number, number] => [canvasBox.clientWidth || 800, canvasBox.clientHeight || 520];
    const fit = () => {
      if (!layout) return;
      view = fitView(layout.width, layout.height, ...boxSize());
      applyView();
    };
    const revealBox = (id: string) => {
      const b = layout && layout.boxes.get(id);
      if (!b) return;
      const next = centerOn(view, b.x, b.y, ...boxSize());
      if (next === view) return;
      view = next;
      applyView();
    };

    // -------------------------------------------------------------- building the SVG
    const build = () => {
      buildSvg(layout, layers, markerId);
      if (layout) sv.setAttribute("aria-label", `${S.nodes.length} nodes, ${layout.boxes.size} shown`);
    };

    const relayout = () => {
      const key = [...expanded].sort().join("\u0001");
      let L = cache.get(key);
      if (!L) {
        L = computeLayout(S, expanded, rowOf);
        cache.set(key, L);
        layouts++;
      }
      layout = L;
      root.dataset.layouts = String(layouts);
      root.dataset.layoutMs = L.ms.toFixed(1);
      root.dataset.visible = String(L.boxes.size);
      root.dataset.clusters = String(L.clusters.length);
      root.dataset.nodes = String(S.nodes.length);
      const tb = performance.now();
      build();
      root.dataset.buildMs = (performance.now() - tb).toFixed(1);
      if (!fitted) {
        view = firstView(L.width, L.height, ...boxSize());
        applyView();
        fitted = true;
      }
      draw();
    };
    const relayoutSoon = (why: string) => {
      status.textContent = why;
      root.dataset.busy = "1";
      window.setTimeout(() => {
        relayout();
        root.dataset.busy = "0";
        syncStatus();
      }, 20);
    };

    // -------------------------------------------------------------- colouring
    const lutBytes = (): Uint8Array => toBytes(model.get("lut"));
    const rgbOf = (i: number): RGB => {
      const l = lutBytes();
      return [l[3 * i], l[3 * i + 1], l[3 * i + 2]];
    };
    const selectedIds = (): Set<string> => {
      const out = new Set<string>();
      const mod = model.get("selected_module") || "";
      const nid = model.get("selected_node") || "";
      if (nid) out.add(nid);
      if (mod) for (const n of S.nodes) if (n.kind === "module" && n.name === mod) out.add(n.id);
      return out;
    };

    const draw = () => {
      frame = 0;
      const t0 = performance.now();
      const L = layout;
      const si = curStat();
      const st = stats()[si];
      const log = !!(st && st.log);
      const [lo, hi] = st && store.nCols ? store.range(si, log) : [NaN, NaN];
      const toIdx = scale(lo, hi, log);
      const c = column();
      const nfI = statIdx("nonfinite");
      const deadI = statIdx("dead_frac");
      const evNodes = new Set((model.get("events") || []).filter((e) => e.kind === "nonfinite" && e.node).map((e) => e.node));
      const sel = selectedIds();
      let nDead = 0;
      let nBad = 0;
      if (L) {
        const counts = paintLayout(L, { rowOf, value, si, st, c, nfI, deadI, toIdx, rgbOf, evNodes, sel });
        nBad = counts.nBad;
        nDead = counts.nDead;
      }
      drawBar(bar, root, lo, hi, log, rgbOf);
      // step control
      slider.max = String(Math.max(0, store.nCols - 1));
      slider.value = String(Math.max(0, c));
      slider.disabled = store.nCols < 2;
      stepLabel.textContent = c >= 0 ? `step ${store.steps[c]}${model.get("step") < 0 ? " (latest)" : ""}` : "no steps yet";
      legend.replaceChildren();
      if (nBad) legend.appendChild(legendItem("rgb(220,30,30)", `${nBad} non-finite`));
      if (nDead) legend.appendChild(legendItem("#e08e0b", `${nDead} dead`));
      renderSide(side, { model, S, store, rowOf, value, column, curStat, stats, expanded, toggle });
      root.dataset.draws = String(++draws);
      root.dataset.column = String(c);
      root.dataset.step = c >= 0 ? String(store.steps[c]) : "";
      root.dataset.columns = String(store.nCols);
      root.dataset.stat = st ? st.key : "";
      root.dataset.selectedNode = model.get("selected_node") || "";
      root.dataset.selectedModule = model.get("selected_module") || "";
      root.dataset.drawMs = (performance.now() - t0).toFixed(1);
    };

    // -------------------------------------------------------------- events list
    const renderEvents = () => renderEventList(events, model, S, selectNode);

    // -------------------------------------------------------------- interaction
    const schedule = () => {
      if (frame) return;
      frame = document.hidden ? (window.setTimeout(draw, 100) as unknown as number) : requestAnimationFrame(draw);
    };
    const selectNode = (id: string, reveal: boolean) => {
      const n = S.byId.get(id);
      if (!n) return;
      model.set("selected_node", id);
      model.set("selected_module", n.kind === "module" ? n.name : "");
      model.save_changes();
      if (reveal && layout) {
        const r = layout.rep.get(id);
        if (r) revealBox(r);
      }
      schedule();
    };
    const toggle = (id: string) => {
      if (!S.isGroup(id) || id === S.root) return;
      if (expanded.has(id)) {
        // collapse it and everything inside
        const stack = [id];
        while (stack.length) {
          const g = stack.pop() as string;
          expanded.delete(g);
          for (const k of S.children.get(g) || []) if (S.isGroup(k)) stack.push(k);
        }
      } else expanded.add(id);
      expanded = new Set(expanded);
      const key = [...expanded].sort().join("\u0001");
      if (cache.has(key)) relayout();
      else relayoutSoon("laying out…");
    };
    const onSlider = () => {
      const c = Number(slider.value);
      if (c >= 0 && c < store.nCols) {
        model.set("step", c === store.nCols - 1 ? -1 : store.steps[c]);
        model.save_changes();
        schedule();
      }
    };
    const onLatest = () => {
      model.set("step", -1);
      model.save_changes();
      schedule();
    };
    const onStatSelect = () => {
      model.set("stat", select.value);
      model.save_changes();
      schedule();
    };
    const fillSelect = () => {
      select.replaceChildren();
      for (const s of stats()) {
        const o = document.createElement("option");
        o.value = s.key;
        o.textContent = s.label || s.key;
        select.appendChild(o);
      }
      const cur = stats()[curStat()];
      if (cur) select.value = cur.key;
    };
    const syncStatus = () => {
      title.textContent = model.get("title") || "";
      const g = model.get("graph") || {};
      const parts = [model.get("status") || ""];
      if (g.model) parts.push(`${g.model}: ${S.nodes.length} nodes, ${S.edges.length} edges` + (layout ? `, ${layout.boxes.size} shown` : ""));
      if (g.message) parts.push(g.message);
      status.textContent = parts.filter(Boolean).join(" · ");
    };
    const onGraph = () => {
      S = new Structure(model.get("graph"));
      expanded = S.defaultExpanded(model.get("max_visible") || 160);
      cache.clear();
      fitted = false;
      rebuildRows();
      renderEvents();
      syncStatus();
      if (S.nodes.length) relayoutSoon("laying out…");
      else {
        layout = null;
        build();
        draw();
      }
    };
    const onRows = () => {
      rebuildRows();
      cache.clear();
      if (S.nodes.length) relayout();
    };
    const onExternalSelect = () => {
      // selection from another panel: reveal the node (or the collapsed group holding it)
      const mod = model.get("selected_module") || "";
      const cur = S.byId.get(model.get("selected_node") || "");
      if (cur && cur.name !== mod) {
        // the node clicked here before belongs to another module now: follow the new selection
        const n = mod ? S.nodes.find((m) => m.kind === "module" && m.name === mod) : undefined;
        model.set("selected_node", n ? n.id : "");
        model.save_changes();
      }
      if (mod) {
        const n = S.nodes.find((m) => m.kind === "module" && m.name === mod);
        if (n && layout) {
          const r = layout.rep.get(n.id);
          if (r) revealBox(r);
        }
      }
      schedule();
    };

    const detachPanZoom = attachPanZoom(sv, root, {
      view: () => view,
      applyView,
      onClickNode: (id) => selectNode(id, false),
      onDblClickNode: (id) => {
        if (S.isGroup(id)) toggle(id);
      },
    });
    slider.addEventListener("input", onSlider);
    latestBtn.addEventListener("click", onLatest);
    select.addEventListener("change", onStatSelect);
    fitBtn.addEventListener("click", fit);
    expandBtn.addEventListener("click", () => {
      expanded = new Set(S.groups.map((g) => g.id));
      relayoutSoon(`laying out ${S.nodes.length} nodes…`);
    });
    collapseBtn.addEventListener("click", () => {
      expanded = S.defaultExpanded(model.get("max_visible") || 160);
      relayoutSoon("laying out…");
    });
    const unsub = store.subscribe(schedule);
    const handlers: Array<[string, () => void]> = [
      ["change:graph", onGraph],
      ["change:rows", onRows],
      ["change:stat", () => { fillSelect(); schedule(); }],
      ["change:stats", () => { fillSelect(); schedule(); }],
      ["change:step", schedule],
      ["change:selected_module", onExternalSelect],
      ["change:selected_node", schedule],
      ["change:events", () => { renderEvents(); schedule(); }],
      ["change:status", syncStatus],
      ["change:title", syncStatus],
      ["change:lut", schedule],
    ];
    for (const [ev, fn] of handlers) model.on(ev, fn);

    fillSelect();
    syncStatus();
    renderEvents();
    if (S.nodes.length) {
      relayout();
      syncStatus();
    } else draw();

    return () => {
      unsub();
      for (const [ev, fn] of handlers) model.off(ev, fn);
      detachPanZoom();
      if (frame) {
        cancelAnimationFrame(frame);
        clearTimeout(frame);
      }
      root.remove();
    };
  };
}
