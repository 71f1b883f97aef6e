// Colour scale of the heatmap and the graph, a step-for-step copy of dsnotebook/widgets/colors.py
// (the source of truth; tests/widgets/test_colors.py compares both). Python computes the exact
// RGB a value gets from the same LUT, which the browser receives as a trait.

export type RGB = [number, number, number];

/** LUT index of v on [lo, hi], or -1 for the NaN colour (no data / no range). */
export function colorIndex(v: number, lo: number, hi: number, log: boolean): number {
  return scale(lo, hi, log)(v);
}

/**
 * The scale as a function of v (lo/hi logs computed once; same arithmetic as
 * colors.py's color_index, so the same float64 results).
 */
export function scale(lo: number, hi: number, log: boolean): (v: number) => number {
  if (Number.isNaN(lo) || Number.isNaN(hi)) return () => -1;
  const flat = hi <= lo;
  const llo = log && !flat ? Math.log10(lo) : 0;
  const lspan = log && !flat ? Math.log10(hi) - llo : 0;
  const span = hi - lo;
  return (v: number): number => {
    if (v !== v) return -1;
    let t: number;
    if (v === Infinity) t = 1;
    else if (v === -Infinity) t = 0;
    else if (flat) t = 0.5;
    else if (log) t = v <= 0 ? 0 : (Math.log10(v) - llo) / lspan;
    else t = (v - lo) / span;
    t = Math.min(1, Math.max(0, t));
    return Math.floor(t * 255 + 0.5);
  };
}

/** min/max of the finite (linear) or finite positive (log) values; NaNs if none. */
export function valueRange(
  data: Float32Array,
  count: number,
  log: boolean,
): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < count; i++) {
    const v = data[i];
    // NaN fails every comparison; +-Infinity are excluded explicitly
    if (v === Infinity || v === -Infinity || v !== v) continue;
    if (log && !(v > 0)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo > hi) return [NaN, NaN];
  return [lo, hi];
}

/** Little-endian packed RGBA (as a Uint32 over ImageData) for each LUT entry. */
export function packLut(lut: Uint8Array): Uint32Array {
  const n = Math.floor(lut.length / 3);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = packRgb([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2]]);
  return out;
}

export function packRgb(c: RGB): number {
  return ((255 << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;
}

export function cssRgb(c: RGB): string {
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

/** Tick values for a colour bar over [lo, hi]. */
export function ticks(lo: number, hi: number, log: boolean): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi))) return [];
  if (hi <= lo) return [lo];
  if (log) {
    const a = Math.ceil(Math.log10(lo) - 1e-9);
    const b = Math.floor(Math.log10(hi) + 1e-9);
    if (b - a < 1) return [lo, hi];
    const step = Math.max(1, Math.ceil((b - a + 1) / 6));
    const out: number[] = [];
    for (let e = a; e <= b; e += step) out.push(Math.pow(10, e));
    return out;
  }
  const raw = (hi - lo) / 4;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out.length ? out : [lo, hi];
}

/** Short tick label: 0.01, 0.1, 1, 10, 1000, 1e-5, 1e6, 2.5 ... */
export function tickLabel(v: number): string {
  if (v === 0) return "0";
  const e = Math.floor(Math.log10(Math.abs(v)) + 1e-9);
  if (e < -2 || e > 3) {
    const m = v / Math.pow(10, e);
    const ms = Math.abs(m - 1) < 1e-6 ? "1" : m.toPrecision(2).replace(/\.?0+$/, "");
    return `${ms}e${e}`;
  }
  return String(Number(v.toPrecision(3)));
}

/** The shortest decimal that reads back as the same float32 (numpy's repr). */
export function formatFloat32(v: number): string {
  if (Number.isNaN(v)) return "no data";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return "0";
  const f = Math.fround(v);
  for (let p = 1; p <= 9; p++) {
    const s = f.toPrecision(p);
    if (Math.fround(Number(s)) === f) return String(Number(s));
  }
  return String(f);
}
