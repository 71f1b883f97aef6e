// The graph's drawing: building the SVG of a layout, colouring its boxes for the shown
// column (value, non-finite / dead flags, selection), the colour bar, the legend and the
// details panel's sparkline. All text goes through textContent.
import type { SeriesStore } from "../shared/store";
import { formatFloat32, RGB, tickLabel } from "../shared/colors";
import { el, svg, lumaText, shapeText, formatCount } from "../shared/ui";
import { clip, Layout, textW } from "./layout";
import type { StatInfo } from "./types";

/** The SVG groups a layout is drawn into, bottom to top. */
export interface SvgLayers {
  gClusters: SVGElement;
  gEdges: SVGElement;
  gLabels: SVGElement;
  gNodes: SVGElement;
}

/** Value of statistic si at column c, row r (NaN when any index is out of range). */
export type ValueAt = (si: number, c: number, r: number) => number;

/** (Re)builds the SVG elements of layout L (none when null); keeps handles on the boxes,
 * clusters and edges for paintLayout. */
export function buildSvg(L: Layout | null, layers: SvgLayers, markerId: string): void {
  const { gClusters, gEdges, gLabels, gNodes } = layers;
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
}

export interface PaintArgs {
  rowOf: Map<string, number>;
  value: ValueAt;
  si: number; // statistic shown
  st: StatInfo | undefined;
  c: number; // column shown
  nfI: number; // statistic index of the non-finite count
  deadI: number; // statistic index of the dead fraction
  toIdx: (v: number) => number;
  rgbOf: (i: number) => RGB;
  evNodes: Set<string>; // nodes of non-finite events
  sel: Set<string>; // selected node ids
}

/** Colours and flags the boxes of L for column c; returns how many are bad / dead. */
export function paintLayout(L: Layout, a: PaintArgs): { nBad: number; nDead: number } {
  const { rowOf, value, si, st, c, nfI, deadI, toIdx, rgbOf, evNodes, sel } = a;
  const selRep = new Set<string>();
  let nDead = 0;
  let nBad = 0;
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
  return { nBad, nDead };
}

export function legendItem(color: string, text: string): HTMLElement {
  const s = el("span", "");
  const sw = el("span", "dsn-legend-swatch");
  sw.style.border = `2px solid ${color}`;
  s.append(sw, document.createTextNode(text));
  return s;
}

/** The colour bar of the LUT with the range [lo, hi] (text in root's colour). */
export function drawBar(bar: HTMLCanvasElement, root: HTMLElement, lo: number, hi: number, log: boolean, rgbOf: (i: number) => RGB): void {
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
}

/** History of statistic si of row r over all columns held, column c marked. */
export function sparkline(store: SeriesStore, value: ValueAt, si: number, r: number, c: number, log: boolean): SVGSVGElement {
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
}
