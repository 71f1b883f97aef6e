// The loop figure of a verification: verify() judges a change to the training step on batches
// loaded before the clock starts (extra.timing === "step") and also measures the user's whole
// loop with its data loading (extra.with_loading). The card shows that second figure under the
// verdict, secondary, and says why when it disagrees with the step's verdict. Pure: no DOM.

export interface LoopFigure {
  baseline_s?: number | null;
  variant_s?: number | null;
  speedup?: number | null;
  speedup_iqr?: Array<number | null> | null;
  pair_speedups?: Array<number | null> | null;
}

export interface LoopText {
  /** "with loading in the loop: 41.61 → 42.92 ms/step, ×0.97" */
  line: string;
  /** Why the loop does not get the step's gain, or "" when they agree. */
  note: string;
  /** IQR and pairs, for a tooltip. */
  detail: string;
}

export const WAITS_NOTE = "the loop waits for its data: speed up loading to get the step's gain";

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Whether the loop hides the step's gain. Same rule as VerifyResult._loop_note in
 * dsnotebook/advisor/verify.py: a step faster by more than 3% whose loop keeps less than half
 * of that gain. */
export function loopDisagrees(stepSpeedup: number | null | undefined, loopSpeedup: number | null | undefined): boolean {
  const s = num(stepSpeedup);
  const l = num(loopSpeedup);
  return s !== null && l !== null && s > 1.03 && l < 1 + (s - 1) / 2;
}

/** The texts for `extra.with_loading` (null when the result has none: a loader change, timed
 * with its loading anyway, or a step verified without data). */
export function loopText(stepSpeedup: number | null | undefined, extra: Record<string, unknown> | null | undefined): LoopText | null {
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
  return { line: `with loading in the loop: ${parts.join(", ")}`, note: loopDisagrees(stepSpeedup, s) ? WAITS_NOTE : "", detail };
}
