// The flame view's arithmetic: boxes in pixels for an x range, hit testing, colours, and the
// texts of the tooltip and the details panel. No DOM here (tested under node).
import { formatSeconds, shapeText } from "../shared/ui";

/** One data summary of a call's input or output (statistics at "debug"). */
export interface Summary {
  name?: string;
  shape?: number[];
  dtype?: string;
  device?: string;
  modified?: boolean;
  error?: string;
  norm?: number;
  mean?: number;
  std?: number;
  absmax?: number;
  nonfinite?: number;
  zero_frac?: number;
}

/** A box, as Python's views/flame_tree.py makes it (times in seconds). */
export interface FlameNode {
  id: string;
  parent: string | null;
  name: string;
  kind: string;
  depth: number;
  x: number;
  w: number;
  count: number;
  wall: number;
  self: number;
  device: number | null;
  errors: number;
  error: string | null;
  inputs: Summary[];
  outputs: Summary[];
  module: string;
  call: number;
  steps: Array<number | null>;
}

export interface Rect {
  i: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

export const ROW_H = 18;
export const CHAR_W = 6.6; // 11px system-ui, average

/** Pixel boxes of the nodes visible in [x0, x1] (seconds) on a plot `width` px wide; boxes
 * narrower than `minW` px are left out (too thin to see or hover). */
export function layout(nodes: FlameNode[], x0: number, x1: number, width: number, rowH = ROW_H, minW = 0.5): Rect[] {
  const span = x1 - x0;
  if (!(span > 0) || !(width > 0)) return [];
  const k = width / span;
  const out: Rect[] = [];
  nodes.forEach((n, i) => {
    const a = Math.max(n.x, x0);
    const b = Math.min(n.x + n.w, x1);
    if (b <= a && !(n.w === 0 && n.x >= x0 && n.x <= x1)) return;
    const px = (a - x0) * k;
    const pw = Math.max((b - a) * k, 0);
    if (pw < minW) return;
    out.push({ i, x: px, y: n.depth * rowH, w: pw, h: rowH - 1 });
  });
  return out;
}

/** The box under (px, py), the innermost (deepest) first; -1 when none. */
export function hit(rects: Rect[], px: number, py: number): number {
  let best = -1;
  let bestY = -1;
  for (const r of rects) {
    if (px >= r.x && px <= r.x + r.w && py >= r.y && py <= r.y + r.h && r.y > bestY) {
      best = r.i;
      bestY = r.y;
    }
  }
  return best;
}

/** The x range that shows one box (and a little air around it). */
export function zoomTo(n: FlameNode, total: number): [number, number] {
  if (!(n.w > 0)) return [0, total];
  const pad = n.w * 0.02;
  return [Math.max(0, n.x - pad), Math.min(Math.max(total, n.x + n.w), n.x + n.w + pad)];
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Fill colour of a box: hue by kind (functions warm, modules blue, spans green, ops grey),
 * shade by name so neighbours differ; calls that raised are red. */
export function fill(n: FlameNode): string {
  if (n.errors > 0) return "hsl(0, 75%, 62%)";
  const v = hash(n.name) % 20;
  switch (n.kind) {
    case "module":
      return `hsl(${205 + v}, 60%, ${62 + (v % 5) * 2}%)`;
    case "span":
      return `hsl(${115 + v}, 45%, ${58 + (v % 5) * 2}%)`;
    case "op":
      return `hsl(${260 + v}, 18%, ${70 + (v % 5) * 2}%)`;
    default:
      return `hsl(${25 + v}, 85%, ${60 + (v % 5) * 2}%)`;
  }
}

/** The label that fits in `px` pixels ("" when not even two characters do). */
export function fitLabel(name: string, px: number, charW = CHAR_W): string {
  const n = Math.floor((px - 6) / charW);
  if (n < 2) return "";
  return name.length <= n ? name : name.slice(0, n - 1) + "…";
}

function shapes(list: Summary[]): string {
  return list.filter((s) => s.shape).map((s) => `${shapeText(s.shape)}${s.dtype ? " " + s.dtype : ""}`).join(", ");
}

/** Tooltip lines of a box: name and kind, times, calls merged, shapes in and out, error. */
export function tooltipLines(n: FlameNode): string[] {
  const lines = [`${n.name} (${n.kind})`];
  const per = n.count > 1 ? ` in ${n.count} calls (mean ${formatSeconds(n.wall / n.count)})` : "";
  lines.push(`wall ${formatSeconds(n.wall)}${per}`);
  if (n.self < n.wall) lines.push(`self ${formatSeconds(n.self)}`);
  if (n.device !== null && n.device !== undefined) lines.push(`device ${formatSeconds(n.device)}`);
  const ins = shapes(n.inputs || []);
  const outs = shapes(n.outputs || []);
  if (ins) lines.push(`in: ${ins}`);
  if (outs) lines.push(`out: ${outs}`);
  if (n.errors) lines.push(`raised${n.errors > 1 ? ` (${n.errors}×)` : ""}: ${n.error ?? ""}`);
  return lines;
}

function num(v: number | undefined): string {
  if (v === undefined || v === null) return "";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}

export const DETAIL_COLUMNS = ["", "name", "shape", "dtype", "device", "mean", "std", "absmax", "non-finite", "zero frac"];

/** Rows of the details table: one per input and output summary (strings, shown as text). */
export function detailRows(n: FlameNode): string[][] {
  const row = (side: string, s: Summary): string[] => [
    side, (s.name ?? "") + (s.modified ? " (modified in place)" : ""), s.error ?? shapeText(s.shape), s.dtype ?? "",
    s.device ?? "", num(s.mean), num(s.std), num(s.absmax), s.nonfinite === undefined ? "" : String(s.nonfinite),
    num(s.zero_frac),
  ];
  return [...(n.inputs || []).map((s) => row("in", s)), ...(n.outputs || []).map((s) => row("out", s))];
}
