// Pure logic of the compression panel: bar lengths, tones (better / worse / same), number text.
import type { Measure, Row, SensRow } from "./types";

export type Tone = "base" | "better" | "worse" | "same" | "none";

export function finite(v: number | null | undefined): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** Bar length in [0, 1]: value / max (0 for missing values or an empty column). */
export function barFraction(value: number | null | undefined, max: number): number {
  if (!finite(value) || !(max > 0)) return 0;
  return Math.max(0, Math.min(1, value / max));
}

/** The largest finite value of a column (0 when there is none). */
export function columnMax(values: Array<number | null | undefined>): number {
  let m = 0;
  for (const v of values) if (finite(v) && v > m) m = v;
  return m;
}

/** The row's value that the measure's bar shows. */
export function measureValue(row: Row, m: Measure): number | null {
  if (m === "size") return row.size_bytes;
  if (m === "b1") return row.latency_b1_ms;
  if (m === "bN") return row.latency_bN_ms;
  return row.metric;
}

/** Worse: Python said so (row.worse, the same facts as the warnings); better: smaller or verdict faster. */
export function tone(row: Row, m: Measure, isBase: boolean): Tone {
  if (isBase) return "base";
  if (row.status !== "ok") return "none";
  if (row.worse && row.worse.includes(m)) return "worse";
  if (m === "size") return finite(row.size_ratio) && row.size_ratio < 0.99 ? "better" : "same";
  if (m === "b1" || m === "bN") {
    const v = m === "b1" ? row.verdict_b1 : row.verdict_bN;
    return v === "faster" ? "better" : "same";
  }
  return "same";
}

/** A ratio with two decimals, or two significant digits below 0.1 (×0.0033, not ×0.00). */
export function ratioNum(v: number): string {
  return Math.abs(v) >= 0.1 || v === 0 ? v.toFixed(2) : v.toPrecision(2);
}

export function ratioText(v: number | null | undefined): string {
  return finite(v) ? `×${ratioNum(v)}` : "–";
}

/** "×2.81 faster [2.1–3.0]", "×0.54 slower [...]", "×1.02 ≈ [...]" (speed-up vs the original). */
export function speedText(speedup: number | null, lo: number | null, hi: number | null, verdict: string): string {
  if (!finite(speedup)) return "";
  if (verdict === "baseline") return "baseline";
  const word = verdict === "faster" ? " faster" : verdict === "slower" ? " slower" : " ≈";
  const range = finite(lo) && finite(hi) ? ` [${ratioNum(lo)}–${ratioNum(hi)}]` : "";
  return `×${ratioNum(speedup)}${word}${range}`;
}

export function deltaText(d: number | null | undefined): string {
  if (!finite(d)) return "";
  if (d === 0) return "±0";
  const a = Math.abs(d);
  const s = a >= 100 ? a.toFixed(0) : a >= 1 ? a.toPrecision(3) : a.toPrecision(2);
  return `${d > 0 ? "+" : "−"}${s}`;
}

export function numText(v: number | null | undefined): string {
  if (!finite(v)) return "–";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
  return v.toPrecision(4).replace(/\.?0+$/, "");
}

export function msText(v: number | null | undefined): string {
  if (!finite(v)) return "–";
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 1 ? `${v.toFixed(2)} ms` : `${(v * 1e3).toFixed(0)} µs`;
}

/** Sensitivity bar value: how much the metric dropped (higher is worse), else the output deviation. */
export function harm(r: SensRow, hasMetric: boolean, higherIsBetter: boolean): number {
  if (hasMetric && finite(r.metric_delta)) return Math.max(0, higherIsBetter ? -r.metric_delta : r.metric_delta);
  return finite(r.max_abs_dev) ? r.max_abs_dev : 0;
}

/** Sensitivity rows grouped by method, in first-seen order, most harmful layer first. */
export function groupSensitivity(rows: SensRow[], hasMetric: boolean, higherIsBetter: boolean): Array<[string, SensRow[]]> {
  const groups = new Map<string, SensRow[]>();
  for (const r of rows) {
    const g = groups.get(r.method);
    if (g) g.push(r);
    else groups.set(r.method, [r]);
  }
  for (const g of groups.values()) g.sort((a, b) => harm(b, hasMetric, higherIsBetter) - harm(a, hasMetric, higherIsBetter));
  return [...groups.entries()];
}
