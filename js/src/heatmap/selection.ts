// The heatmap's side of the linked selection: a click on a cell (or its row) selects the
// row's module and the cell's step (Python links selected_module / selected_step to the
// other panels); the selected module's rows are outlined and the selected step marked.
import type { SeriesStore } from "../shared/store";
import { cellAt, Geometry } from "./geometry";
import type { RowInfo } from "./types";

/** First and last row of `module` (rows of a module are contiguous), or null. */
export function moduleRows(rows: RowInfo[], module: string): [number, number] | null {
  if (!module) return null;
  let r0 = -1;
  let r1 = -1;
  rows.forEach((r, i) => {
    if (r.module !== module) return;
    if (r0 < 0) r0 = i;
    r1 = i;
  });
  return r0 < 0 ? null : [r0, r1];
}

function place(e: HTMLElement, left: number, top: number, width: number, height: number): void {
  e.style.display = "block";
  e.style.left = `${left}px`;
  e.style.top = `${top}px`;
  e.style.width = `${width}px`;
  e.style.height = `${height}px`;
}

/** Outlines the rows of `module` (scrolled into view with `reveal`) and marks the column of
 * `step`; records both on root's dataset for tests. */
export function placeSelection(
  parts: { root: HTMLElement; scroll: HTMLElement; box: HTMLElement; stepMark: HTMLElement },
  g: Geometry | null,
  rows: RowInfo[],
  store: SeriesStore,
  module: string,
  step: number,
  reveal: boolean,
): void {
  const { root, scroll, box, stepMark } = parts;
  const span = moduleRows(rows, module);
  root.dataset.selectedModule = module;
  root.dataset.selectedStep = String(step);
  root.dataset.selectedRows = span ? `${span[0]}-${span[1]}` : "";
  if (!g || !span) box.style.display = "none";
  else {
    const [r0, r1] = span;
    place(box, 0, g.y0 + r0 * g.cellH - 1, g.x0 + g.nBins * g.cellW + 2, (r1 - r0 + 1) * g.cellH + 2);
    const top = g.y0 + r0 * g.cellH;
    const bottom = g.y0 + (r1 + 1) * g.cellH;
    if (reveal && (top < scroll.scrollTop || bottom > scroll.scrollTop + scroll.clientHeight)) {
      scroll.scrollTop = Math.max(0, top - 20);
    }
  }
  const c = step >= 0 ? store.steps.indexOf(step) : -1;
  if (!g || c < g.col0 || c >= g.col0 + g.nVis) stepMark.style.display = "none";
  else {
    const b = Math.floor((c - g.col0) / g.agg);
    place(stepMark, g.x0 + b * g.cellW - 1, g.y0, Math.max(2, g.cellW) + 2, store.nRows * g.cellH);
  }
}

/** Calls `select(module, step, tensor)` on a click (not a drag) on a row (tensor: the row's
 * name); step -1 when the click was left of the cells. Returns the cleanup. */
export function attachClickSelect(
  canvas: HTMLCanvasElement,
  geometry: () => Geometry | null,
  rows: () => RowInfo[],
  store: SeriesStore,
  select: (module: string, step: number, tensor: string) => void,
): () => void {
  let from: { x: number; y: number } | null = null;
  const onDown = (ev: MouseEvent) => {
    from = { x: ev.clientX, y: ev.clientY };
  };
  const onClick = (ev: MouseEvent) => {
    const g = geometry();
    const f = from;
    from = null;
    if (!g || !f || Math.abs(ev.clientX - f.x) + Math.abs(ev.clientY - f.y) > 4) return; // a drag
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const y = ev.clientY - rect.top;
    const row = rows()[Math.floor((y - g.y0) / g.cellH)];
    if (!row) return;
    const cell = x >= g.x0 ? cellAt(g, x, y, store.nRows, store.nCols) : null;
    select(row.module, cell ? store.steps[cell.c0] : -1, row.name);
  };
  canvas.addEventListener("mousedown", onDown);
  canvas.addEventListener("click", onClick);
  return () => {
    canvas.removeEventListener("mousedown", onDown);
    canvas.removeEventListener("click", onClick);
  };
}
