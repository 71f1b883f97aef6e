// The flame view's DOM: header with controls, the canvas, the tooltip and the details panel.
// Names are drawn on the canvas with fillText and shown in the DOM through textContent only.
import { css, el, formatSeconds, text } from "../shared/ui";
import { DETAIL_COLUMNS, detailRows, fill, fitLabel, FlameNode, hit, layout, Rect, ROW_H, tooltipLines, zoomTo } from "./layout";

export interface FlameModel {
  nodes: FlameNode[];
  total: number;
  mode: string;
  modes: string[];
  call_index: number;
  calls: number;
  step: number;
  steps: number[];
  shown_call: number;
  shown_step: number;
  selected: string;
  selected_module: string;
  overhead: { call_s?: Record<string, number>; ready?: boolean };
  hidden: number;
  status: string;
  title: string;
}

export interface ModelLike {
  get<K extends keyof FlameModel>(k: K): FlameModel[K];
  set<K extends keyof FlameModel>(k: K, v: FlameModel[K]): void;
  save_changes(): void;
}

const STYLE = `
.dsn-flame { box-sizing: border-box; padding: 6px 4px; font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); position: relative; }
.dsn-flame-head { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px; margin-bottom: 4px; }
.dsn-flame-title { font-weight: 600; }
.dsn-flame-status, .dsn-flame-cost { color: var(--jp-ui-font-color2, #666); font-size: var(--jp-ui-font-size0, 11px); }
.dsn-flame button { font: inherit; font-size: var(--jp-ui-font-size0, 12px); color: inherit; cursor: pointer;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; padding: 1px 6px; }
.dsn-flame button.dsn-on { background: var(--jp-brand-color1, #1976d2); color: #fff; border-color: transparent; }
.dsn-flame button:disabled { opacity: .45; cursor: default; }
.dsn-flame-canvas { display: block; width: 100%; cursor: pointer; }
.dsn-flame-empty { color: var(--jp-ui-font-color2, #777); font-style: italic; padding: 8px 0; }
.dsn-flame-tip { position: fixed; pointer-events: none; z-index: 10; max-width: 520px; white-space: pre-wrap;
  background: var(--jp-layout-color0, #fff); border: 1px solid var(--jp-border-color1, #aaa); border-radius: 3px;
  padding: 4px 6px; font-size: var(--jp-ui-font-size0, 12px); box-shadow: 0 1px 4px rgba(0,0,0,.2); display: none; }
.dsn-flame-details { margin-top: 6px; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-flame-details h4 { margin: 4px 0; font-size: var(--jp-ui-font-size1, 13px); }
.dsn-flame-details table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.dsn-flame-details td, .dsn-flame-details th { padding: 1px 8px 1px 0; text-align: left; white-space: nowrap; }
.dsn-flame-details th { color: var(--jp-ui-font-color2, #666); font-weight: 500; }
`;

const MODE_LABELS: Record<string, string> = { call: "one call", step: "per step", all: "all calls" };

