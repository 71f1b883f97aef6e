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

/** The transform that fits a `w` x `h` layout into a `W` x `H` box (zoom at most 1.2), top-aligned
 * when it is still taller than the box. */
export function fitView(w: number, h: number, W: number, H: number): ViewBox {
  const k = Math.min(1.2, Math.max(0.05, Math.min(W / w, H / h)));
  return { k, x: (W - w * k) / 2, y: h * k > H ? 0 : Math.max(0, (H - h * k) / 2) };
}

/** The first view of a layout: readable boxes (zoom 0.75 to 1.1), centred when it fits, else
 * its top-left corner (a deep model is a tall chain: start at its top). */
export function firstView(w: number, h: number, W: number, H: number): ViewBox {
  const k = Math.min(1.1, Math.max(0.75, Math.min(W / w, H / h)));
  return { k, x: w * k < W ? (W - w * k) / 2 : 0, y: h * k < H ? (H - h * k) / 2 : 0 };
}

/** `view` moved so that layout point (x, y) is centred in a `W` x `H` box, unless it is
 * already visible (20 px inside the edges); zooms in to 0.8 from below 0.5. */
export function centerOn(view: ViewBox, x: number, y: number, W: number, H: number): ViewBox {
  const sx = x * view.k + view.x;
  const sy = y * view.k + view.y;
  if (sx > 20 && sx < W - 20 && sy > 20 && sy < H - 20) return view;
  const k = view.k < 0.5 ? 0.8 : view.k;
  return { k, x: W / 2 - x * k, y: H / 2 - y * k };
}
