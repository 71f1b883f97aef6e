// dsnotebook dataflow graph: the captured forward pass as a layered graph (dagre, bundled).
//
// The graph arrives once (trait `graph`); per-step node values arrive on the heatmap's
// protocol (custom append/drop messages + snapshot traits, see heatmap.ts / _series.py).
// Layout runs once per set of expanded groups and is cached; data updates only recolour.
// Every name, label and shape goes through textContent, never innerHTML.
import type { Initialize, Render } from "@anywidget/types";
import dagre from "@dagrejs/dagre";
import { Store, applyDelta, applySnapshot } from "./heatmap";
import { formatFloat32, RGB, scale, tickLabel } from "./colors";
import { el, svg, lumaText, shapeText, formatCount, css } from "./ui";

interface GNode {
  id: string;
  kind: string; // module | op | input | output
  label: string;
  name: string;
  type: string;
  params: number;
  call: number;
  parent: string | null;
  leaf: boolean;
  shapes: number[][];
  param_inputs?: string[];
}
interface GEdge {
  source: string;
  target: string;
  shape?: number[];
  dtype?: string;
}
interface StatInfo {
  key: string;
  label: string;
  log: boolean;
}
interface EventInfo {
  step: number | null;
  kind: string;
  module: string | null;
  detail: string;
  node: string;
}
interface Model {
  graph: { nodes?: GNode[]; edges?: GEdge[]; model?: string; message?: string | null };
  rows: { id: string }[];
  stats: StatInfo[];
  stat: string;
  step: number;
  selected_module: string;
  selected_node: string;
  events: EventInfo[];
  status: string;
  title: string;
  max_visible: number;
  lut: DataView;
  nan_color: number[];
  mark_color: number[];
  snapshot: DataView;
  snapshot_meta: Record<string, unknown>;
}

const STYLE = `
.dsn-graph { position: relative; box-sizing: border-box; padding: 6px 4px 4px 4px;
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); }
.dsn-graph-header { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 12px; margin: 0 0 4px 0; }
.dsn-graph-title { font-weight: 600; }
.dsn-graph select, .dsn-graph button { font: inherit; font-size: var(--jp-ui-font-size0, 12px); color: inherit;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd);
  border-radius: 3px; padding: 1px 6px; cursor: pointer; }
.dsn-graph button:hover { background: var(--jp-layout-color2, #eee); }
.dsn-graph-steplabel { font-variant-numeric: tabular-nums; min-width: 7em; }
.dsn-graph-step { width: 140px; }
.dsn-graph-status { color: var(--jp-ui-font-color2, rgba(0,0,0,.6)); font-size: var(--jp-ui-font-size0, 11px);
  min-height: 1em; margin: 0 0 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.dsn-graph-body { display: flex; gap: 8px; align-items: stretch; }
.dsn-graph-canvas { flex: 1 1 auto; min-width: 0; height: 520px; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px; background: var(--jp-layout-color0, #fff); overflow: hidden; position: relative; }
.dsn-graph-svg { width: 100%; height: 100%; display: block; cursor: grab; user-select: none; }
.dsn-graph-svg.dsn-panning { cursor: grabbing; }
.dsn-graph-svg text { font-family: inherit; pointer-events: none; }
.dsn-node { cursor: pointer; }
.dsn-node rect { stroke: var(--jp-border-color1, #9e9e9e); stroke-width: 1; }
.dsn-node.dsn-op rect { stroke-dasharray: none; }
.dsn-node.dsn-io rect { fill: var(--jp-layout-color2, #eeeeee); }
.dsn-node.dsn-group rect.dsn-box { stroke-width: 1.5; }
.dsn-node.dsn-group rect.dsn-box2 { fill: none; stroke: var(--jp-border-color1, #9e9e9e); }
.dsn-node.dsn-dead rect.dsn-box { stroke: #e08e0b; stroke-width: 2.5; stroke-dasharray: 5 3; }
.dsn-node.dsn-nonfinite rect.dsn-box { stroke: rgb(220, 30, 30); stroke-width: 3; }
.dsn-node.dsn-first rect.dsn-box { stroke: rgb(220, 30, 30); stroke-width: 4; }
.dsn-node.dsn-selected rect.dsn-box { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 3.5; stroke-dasharray: none; }
.dsn-node .dsn-badge { font-size: 10px; font-weight: 700; }
.dsn-node .dsn-sub { font-size: 10px; opacity: .8; }
.dsn-cluster rect { fill: var(--jp-layout-color1, #f7f9fc); fill-opacity: .55; stroke: var(--jp-border-color1, #b0bec5);
  stroke-dasharray: 4 3; rx: 6; }
.dsn-cluster.dsn-selected rect { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2.5; stroke-dasharray: none; }
.dsn-cluster text { font-size: 11px; fill: var(--jp-ui-font-color2, #555); }
.dsn-cluster .dsn-cluster-hit { cursor: pointer; pointer-events: all; fill: transparent; stroke: none; }
.dsn-edge { fill: none; stroke: var(--jp-ui-font-color3, #90a4ae); stroke-width: 1.2; pointer-events: none; }
.dsn-edge.dsn-edge-sel { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2; }
.dsn-edge-label { font-size: 10px; fill: var(--jp-ui-font-color2, #607d8b); }
.dsn-edge-label, .dsn-cluster-label { stroke: var(--jp-layout-color0, #fff); stroke-width: 3px; paint-order: stroke;
  stroke-linejoin: round; }
.dsn-cluster-label { font-size: 11px; fill: var(--jp-ui-font-color2, #555); }
.dsn-far .dsn-edge-label, .dsn-far .dsn-sub { display: none; }
.dsn-graph-side { flex: 0 0 290px; max-height: 520px; overflow: auto; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px; padding: 6px 8px; box-sizing: border-box; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-side-title { font-weight: 600; font-size: var(--jp-ui-font-size1, 13px); overflow-wrap: anywhere; }
.dsn-side-kv { display: grid; grid-template-columns: auto 1fr; gap: 1px 8px; margin: 4px 0; }
.dsn-side-kv > div:nth-child(odd) { color: var(--jp-ui-font-color2, #666); }
.dsn-side-kv > div { overflow-wrap: anywhere; }
.dsn-side-hint { color: var(--jp-ui-font-color2, #777); }
.dsn-spark { display: block; margin: 4px 0; }
.dsn-spark .dsn-spark-line { fill: none; stroke: var(--jp-brand-color1, #1976d2); stroke-width: 1.5; }
.dsn-spark .dsn-spark-now { stroke: rgb(220, 30, 30); stroke-width: 1; }
.dsn-spark text { font-size: 9px; fill: var(--jp-ui-font-color2, #666); }
.dsn-graph-events { margin-top: 6px; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-event { cursor: pointer; padding: 2px 6px; border-radius: 3px; overflow-wrap: anywhere; }
.dsn-event:hover { background: var(--jp-layout-color2, #eee); }
.dsn-event.dsn-event-nonfinite { color: rgb(190, 20, 20); font-weight: 600; }
.dsn-graph-legend { display: inline-flex; gap: 10px; align-items: center; font-size: var(--jp-ui-font-size0, 11px);
  color: var(--jp-ui-font-color2, #666); }
.dsn-legend-swatch { display: inline-block; width: 14px; height: 10px; border-radius: 2px; vertical-align: middle;
  margin-right: 3px; box-sizing: border-box; }
`;

