// Small DOM helpers shared by the graph, performance and suggestions panels.
// Text only ever goes in through textContent (never innerHTML).
import type { RGB } from "./colors";

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

export function svg(tag: string, cls: string): SVGElement {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag) as SVGElement;
  if (cls) e.setAttribute("class", cls);
  return e;
}

export function css(text: string): HTMLStyleElement {
  const s = document.createElement("style");
  s.textContent = text;
  return s;
}

export function text<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, content: string): HTMLElementTagNameMap[K] {
  const e = el(tag, cls);
  e.textContent = content;
  return e;
}

/** Readable text colour on a fill. */
export function lumaText(c: RGB): string {
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 140 ? "#111" : "#fff";
}

export function shapeText(shape: number[] | null | undefined): string {
  if (!shape || !Array.isArray(shape)) return "";
  return shape.length ? shape.join("×") : "scalar";
}

export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${(n / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(n / 1e3).toPrecision(3)}k`;
  return String(n);
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(v < 10 ? 2 : 1) : v} ${u[i]}`;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "–";
  const a = Math.abs(s);
  if (a >= 1) return `${s.toFixed(2)} s`;
  if (a >= 1e-3) return `${(s * 1e3).toFixed(a >= 0.1 ? 0 : a >= 0.01 ? 1 : 2)} ms`;
  return `${(s * 1e6).toFixed(0)} µs`;
}