/** Builds the panel into `root`; returns its redraw function. */
export function mountFlame(root: HTMLElement, model: ModelLike): { draw: () => void; paint: () => void } {
  root.className = "dsn-flame";
  const head = el("div", "dsn-flame-head");
  const canvas = el("canvas", "dsn-flame-canvas");
  const empty = text("div", "dsn-flame-empty", "no traced calls yet: decorate a function with @dsnotebook.trace");
  const tip = el("div", "dsn-flame-tip");
  const details = el("div", "dsn-flame-details");
  root.append(css(STYLE), head, empty, canvas, tip, details);
  let range: [number, number] | null = null; // zoomed x range (seconds); null = everything
  let rects: Rect[] = [];
  let hover = -1;
  let draws = 0;
  const nodes = () => model.get("nodes") || [];

  const setTrait = <K extends keyof FlameModel>(k: K, v: FlameModel[K]) => {
    model.set(k, v);
    model.save_changes();
  };

  const drawHead = () => {
    const mode = model.get("mode") || "call";
    const items: Node[] = [text("span", "dsn-flame-title", model.get("title") || "traced functions")];
    for (const m of model.get("modes") || ["call", "all"]) {
      const b = text("button", `dsn-flame-mode${m === mode ? " dsn-on" : ""}`, MODE_LABELS[m] || m);
      b.dataset.mode = m;
      b.addEventListener("click", () => {
        range = null;
        setTrait("mode", m);
      });
      items.push(b);
    }
    if (mode === "call") {
      const n = model.get("calls") || 0;
      const i = model.get("shown_call");
      const prev = text("button", "dsn-flame-prev", "◀");
      const next = text("button", "dsn-flame-next", "▶");
      prev.disabled = !(i > 0);
      next.disabled = !(i >= 0 && i < n - 1);
      prev.addEventListener("click", () => { range = null; setTrait("call_index", Math.max(0, i - 1)); });
      next.addEventListener("click", () => { range = null; setTrait("call_index", i + 1 >= n - 1 ? -1 : i + 1); });
      items.push(prev, text("span", "dsn-flame-status", n ? `call ${i + 1} of ${n}${model.get("call_index") < 0 ? " (latest)" : ""}` : "no calls"), next);
    } else if (mode === "step") {
      const s = model.get("shown_step");
      items.push(text("span", "dsn-flame-status", s >= 0 ? `step ${s} (click a heatmap column for another)` : "no step"));
    }
    if (range) {
      const reset = text("button", "dsn-flame-reset", "reset zoom");
      reset.addEventListener("click", () => { range = null; paint(); drawHead(); });
      items.push(reset);
    }
    const cost = (model.get("overhead") || {}).call_s || {};
    const parts = [];
    if (cost.function) parts.push(`tracing costs ${formatSeconds(cost.function)} per call`);
    if (cost.module) parts.push(`${formatSeconds(cost.module)} per module`);
    if (parts.length) items.push(text("span", "dsn-flame-cost", parts.join(", ") + " (subtracted from the times shown)"));
    const hidden = model.get("hidden") || 0;
    if (hidden) items.push(text("span", "dsn-flame-status", `${hidden} small boxes not shown`));
    if (model.get("status")) items.push(text("span", "dsn-flame-status", model.get("status")));
    head.replaceChildren(...items);
  };

  const paint = () => {
    const ns = nodes();
    const total = model.get("total") || 0;
    empty.style.display = ns.length ? "none" : "";
    canvas.style.display = ns.length ? "" : "none";
    const width = Math.max(200, root.clientWidth - 8 || 760);
    const depth = ns.reduce((a, n) => Math.max(a, n.depth), 0) + 1;
    const height = depth * ROW_H + 2;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.height = `${height}px`;
    const [x0, x1] = range ?? [0, total > 0 ? total : 1];
    rects = layout(ns, x0, x1, width);
    const ctx = canvas.getContext("2d");
    if (ctx) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = "11px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      const sel = model.get("selected");
      const selMod = model.get("selected_module");
      for (const r of rects) {
        const n = ns[r.i];
        ctx.fillStyle = fill(n);
        ctx.fillRect(r.x, r.y, Math.max(r.w - 0.5, 0.5), r.h);
        if (n.id === sel || (selMod && n.module === selMod) || r.i === hover) {
          ctx.strokeStyle = n.id === sel ? "#111" : "#1976d2";
          ctx.lineWidth = n.id === sel || r.i === hover ? 2 : 1.5;
          ctx.strokeRect(r.x + 1, r.y + 1, Math.max(r.w - 2, 0.5), r.h - 2);
        }
        const label = fitLabel(n.name, r.w);
        if (label) {
          ctx.fillStyle = "#111";
          ctx.fillText(label, r.x + 3, r.y + r.h / 2 + 0.5);
        }
      }
    }
    draws += 1;
    Object.assign(canvas.dataset, { draws: String(draws), nodes: String(rects.length), x0: String(x0), x1: String(x1),
      plotW: String(width), rowH: String(ROW_H), dpr: String(dpr) });
    root.dataset.draws = String(draws);
  };

  const showDetails = () => {
    const sel = model.get("selected");
    const n = nodes().find((m) => m.id === sel);
    if (!n) {
      details.replaceChildren();
      return;
    }
    const parts: Node[] = [text("h4", "dsn-flame-details-title", `${n.name} (${n.kind})`)];
    for (const line of tooltipLines(n).slice(1)) parts.push(text("div", "dsn-flame-details-line", line));
    const rows = detailRows(n);
    if (rows.length) {
      const table = el("table", "dsn-flame-table");
      const hr = el("tr", "");
      for (const c of DETAIL_COLUMNS) hr.appendChild(text("th", "", c));
      table.appendChild(hr);
      for (const row of rows) {
        const tr = el("tr", "dsn-flame-row");
        for (const c of row) tr.appendChild(text("td", "", c));
        table.appendChild(tr);
      }
      parts.push(table);
    } else parts.push(text("div", "dsn-flame-status", "no inputs/outputs recorded (use level=\"debug\" for shapes and statistics)"));
    details.replaceChildren(...parts);
  };

  const at = (ev: MouseEvent): number => {
    const b = canvas.getBoundingClientRect();
    return hit(rects, ev.clientX - b.left, ev.clientY - b.top);
  };

  canvas.addEventListener("mousemove", (ev: MouseEvent) => {
    const i = at(ev);
    if (i !== hover) {
      hover = i;
      paint();
    }
    if (i < 0) {
      tip.style.display = "none";
      return;
    }
    tip.replaceChildren(...tooltipLines(nodes()[i]).map((l) => text("div", "", l)));
    tip.dataset.id = nodes()[i].id;
    // fixed: output areas clip what overflows them; flipped above the pointer near the bottom
    tip.style.display = "block";
    const w = window.innerWidth || 1200;
    const h = window.innerHeight || 800;
    tip.style.left = `${Math.max(0, Math.min(ev.clientX + 12, w - tip.offsetWidth - 8))}px`;
    const below = ev.clientY + 14;
    tip.style.top = `${below + tip.offsetHeight > h - 8 ? Math.max(0, ev.clientY - tip.offsetHeight - 10) : below}px`;
  });
  canvas.addEventListener("mouseleave", () => {
    hover = -1;
    tip.style.display = "none";
    paint();
  });
  canvas.addEventListener("click", (ev: MouseEvent) => {
    const i = at(ev);
    const n = i >= 0 ? nodes()[i] : null;
    model.set("selected", n && n.id !== model.get("selected") ? n.id : "");
    if (n && n.kind === "module" && n.module) model.set("selected_module", n.module === model.get("selected_module") ? "" : n.module);
    model.save_changes();
    showDetails();
    paint();
  });
  canvas.addEventListener("dblclick", (ev: MouseEvent) => {
    const i = at(ev);
    if (i < 0) return;
    range = zoomTo(nodes()[i], model.get("total") || 0);
    paint();
    drawHead();
  });

  const draw = () => {
    drawHead();
    paint();
    showDetails();
  };
  return { draw, paint };
}
