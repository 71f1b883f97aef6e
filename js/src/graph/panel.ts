// The graph's side panels: details of the selected node (kind, shapes, params, its
// history as a sparkline, the values at the shown step) and the list of events.
import type { AnyModel } from "@anywidget/types";
import type { SeriesStore } from "../shared/store";
import { formatFloat32 } from "../shared/colors";
import { el, shapeText, formatCount } from "../shared/ui";
import { sparkline, ValueAt } from "./draw";
import type { Structure } from "./structure";
import type { Model, StatInfo } from "./types";

type ModelGet = Pick<AnyModel<Model>, "get">;

function kv(grid: HTMLElement, k: string, v: string): void {
  const a = el("div", "");
  a.textContent = k;
  const b = el("div", "");
  b.textContent = v;
  grid.append(a, b);
}

export interface SideArgs {
  model: ModelGet;
  S: Structure;
  store: SeriesStore;
  rowOf: Map<string, number>;
  value: ValueAt;
  column: () => number; // the column shown (-1: none)
  curStat: () => number; // the statistic shown
  stats: () => StatInfo[];
  expanded: Set<string>;
  toggle: (id: string) => void; // expand / collapse a group
}

/** The details panel of the selected node (or module), or a hint when none is. */
export function renderSide(side: HTMLElement, p: SideArgs): void {
  const { model, S, store, rowOf, value, column, curStat, stats, expanded, toggle } = p;
  const id = model.get("selected_node") || "";
  let n = S.byId.get(id);
  if (!n) {
    const mod = model.get("selected_module") || "";
    if (mod) n = S.nodes.find((m) => m.kind === "module" && m.name === mod);
  }
  side.replaceChildren();
  side.dataset.node = n ? n.id : "";
  if (!n) {
    const h = el("div", "dsn-side-hint");
    const msg = model.get("graph")?.message;
    h.textContent = S.nodes.length
      ? "Click a node for its history and details. Drag to pan, wheel to zoom, double-click a group to expand or collapse it."
      : msg || "waiting for the first forward pass…";
    side.appendChild(h);
    return;
  }
  const t = el("div", "dsn-side-title");
  t.textContent = n.name || n.label;
  side.appendChild(t);
  const grid = el("div", "dsn-side-kv");
  kv(grid, "kind", n.kind === "module" ? `module (${n.type})` : n.kind);
  if (n.kind === "module") kv(grid, "call", String((n.call || 0) + 1));
  if (n.params) kv(grid, "params", formatCount(n.params));
  const ins = S.edges.filter((e) => e.target === n!.id).map((e) => shapeText(e.shape));
  if (ins.length) kv(grid, "in", ins.slice(0, 6).join(", ") + (ins.length > 6 ? ` … (${ins.length})` : ""));
  if (n.shapes && n.shapes.length) kv(grid, "out", n.shapes.slice(0, 6).map((s) => shapeText(s)).join(", "));
  if (n.param_inputs && n.param_inputs.length) kv(grid, "uses", n.param_inputs.join(", "));
  if (n.parent) kv(grid, "in group", S.byId.get(n.parent)?.name || n.parent);
  const kids = S.children.get(n.id);
  if (kids) kv(grid, "contains", `${kids.length} nodes`);
  kv(grid, "id", n.id);
  side.appendChild(grid);
  const r = rowOf.get(n.id);
  const c = column();
  if (r !== undefined && store.nCols) {
    const si = curStat();
    const st = stats()[si];
    const head = el("div", "dsn-side-spark-title");
    head.textContent = `${st ? st.label : ""} over ${store.nCols} steps`;
    side.appendChild(head);
    side.appendChild(sparkline(store, value, si, r, c, !!(st && st.log)));
    const vals = el("div", "dsn-side-kv dsn-side-values");
    kv(vals, "at step", String(store.steps[c]));
    stats().forEach((s, i) => kv(vals, s.label, formatFloat32(value(i, c, r))));
    side.appendChild(vals);
  } else if (n.kind === "module") {
    const h = el("div", "dsn-side-hint");
    h.textContent = "no values recorded for this node yet";
    side.appendChild(h);
  }
  for (const e of model.get("events") || []) {
    if (e.node !== n.id) continue;
    const d = el("div", "dsn-event dsn-event-nonfinite");
    d.textContent = `step ${e.step ?? "?"}: ${e.detail}`;
    side.appendChild(d);
  }
  if (kids) {
    const b = el("button", "dsn-side-toggle");
    b.type = "button";
    b.textContent = expanded.has(n.id) ? "collapse group" : "expand group";
    const nid = n.id;
    b.addEventListener("click", () => toggle(nid));
    side.appendChild(b);
  }
}

/** The events list (first 30); a click on one with a node selects and reveals it. */
export function renderEvents(
  events: HTMLElement,
  model: ModelGet,
  S: Structure,
  selectNode: (id: string, reveal: boolean) => void,
): void {
  events.replaceChildren();
  const evs = model.get("events") || [];
  for (const e of evs.slice(0, 30)) {
    const d = el("div", `dsn-event dsn-event-${e.kind}`);
    const where = e.module ? ` in ${e.module}` : "";
    d.textContent = `${e.kind === "nonfinite" ? "⚠ non-finite" : e.kind}${e.step !== null && e.step !== undefined ? ` at step ${e.step}` : ""}${where}: ${e.detail}`;
    if (e.node && S.byId.has(e.node)) {
      const nid = e.node;
      d.title = "show in the graph";
      d.addEventListener("click", () => selectNode(nid, true));
    }
    events.appendChild(d);
  }
  if (evs.length > 30) {
    const d = el("div", "dsn-side-hint");
    d.textContent = `… ${evs.length - 30} more events`;
    events.appendChild(d);
  }
}
