// Pure logic of the rank x phase panel: the traits, cell shading, the straggler line.
// Every number arrives computed (dsnotebook.views.rank_panel reads dsnotebook.distributed.ranks).

/** One column of the table: [key, label, colour]. */
export type Column = [string, string, string];

export interface Model {
  ranks: number[];
  columns: Column[];
  /** rank x column, median seconds over the steady sampled steps (null: not measured) */
  matrix: Array<Array<number | null>>;
  /** per column: median over steps of slowest minus fastest rank (seconds) */
  skew: Array<number | null>;
  /** per rank: share of every step the job waits for it (0..1) */
  scores: Array<number | null>;
  /** per rank: the phase where its own work exceeds the median rank's most */
  excess: string[];
  straggler: number;
  steps: number;
  selected_rank: number;
  status: string;
  title: string;
}

/** How far a cell stands above its column's fastest rank, 0..1 of the column's spread. */
export function shade(column: Array<number | null>, i: number): number {
  const v = column[i];
  const vals = column.filter((x): x is number => x !== null && Number.isFinite(x));
  if (v === null || !Number.isFinite(v) || vals.length < 2) return 0;
  const lo = Math.min(...vals);
  const hi = Math.max(...vals);
  return hi > lo ? (v - lo) / (hi - lo) : 0;
}

/** Column j of a rank x column matrix. */
export function column(m: Array<Array<number | null>>, j: number): Array<number | null> {
  return m.map((row) => (row && j < row.length ? row[j] : null));
}

/** The sentence under the title: who the straggler is and where its extra time goes. */
export function stragglerLine(s: Pick<Model, "straggler" | "scores" | "excess" | "ranks" | "steps" | "columns">): string {
  if (!s.ranks.length) return "no per-rank phases yet (trace every rank with profile_every=N)";
  const of = `medians over ${s.steps} sampled step${s.steps === 1 ? "" : "s"} of ${s.ranks.length} ranks`;
  const i = s.ranks.indexOf(s.straggler);
  if (s.straggler < 0 || i < 0) return `no straggler: the ranks do the same work (${of})`;
  const score = s.scores[i] ?? 0;
  const key = s.excess[i] || "";
  const label = s.columns.find((c) => c[0] === key || c[0] === `${key}_compute`)?.[1] ?? key;
  return `straggler: rank ${s.straggler} - the job waits for it ${(100 * score).toFixed(0)}% of every step` +
    (label ? ` (its ${label})` : "") + ` (${of})`;
}
