// The graph's structure, derived from the graph trait: nodes by id, children of each group,
// depth, the root module, and which groups start expanded. Pure (no DOM, no layout).
import type { GEdge, GNode, Model } from "./types";

/** Structure derived from the graph trait. */
export class Structure {
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