const NODE_FONT = "12px system-ui, sans-serif";
const MAX_W = 210;

interface Box {
  id: string;
  node: GNode;
  w: number;
  h: number;
  x: number;
  y: number;
  collapsed: boolean; // a collapsed group
  members: number[]; // rows (own + descendants' for collapsed groups)
  inside: number; // nodes hidden inside
  g?: SVGGElement;
  rect?: SVGRectElement;
  text?: SVGTextElement;
  sub?: SVGTextElement;
  badge?: SVGTextElement;
  title?: SVGTitleElement;
}
interface Cluster {
  id: string;
  node: GNode;
  x: number;
  y: number;
  w: number;
  h: number;
  g?: SVGGElement;
}
interface EdgeDraw {
  a: string;
  b: string;
  label: string;
  n: number;
  points: { x: number; y: number }[];
  path?: SVGPathElement;
}
interface Layout {
  boxes: Map<string, Box>;
  clusters: Cluster[];
  edges: EdgeDraw[];
  rep: Map<string, string>;
  width: number;
  height: number;
  ms: number;
}

let measureCtx: CanvasRenderingContext2D | null = null;
function textW(s: string, font = NODE_FONT): number {
  if (!measureCtx) measureCtx = document.createElement("canvas").getContext("2d");
  if (!measureCtx) return s.length * 7;
  measureCtx.font = font;
  return measureCtx.measureText(s).width;
}
function clip(s: string, maxW: number, font = NODE_FONT): string {
  if (textW(s, font) <= maxW) return s;
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (textW(s.slice(0, mid) + "…", font) <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return s.slice(0, lo) + "…";
}

/** Structure derived from the graph trait. */
class Structure {
  nodes: GNode[];
  edges: GEdge[];
  byId = new Map<string, GNode>();
  children = new Map<string, string[]>();
  groups: GNode[] = [];
  root: string | null = null;
  depth = new Map<string, number>();
  constructor(g: Model["graph"]) {
    this.nodes = (g && g.nodes) || [];
    this.edges = (g && g.edges) || [];
    for (const n of this.nodes) this.byId.set(n.id, n);
    for (const n of this.nodes) {
      if (n.parent && this.byId.has(n.parent)) {
        const c = this.children.get(n.parent);
        if (c) c.push(n.id);
        else this.children.set(n.parent, [n.id]);
      }
    }
    for (const n of this.nodes) {
      const p = n.parent && this.byId.has(n.parent) ? n.parent : null;
      this.depth.set(n.id, p ? (this.depth.get(p) ?? 0) + 1 : 0);
      if (this.children.has(n.id)) this.groups.push(n);
      if (!p && n.kind === "module" && this.children.has(n.id) && this.root === null) this.root = n.id;
    }
  }
  isGroup(id: string): boolean {
    return this.children.has(id);
  }
  /** Default expansion: shallow groups first while at most `budget` boxes are visible. */
  defaultExpanded(budget: number): Set<string> {
    const exp = new Set<string>();
    let count = this.nodes.filter((n) => !n.parent || !this.byId.has(n.parent)).length;
    const queue: string[] = [];
    if (this.root) {
      exp.add(this.root);
      count += (this.children.get(this.root) || []).length - 1;
      queue.push(...(this.children.get(this.root) || []).filter((c) => this.isGroup(c)));
    }
    while (queue.length) {
      const g = queue.shift() as string;
      const cost = (this.children.get(g) || []).length - 1;
      if (count + cost > budget) continue;
      exp.add(g);
      count += cost;
      queue.push(...(this.children.get(g) || []).filter((c) => this.isGroup(c)));
    }
    return exp;
  }
  ancestors(id: string): string[] {
    const out: string[] = [];
    let n = this.byId.get(id);
    while (n && n.parent && this.byId.has(n.parent)) {
      out.push(n.parent);
      n = this.byId.get(n.parent);
    }
    return out;
  }
}

function computeLayout(S: Structure, expanded: Set<string>, rowOf: Map<string, number>): Layout {
  const t0 = performance.now();
  const rep = new Map<string, string>();
  for (const n of S.nodes) {
    const p = n.parent && S.byId.has(n.parent) ? n.parent : null;
    if (!p) rep.set(n.id, n.id);
    else {
      const rp = rep.get(p) ?? p;
      rep.set(n.id, rp !== p ? rp : expanded.has(p) ? n.id : p);
    }
  }
  const boxes = new Map<string, Box>();
  for (const n of S.nodes) {
    if (rep.get(n.id) !== n.id) {
      const b = boxes.get(rep.get(n.id) as string);
      const r = rowOf.get(n.id);
      if (b) {
        b.inside++;
        if (r !== undefined) b.members.push(r);
      }
      continue;
    }
    const group = S.isGroup(n.id);
    if (group && expanded.has(n.id)) continue; // a cluster (or the root)
    const isOp = n.kind === "op";
    const io = n.kind === "input" || n.kind === "output";
    const sub = n.kind === "module" ? n.type : io ? shapeText(n.shapes && n.shapes[0]) : "";
    const w = Math.min(MAX_W, Math.max(isOp ? 40 : 70, textW(n.label) + 22, sub ? textW(sub, "10px system-ui") + 22 : 0));
    const h = isOp ? 24 : group ? 42 : sub ? 36 : 26;
    const r = rowOf.get(n.id);
    boxes.set(n.id, { id: n.id, node: n, w, h, x: 0, y: 0, collapsed: group, members: r !== undefined ? [r] : [], inside: 0 });
  }
  // Flat layered layout of the visible boxes (dagre's compound mode is far slower and
  // overflows the stack on deep models); an expanded group is drawn as the padded
  // bounding box of what is visible inside it.
  const g = new dagre.graphlib.Graph({ compound: false, multigraph: false });
  g.setGraph({ rankdir: "TB", nodesep: 22, ranksep: 38, edgesep: 8, marginx: 24, marginy: 24 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const b of boxes.values()) g.setNode(b.id, { width: b.w, height: b.h });
  const edgeMap = new Map<string, EdgeDraw>();
  for (const e of S.edges) {
    const a = rep.get(e.source);
    const b = rep.get(e.target);
    if (!a || !b || a === b || !boxes.has(a) || !boxes.has(b)) continue;
    const key = `${a}\u0000${b}`;
    const lab = shapeText(e.shape);
    const cur = edgeMap.get(key);
    if (cur) {
      cur.n++;
      if (cur.label !== lab) cur.label = `${cur.n} tensors`;
    } else edgeMap.set(key, { a, b, label: lab, n: 1, points: [] });
  }
  for (const e of edgeMap.values()) g.setEdge(e.a, e.b, { minlen: 1 });
  // big graphs: skip dagre's extra ordering sweeps (a few times faster, a few more crossings)
  dagre.layout(g, boxes.size > 400 ? { disableOptimalOrderHeuristic: true } : {});
  for (const b of boxes.values()) {
    const n = g.node(b.id);
    b.x = n.x ?? 0;
    b.y = n.y ?? 0;
  }
  // clusters: deepest first, each the union of its visible boxes and inner clusters, padded
  const ext = new Map<string, [number, number, number, number]>();
  const grow = (id: string, r: [number, number, number, number]) => {
    const cur = ext.get(id);
    ext.set(id, cur ? [Math.min(cur[0], r[0]), Math.min(cur[1], r[1]), Math.max(cur[2], r[2]), Math.max(cur[3], r[3])] : r);
  };
  for (const b of boxes.values()) {
    const anc = S.ancestors(b.id).filter((x) => x !== S.root && expanded.has(x));
    if (anc.length) grow(anc[0], [b.x - b.w / 2, b.y - b.h / 2, b.x + b.w / 2, b.y + b.h / 2]);
  }

  const order = S.groups.filter((n) => n.id !== S.root && expanded.has(n.id)).sort((p, q) => (S.depth.get(q.id) ?? 0) - (S.depth.get(p.id) ?? 0));
  const clusters: Cluster[] = [];
  for (const n of order) {
    const r = ext.get(n.id);
    if (!r) continue;
    const pad = 8;
    const box: [number, number, number, number] = [r[0] - pad, r[1] - pad - 12, r[2] + pad, r[3] + pad];
    const up = S.ancestors(n.id).filter((x) => x !== S.root && expanded.has(x));
    if (up.length) grow(up[0], box);
    clusters.push({ id: n.id, node: n, x: (box[0] + box[2]) / 2, y: (box[1] + box[3]) / 2, w: box[2] - box[0], h: box[3] - box[1] });
  }

  clusters.reverse(); // outer first (drawn below inner ones)
  for (const e of edgeMap.values()) {
    const ed = g.edge(e.a, e.b);
    e.points = (ed && ed.points) || [];
  }
  const gl = g.graph();
  return {
    boxes,
    clusters,
    edges: [...edgeMap.values()],
    rep,
    width: gl.width || 100,
    height: gl.height || 100,
    ms: performance.now() - t0,
  };
}

export default () => {
  const store = new Store();
  const initialize: Initialize<Model> = ({ model }) => {
    applySnapshot(model as never, store, true);
    const onCustom = (msg: Parameters<typeof applyDelta>[1], buffers: DataView[]) => {
      if (applyDelta(store, msg, buffers)) store.changed();
    };
    const onSnapshot = () => {
      if (applySnapshot(model as never, store, false)) store.changed();
    };
    const onShape = () => {
      applySnapshot(model as never, store, true);
      store.changed();
    };
    model.on("msg:custom", onCustom);
    model.on("change:snapshot_meta", onSnapshot);
    model.on("change:rows", onShape);
    model.on("change:stats", onShape);
    return () => {
      model.off("msg:custom", onCustom);
      model.off("change:snapshot_meta", onSnapshot);
      model.off("change:rows", onShape);
      model.off("change:stats", onShape);
    };
  };

  const render: Render<Model> = ({ model, el: host }) => {
    const root = el("div", "dsn-graph");
    const header = el("div", "dsn-graph-header");
    const title = el("span", "dsn-graph-title");
    const select = el("select", "dsn-graph-stat");
    select.setAttribute("aria-label", "statistic");
    const slider = el("input", "dsn-graph-step");
    slider.type = "range";
    slider.min = "0";
    slider.step = "1";
    slider.setAttribute("aria-label", "step");
    const stepLabel = el("span", "dsn-graph-steplabel");
    const latestBtn = el("button", "dsn-graph-latest");
    latestBtn.type = "button";
    latestBtn.textContent = "latest";
    const fitBtn = el("button", "dsn-graph-fit");
    fitBtn.type = "button";
    fitBtn.textContent = "fit";
    const expandBtn = el("button", "dsn-graph-expand-all");
    expandBtn.type = "button";
    expandBtn.textContent = "expand all";
    const collapseBtn = el("button", "dsn-graph-collapse-all");
    collapseBtn.type = "button";
    collapseBtn.textContent = "collapse";
    const legend = el("span", "dsn-graph-legend");
    const bar = el("canvas", "dsn-graph-colorbar");
    header.append(title, select, slider, stepLabel, latestBtn, fitBtn, expandBtn, collapseBtn, bar, legend);
    const status = el("div", "dsn-graph-status");
    const body = el("div", "dsn-graph-body");
    const canvasBox = el("div", "dsn-graph-canvas");
    const sv = svg("svg", "dsn-graph-svg") as SVGSVGElement;
    sv.setAttribute("role", "img");
    const defs = svg("defs", "");
    const marker = svg("marker", "");
    marker.setAttribute("id", `dsn-arrow-${Math.random().toString(36).slice(2)}`);
    const markerId = marker.getAttribute("id") as string;
    for (const [k, v] of [["viewBox", "0 0 10 10"], ["refX", "9"], ["refY", "5"], ["markerWidth", "7"], ["markerHeight", "7"], ["orient", "auto-start-reverse"]])
      marker.setAttribute(k, v);
    const arrow = svg("path", "");
    arrow.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
    arrow.setAttribute("fill", "var(--jp-ui-font-color3, #90a4ae)");
    marker.appendChild(arrow);
    defs.appendChild(marker);
    const viewport = svg("g", "dsn-viewport");
    const gClusters = svg("g", "dsn-clusters");
    const gEdges = svg("g", "dsn-edges");
    const gLabels = svg("g", "dsn-edge-labels");
    const gNodes = svg("g", "dsn-nodes");
    viewport.append(gClusters, gEdges, gLabels, gNodes);
    sv.append(defs, viewport);
    canvasBox.appendChild(sv);
    const side = el("div", "dsn-graph-side");
    body.append(canvasBox, side);
    const events = el("div", "dsn-graph-events");
    root.append(css(STYLE), header, status, body, events);
    host.appendChild(root);

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

    /** The column shown: the latest at or before `step` (-1: the latest). */
    const column = (): number => {
      const C = store.nCols;
      if (C === 0) return -1;
      const step = model.get("step");
      if (step === undefined || step < 0) return C - 1;
      let c = -1;
      for (let i = 0; i < C; i++) if (store.steps[i] <= step) c = i;
      return c < 0 ? 0 : c;
    };
    const value = (si: number, c: number, r: number): number =>
      si < 0 || c < 0 || r < 0 || si >= store.nStats ? NaN : store.data[si][c * store.nRows + r];

    const applyView = () => {
      viewport.setAttribute("transform", `translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(4)})`);
      sv.classList.toggle("dsn-far", view.k < 0.6);
      root.dataset.zoom = view.k.toFixed(3);
    };
    const fit = () => {
      if (!layout) return;
      const W = canvasBox.clientWidth || 800;
      const H = canvasBox.clientHeight || 520;
      const k = Math.min(1.2, Math.max(0.05, Math.min(W / layout.width, H / layout.height)));
      view = { k, x: (W - layout.width * k) / 2, y: Math.max(0, (H - layout.height * k) / 2) };
      if (layout.height * k > H) view.y = 0;
      applyView();
    };
    const centerOn = (id: string) => {
      const b = layout && layout.boxes.get(id);
      if (!b) return;
      const W = canvasBox.clientWidth || 800;
      const H = canvasBox.clientHeight || 520;
      const sx = b.x * view.k + view.x;
      const sy = b.y * view.k + view.y;
      if (sx > 20 && sx < W - 20 && sy > 20 && sy < H - 20) return;
      if (view.k < 0.5) view.k = 0.8;
      view.x = W / 2 - b.x * view.k;
      view.y = H / 2 - b.y * view.k;
      applyView();
    };

    // -------------------------------------------------------------- building the SVG
    const build = () => {
      const L = layout;
      gClusters.replaceChildren();
      gEdges.replaceChildren();
      gLabels.replaceChildren();
      gNodes.replaceChildren();
      if (!L) return;
      for (const c of L.clusters) {
        const g = svg("g", "dsn-cluster") as SVGGElement;
        g.dataset.id = c.id;
        const r = svg("rect", "");
        r.setAttribute("x", String(c.x - c.w / 2));
        r.setAttribute("y", String(c.y - c.h / 2));
        r.setAttribute("width", String(c.w));
        r.setAttribute("height", String(c.h));
        const t = svg("text", "dsn-cluster-label");
        t.setAttribute("x", String(c.x - c.w / 2 + 6));
        t.setAttribute("y", String(c.y - c.h / 2 + 12));
        t.textContent = clip(`${c.node.label} · ${c.node.type}`, Math.max(30, c.w - 10), "11px system-ui");
        const hit = svg("rect", "dsn-cluster-hit");
        hit.setAttribute("x", String(c.x - c.w / 2));
        hit.setAttribute("y", String(c.y - c.h / 2));
        hit.setAttribute("width", String(c.w));
        hit.setAttribute("height", "16");
        const tt = svg("title", "");
        tt.textContent = `${c.node.name || c.node.label} (${c.node.type}) — double-click to collapse`;
        hit.appendChild(tt);
        g.append(r, hit);
        c.g = g;
        gClusters.appendChild(g);
        gLabels.appendChild(t); // above the edges
      }
      const placed: Array<[number, number, number, number]> = [];
      for (const e of L.edges) {
        if (!e.points.length) continue;
        const p = svg("path", "dsn-edge") as SVGPathElement;
        p.setAttribute("d", e.points.map((q, i) => `${i ? "L" : "M"}${q.x.toFixed(1)},${q.y.toFixed(1)}`).join(" "));
        p.setAttribute("marker-end", `url(#${markerId})`);
        p.dataset.a = e.a;
        p.dataset.b = e.b;
        e.path = p;
        gEdges.appendChild(p);
        const mid = e.points[Math.floor(e.points.length / 2)];
        const lw = e.label ? textW(e.label, "10px system-ui") : 0;
        const r: [number, number, number, number] = [mid.x + 5, mid.y - 8, mid.x + 5 + lw, mid.y + 4];
        // skip a label that would overlap one already placed (its shape is in the details panel)
        if (e.label && !placed.some((q) => r[0] < q[2] && q[0] < r[2] && r[1] < q[3] && q[1] < r[3])) {
          placed.push(r);
          const t = svg("text", "dsn-edge-label");
          t.setAttribute("x", String(mid.x + 5));
          t.setAttribute("y", String(mid.y + 3));
          t.textContent = e.label;
          gLabels.appendChild(t);
        }
      }
      for (const b of L.boxes.values()) {
        const n = b.node;
        const cls = ["dsn-node", n.kind === "op" ? "dsn-op" : n.kind === "module" ? "dsn-module" : "dsn-io"];
        if (b.collapsed) cls.push("dsn-group");
        const g = svg("g", cls.join(" ")) as SVGGElement;
        g.dataset.id = b.id;
        g.setAttribute("transform", `translate(${(b.x - b.w / 2).toFixed(1)},${(b.y - b.h / 2).toFixed(1)})`);
        if (b.collapsed) {
          const r2 = svg("rect", "dsn-box2");
          r2.setAttribute("x", "3");
          r2.setAttribute("y", "3");
          r2.setAttribute("width", String(b.w));
          r2.setAttribute("height", String(b.h));
          r2.setAttribute("rx", "5");
          g.appendChild(r2);
        }
        const r = svg("rect", "dsn-box") as SVGRectElement;
        r.setAttribute("width", String(b.w));
        r.setAttribute("height", String(b.h));
        r.setAttribute("rx", n.kind === "op" ? "12" : "5");
        const t = svg("text", "dsn-label") as SVGTextElement;
        t.setAttribute("x", String(b.w / 2));
        t.setAttribute("text-anchor", "middle");
        t.setAttribute("font-size", n.kind === "op" ? "11" : "12");
        const subText = n.kind === "module" ? (b.collapsed ? `${n.type} · +${b.inside}` : n.type) : n.kind === "op" ? "" : shapeText(n.shapes && n.shapes[0]);
        t.setAttribute("y", subText ? "15" : String(b.h / 2 + 4));
        t.textContent = clip(n.label, b.w - 10);
        g.append(r, t);
        b.rect = r;
        b.text = t;
        if (subText) {
          const s = svg("text", "dsn-sub") as SVGTextElement;
          s.setAttribute("x", String(b.w / 2));
          s.setAttribute("y", "29");
          s.setAttribute("text-anchor", "middle");
          s.textContent = clip(subText, b.w - 10, "10px system-ui");
          g.appendChild(s);
          b.sub = s;
        }
        const badge = svg("text", "dsn-badge") as SVGTextElement;
        badge.setAttribute("x", String(b.w + 5));
        badge.setAttribute("y", String(b.h / 2 + 4));
        badge.setAttribute("text-anchor", "start");
        g.appendChild(badge);
        b.badge = badge;
        const tt = svg("title", "") as SVGTitleElement;
        g.appendChild(tt);
        b.title = tt;
        b.g = g;
        gNodes.appendChild(g);
      }
      sv.setAttribute("aria-label", `${S.nodes.length} nodes, ${L.boxes.size} shown`);
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
        // first view: readable boxes (a deep model is a tall chain: start at its top)
        const W = canvasBox.clientWidth || 800;
        const H = canvasBox.clientHeight || 520;
        const k = Math.min(1.1, Math.max(0.75, Math.min(W / L.width, H / L.height)));
        view = { k, x: L.width * k < W ? (W - L.width * k) / 2 : 0, y: L.height * k < H ? (H - L.height * k) / 2 : 0 };
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
    const lutBytes = (): Uint8Array => {
      const v = model.get("lut");
      return v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0);
    };
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
      const selRep = new Set<string>();
      let nDead = 0;
      let nBad = 0;
      if (L) {
        for (const id of sel) {
          const r = L.rep.get(id);
          if (r) selRep.add(r);
        }
        for (const b of L.boxes.values()) {
          if (!b.rect || !b.g) continue;
          const own = rowOf.get(b.id);
          let v = own !== undefined ? value(si, c, own) : NaN;
          let bad = 0;
          let dead = 0;
          let first = evNodes.has(b.id);
          for (const r of b.members) {
            const nf = value(nfI, c, r);
            if (nf > 0) bad += nf;
            const d = value(deadI, c, r);
            if (d > dead) dead = d;
          }
          if (b.collapsed) {
            if (v !== v) for (const r of b.members) { const u = value(si, c, r); if (u > v || v !== v) v = u; }
            if (!first) for (const id of evNodes) if (L.rep.get(id) === b.id) first = true;
          }
          const isData = b.node.kind === "module";
          const idx = isData ? toIdx(v) : -1;
          if (isData && idx >= 0) {
            const rgb = rgbOf(idx);
            b.rect.setAttribute("fill", `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`);
            const tc = lumaText(rgb);
            b.text?.setAttribute("fill", tc);
            b.sub?.setAttribute("fill", tc);
          } else {
            b.rect.setAttribute("fill", b.node.kind === "module" ? "var(--jp-layout-color1, #fafafa)" : "var(--jp-layout-color2, #eceff1)");
            b.text?.setAttribute("fill", "var(--jp-ui-font-color1, #222)");
            b.sub?.setAttribute("fill", "var(--jp-ui-font-color1, #222)");
          }
          b.g.classList.toggle("dsn-nonfinite", bad > 0);
          b.g.classList.toggle("dsn-first", first);
          b.g.classList.toggle("dsn-dead", dead >= 1 && bad === 0);
          b.g.classList.toggle("dsn-selected", selRep.has(b.id));
          if (bad > 0 || first) nBad++;
          if (dead >= 1) nDead++;
          const badge = first ? "⚠ first non-finite" : bad > 0 ? "non-finite" : dead > 0 ? `dead ${Math.round(dead * 100)}%` : "";
          if (b.badge) {
            b.badge.textContent = badge;
            b.badge.setAttribute("fill", bad > 0 || first ? "rgb(200,20,20)" : "#c77700");
          }
          b.g.dataset.value = String(v);
          b.g.dataset.flags = [bad > 0 ? "nonfinite" : "", first ? "first" : "", dead >= 1 ? "dead" : ""].filter(Boolean).join(",");
          if (b.title) {
            const n = b.node;
            const lines = [n.name || n.label, `${n.type}${n.params ? ` · ${formatCount(n.params)} params` : ""}`];
            if (isData && st) lines.push(`${st.label}: ${formatFloat32(v)}`);
            if (b.collapsed) lines.push(`${b.inside} nodes inside — double-click to expand`);
            b.title.textContent = lines.join("\n");
          }
        }
        for (const cl of L.clusters) cl.g?.classList.toggle("dsn-selected", sel.has(cl.id));
        for (const e of L.edges) e.path?.classList.toggle("dsn-edge-sel", selRep.has(e.a) || selRep.has(e.b));
      }
      drawBar(lo, hi, log);
      // step control
      slider.max = String(Math.max(0, store.nCols - 1));
      slider.value = String(Math.max(0, c));
      slider.disabled = store.nCols < 2;
      stepLabel.textContent = c >= 0 ? `step ${store.steps[c]}${model.get("step") < 0 ? " (latest)" : ""}` : "no steps yet";
      legend.replaceChildren();
      if (nBad) legend.appendChild(legendItem("rgb(220,30,30)", `${nBad} non-finite`));
      if (nDead) legend.appendChild(legendItem("#e08e0b", `${nDead} dead`));
      renderSide();
      root.dataset.draws = String(++draws);
      root.dataset.column = String(c);
      root.dataset.step = c >= 0 ? String(store.steps[c]) : "";
      root.dataset.columns = String(store.nCols);
      root.dataset.stat = st ? st.key : "";
      root.dataset.selectedNode = model.get("selected_node") || "";
      root.dataset.selectedModule = model.get("selected_module") || "";
      root.dataset.drawMs = (performance.now() - t0).toFixed(1);
    };
    const legendItem = (color: string, text: string): HTMLElement => {
      const s = el("span", "");
      const sw = el("span", "dsn-legend-swatch");
      sw.style.border = `2px solid ${color}`;
      s.append(sw, document.createTextNode(text));
      return s;
    };
    const drawBar = (lo: number, hi: number, log: boolean) => {
      const ctx = bar.getContext("2d");
      if (!ctx) return;
      const dpr = window.devicePixelRatio || 1;
      const W = 170;
      const H = 26;
      bar.width = W * dpr;
      bar.height = H * dpr;
      bar.style.width = `${W}px`;
      bar.style.height = `${H}px`;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, W, H);
      for (let i = 0; i < 256; i++) {
        const [r, g, b] = rgbOf(i);
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(6 + (i * (W - 12)) / 256, 2, (W - 12) / 256 + 0.6, 9);
      }
      ctx.fillStyle = getComputedStyle(root).color || "#222";
      ctx.font = "10px system-ui, sans-serif";
      ctx.textBaseline = "top";
      if (Number.isFinite(lo) && Number.isFinite(hi)) {
        ctx.textAlign = "left";
        ctx.fillText(tickLabel(lo), 4, 14);
        ctx.textAlign = "right";
        ctx.fillText(tickLabel(hi) + (log ? " (log)" : ""), W - 4, 14);
      } else {
        ctx.textAlign = "left";
        ctx.fillText("no values yet", 6, 14);
      }
    };

    // -------------------------------------------------------------- details panel
    const kv = (grid: HTMLElement, k: string, v: string) => {
      const a = el("div", "");
      a.textContent = k;
      const b = el("div", "");
      b.textContent = v;
      grid.append(a, b);
    };
    const renderSide = () => {
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
        side.appendChild(sparkline(si, r, c, !!(st && st.log)));
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
    };
    const sparkline = (si: number, r: number, c: number, log: boolean): SVGSVGElement => {
      const W = 270;
      const H = 64;
      const s = svg("svg", "dsn-spark") as SVGSVGElement;
      s.setAttribute("width", String(W));
      s.setAttribute("height", String(H));
      const C = store.nCols;
      const ys: number[] = [];
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < C; i++) {
        let v = value(si, i, r);
        if (log) v = v > 0 ? Math.log10(v) : NaN;
        if (!Number.isFinite(v)) v = NaN;
        ys.push(v);
        if (v === v) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
      const X = (i: number) => 4 + (C > 1 ? (i * (W - 8)) / (C - 1) : (W - 8) / 2);
      const Y = (v: number) => (hi > lo ? 6 + ((hi - v) * (H - 20)) / (hi - lo) : (H - 14) / 2);
      let d = "";
      let pen = false;
      let n = 0;
      ys.forEach((v, i) => {
        if (v !== v) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${X(i).toFixed(1)},${Y(v).toFixed(1)} `;
        pen = true;
        n++;
      });
      const p = svg("path", "dsn-spark-line");
      p.setAttribute("d", d || "M0,0");
      if (n === 1) p.setAttribute("stroke-linecap", "round");
      s.dataset.points = String(n);
      s.appendChild(p);
      if (c >= 0) {
        const l = svg("line", "dsn-spark-now");
        l.setAttribute("x1", String(X(c)));
        l.setAttribute("x2", String(X(c)));
        l.setAttribute("y1", "2");
        l.setAttribute("y2", String(H - 12));
        s.appendChild(l);
      }
      const fmt = (v: number) => (v === v && Number.isFinite(v) ? tickLabel(log ? Math.pow(10, v) : v) : "");
      const a = svg("text", "");
      a.setAttribute("x", "2");
      a.setAttribute("y", String(H - 2));
      a.textContent = C ? `step ${store.steps[0]}` : "";
      const b = svg("text", "");
      b.setAttribute("x", String(W - 2));
      b.setAttribute("y", String(H - 2));
      b.setAttribute("text-anchor", "end");
      b.textContent = C ? `step ${store.steps[C - 1]}` : "";
      const m = svg("text", "");
      m.setAttribute("x", String(W / 2));
      m.setAttribute("y", String(H - 2));
      m.setAttribute("text-anchor", "middle");
      m.textContent = hi >= lo ? `${fmt(lo)} … ${fmt(hi)}` : "no values";
      s.append(a, b, m);
      return s;
    };

    // -------------------------------------------------------------- events list
    const renderEvents = () => {
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
    };

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
        if (r) centerOn(r);
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
    const nodeAt = (target: EventTarget | null): { id: string; cluster: boolean } | null => {
      let e = target as Element | null;
      while (e && e !== sv) {
        if (e instanceof SVGGElement && e.dataset.id) return { id: e.dataset.id, cluster: e.classList.contains("dsn-cluster") };
        e = e.parentElement;
      }
      return null;
    };
    let drag: { x: number; y: number; vx: number; vy: number; moved: boolean } | null = null;
    let panFrame = 0;
    const onDown = (ev: MouseEvent) => {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
      window.addEventListener("mousemove", onMove);
      window.addEventListener("mouseup", onUp);
    };
    const onMove = (ev: MouseEvent) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      sv.classList.add("dsn-panning");
      view.x = drag.vx + dx;
      view.y = drag.vy + dy;
      if (!panFrame)
        panFrame = requestAnimationFrame(() => {
          panFrame = 0;
          applyView();
          root.dataset.pans = String(Number(root.dataset.pans || "0") + 1);
        });
    };
    const onUp = (ev: MouseEvent) => {
      window.removeEventListener("mousemove", onMove);
      window.removeEventListener("mouseup", onUp);
      sv.classList.remove("dsn-panning");
      const d = drag;
      drag = null;
      if (!d || d.moved) return;
      const hit = nodeAt(ev.target);
      if (hit) selectNode(hit.id, false);
    };
    const onDbl = (ev: MouseEvent) => {
      const hit = nodeAt(ev.target);
      if (hit && S.isGroup(hit.id)) toggle(hit.id);
    };
    const onWheel = (ev: WheelEvent) => {
      ev.preventDefault();
      const rect = sv.getBoundingClientRect();
      const mx = ev.clientX - rect.left;
      const my = ev.clientY - rect.top;
      const k = Math.min(4, Math.max(0.03, view.k * Math.exp(-ev.deltaY * 0.0015)));
      view.x = mx - ((mx - view.x) * k) / view.k;
      view.y = my - ((my - view.y) * k) / view.k;
      view.k = k;
      applyView();
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
          if (r) centerOn(r);
        }
      }
      schedule();
    };

    sv.addEventListener("mousedown", onDown);
    sv.addEventListener("dblclick", onDbl);
    sv.addEventListener("wheel", onWheel, { passive: false });
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
      window.removeEventListener("mousemove", onMove);
      window.removeEventListener("mouseup", onUp);
      if (frame) cancelAnimationFrame(frame);
      root.remove();
    };
  };
  return { initialize, render };
};
