// Pointer interaction on the graph's SVG: drag to pan, wheel to zoom around the pointer,
// click / double-click on a node or cluster (hit-tested through data-id).

/** The viewport transform: screen = layout * k + (x, y). Mutated in place while panning. */
export interface ViewBox {
  k: number;
  x: number;
  y: number;
}

/** The node or cluster group (data-id) holding `target`, if any. */
export function nodeAt(sv: SVGSVGElement, target: EventTarget | null): { id: string; cluster: boolean } | null {
  let e = target as Element | null;
  while (e && e !== sv) {
    if (e instanceof SVGGElement && e.dataset.id) return { id: e.dataset.id, cluster: e.classList.contains("dsn-cluster") };
    e = e.parentElement;
  }
  return null;
}

export interface PanZoomHooks {
  view: () => ViewBox; // the current transform
  applyView: () => void; // show the (changed) transform
  onClickNode: (id: string) => void; // a click (not a drag) on a node or cluster
  onDblClickNode: (id: string) => void;
}

/** Wires pan, zoom and clicks on `sv`; returns the cleanup of the window listeners. */
export function attachPanZoom(sv: SVGSVGElement, root: HTMLElement, hooks: PanZoomHooks): () => void {
  let drag: { x: number; y: number; vx: number; vy: number; moved: boolean } | null = null;
  let panFrame = 0;
  const onDown = (ev: MouseEvent) => {
    if (ev.button !== 0) return;
    const view = hooks.view();
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
    window.addEventListener("mousemove", onMove);
    window.addEventListener("mouseup", onUp);
  };
  const onMove = (ev: MouseEvent) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    const dy = ev.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    drag.moved = true;
    sv.classList.add("dsn-panning");
    const view = hooks.view();
    view.x = drag.vx + dx;
    view.y = drag.vy + dy;
    if (!panFrame)
      panFrame = requestAnimationFrame(() => {
        panFrame = 0;
        hooks.applyView();
        root.dataset.pans = String(Number(root.dataset.pans || "0") + 1);
      });
  };
  const onUp = (ev: MouseEvent) => {
    window.removeEventListener("mousemove", onMove);
    window.removeEventListener("mouseup", onUp);
    sv.classList.remove("dsn-panning");
    const d = drag;
    drag = null;
    if (!d || d.moved) return;
    const hit = nodeAt(sv, ev.target);
    if (hit) hooks.onClickNode(hit.id);
  };
  const onDbl = (ev: MouseEvent) => {
    const hit = nodeAt(sv, ev.target);
    if (hit) hooks.onDblClickNode(hit.id);
  };
  const onWheel = (ev: WheelEvent) => {
    ev.preventDefault();
    const rect = sv.getBoundingClientRect();
    const mx = ev.clientX - rect.left;
    const my = ev.clientY - rect.top;
    const view = hooks.view();
    const k = Math.min(4, Math.max(0.03, view.k * Math.exp(-ev.deltaY * 0.0015)));
    view.x = mx - ((mx - view.x) * k) / view.k;
    view.y = my - ((my - view.y) * k) / view.k;
    view.k = k;
    hooks.applyView();
  };
  sv.addEventListener("mousedown", onDown);
  sv.addEventListener("dblclick", onDbl);
  sv.addEventListener("wheel", onWheel, { passive: false });
  return () => {
    window.removeEventListener("mousemove", onMove);
    window.removeEventListener("mouseup", onUp);
  };
}
