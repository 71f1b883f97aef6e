// The loop figure of a verification: verify() judges a change to the training step on batches
// loaded before the clock starts (extra.timing === "step") and also measures the user's whole
// loop with its data loading (extra.with_loading). The card shows that second figure under the
// verdict, secondary, with the reason verify() gave when it disagrees with the step's verdict
// (with_loading.note). Pure: no DOM.

export interface LoopFigure {
  baseline_s?: number | null;
  variant_s?: number | null;
  speedup?: number | null;
  speedup_iqr?: Array<number | null> | null;
  pair_speedups?: Array<number | null> | null;
  note?: string;
}

export interface LoopText {
  /** "with loading in the loop: 41.61 → 42.92 ms/step, ×0.97" */
  line: string;
  /** Why the loop does not get the step's gain, or "" when they agree (verify.py's loop_figure decides). */
  note: string;
  /** IQR and pairs, for a tooltip. */
  detail: string;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** The texts for `extra.with_loading` (null when the result has none: a loader change, timed
 * with its loading anyway, or a step verified without data). */
export function loopText(extra: Record<string, unknown> | null | undefined): LoopText | null {
  const loop = extra?.with_loading as LoopFigure | null | undefined;
  if (!loop || typeof loop !== "object") return null;
  const b = num(loop.baseline_s);
  const v = num(loop.variant_s);
  const s = num(loop.speedup);
  if (b === null && v === null && s === null) return null;
  const parts: string[] = [];
  if (b !== null && v !== null) parts.push(`${(1e3 * b).toFixed(2)} → ${(1e3 * v).toFixed(2)} ms/step`);
  parts.push(s === null ? "×–" : `×${s.toFixed(2)}`);
  const iqr = (loop.speedup_iqr || []).map(num);
  const pairs = (loop.pair_speedups || []).length;
  const detail = iqr.length === 2 && iqr[0] !== null && iqr[1] !== null
    ? `loop with loading: IQR ×${iqr[0].toFixed(2)}–×${iqr[1].toFixed(2)}${pairs ? ` over ${pairs} pairs` : ""}` : "";
  return { line: `with loading in the loop: ${parts.join(", ")}`, note: typeof loop.note === "string" ? loop.note : "", detail };
}
