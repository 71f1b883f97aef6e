// The graph's layered layout: the visible boxes (collapsed groups stand for what is inside)
// laid out by dagre, expanded groups drawn as padded bounding boxes. Cached by the view per set of expanded groups.
import dagre from "@dagrejs/dagre";
import { shapeText } from "../shared/ui";
import type { Structure } from "./structure";
import type { GNode } from "./types";

export const NODE_FONT = "12px system-ui, sans-serif";
const MAX_W = 210;

export interface Box {
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
export interface Cluster {
  id: string;
  node: GNode;
  x: number;
  y: number;
  w: number;
  h: number;
  g?: SVGGElement;
}
export interface EdgeDraw {
  a: string;
  b: string;
  label: string;
  n: number;
  points: { x: number; y: number }[];
  path?: SVGPathElement;
}
export interface Layout {
  boxes: Map<string, Box>;
  clusters: Cluster[];
  edges: EdgeDraw[];
  rep: Map<string, string>;
  width: number;
  height: number;
  ms: number;
}

let measureCtx: CanvasRenderingContext2D | null = null;
export function textW(s: string, font = NODE_FONT): number {
  if (!measureCtx) measureCtx = document.createElement("canvas").getContext("2d");
  if (!measureCtx) return s.length * 7;
  measureCtx.font = font;
  return measureCtx.measureText(s).width;
}
export function clip(s: string, maxW: number, font = NODE_FONT): string {
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

export function computeLayout(S: Structure, expanded: Set<string>, rowOf: Map<string, number>): Layout {
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
