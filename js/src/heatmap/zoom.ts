// Drag across steps to zoom the heatmap in (a box follows the pointer while dragging);
// the view shows all steps again on double-click or its button.
import { dragColumns, Geometry, Zoom } from "./geometry";

export interface ZoomHooks {
  geometry: () => Geometry | null;
  nRows: () => number;
  steps: () => number[];
  onStart: () => void; // a drag began (hide the tooltip)
  onZoom: (z: Zoom) => void;
}

/** Wires drag-to-zoom on `canvas` (`box` shows the span, inside `root`); returns whether a
 * drag is under way and the cleanup of its listeners. */
export function attachZoom(canvas: HTMLCanvasElement, root: HTMLElement, scroll: HTMLElement, box: HTMLElement, hooks: ZoomHooks): { dragging: () => boolean; detach: () => void } {
  let from: number | null = null;
  const plotX = (ev: MouseEvent): number => {
    const g = hooks.geometry();
    const x = ev.clientX - canvas.getBoundingClientRect().left;
    return g ? Math.min(Math.max(x, g.x0), g.x0 + g.nBins * g.cellW - 0.01) : x;
  };
  const onDown = (ev: MouseEvent) => {
    const g = hooks.geometry();
    if (ev.button !== 0 || !g || g.nVis < 2) return;
    const x = ev.clientX - canvas.getBoundingClientRect().left;
    if (x < g.x0 || x >= g.x0 + g.nBins * g.cellW) return;
    ev.preventDefault();
    from = x;
    hooks.onStart();
    window.addEventListener("mousemove", onDrag);
    window.addEventListener("mouseup", onUp);
  };
  const onDrag = (ev: MouseEvent) => {
    const g = hooks.geometry();
    if (from === null || !g) return;
    const x = plotX(ev);
    const rootRect = root.getBoundingClientRect();
    const canRect = canvas.getBoundingClientRect();
    box.style.display = "block";
    box.style.left = `${canRect.left - rootRect.left + Math.min(x, from)}px`;
    box.style.width = `${Math.abs(x - from)}px`;
    box.style.top = `${canRect.top - rootRect.top + g.y0}px`;
    box.style.height = `${Math.min(hooks.nRows() * g.cellH, scroll.clientHeight || 1e9)}px`;
  };
  const onUp = (ev: MouseEvent) => {
    window.removeEventListener("mousemove", onDrag);
    window.removeEventListener("mouseup", onUp);
    const g = hooks.geometry();
    const a = from;
    from = null;
    box.style.display = "none";
    if (a === null || !g) return;
    const span = dragColumns(g, a, plotX(ev));
    if (!span) return; // a click, not a drag
    const steps = hooks.steps();
    hooks.onZoom({ start: steps[span[0]], end: steps[span[1]] });
  };
  canvas.addEventListener("mousedown", onDown);
  return {
    dragging: () => from !== null,
    detach: () => {
      canvas.removeEventListener("mousedown", onDown);
      window.removeEventListener("mousemove", onDrag);
      window.removeEventListener("mouseup", onUp);
    },
  };
}
