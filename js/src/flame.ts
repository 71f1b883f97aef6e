// dsnotebook flame view of traced functions: time on x, nesting on y (canvas); hover for times
// and shapes, click for the inputs/outputs statistics (and a module's graph node), double-click
// to zoom. The boxes arrive computed (Python's views/flame_tree.py); text via textContent only.
import type { Render } from "@anywidget/types";
import { el } from "./shared/ui";
import { FlameModel, mountFlame } from "./flame/view";

const render: Render<FlameModel> = ({ model, el: host }) => {
  const root = el("div", "dsn-flame");
  host.appendChild(root);
  const { draw, paint } = mountFlame(root, model as never);
  const traits = ["nodes", "total", "mode", "modes", "shown_call", "shown_step", "calls", "steps", "selected", "overhead", "hidden",
    "status", "title"];
  for (const t of traits) model.on(`change:${t}`, draw);
  model.on("change:selected_module", paint);
  let frame = 0;
  const resize = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(paint);
  }) : null;
  resize?.observe(root);
  draw();
  return () => {
    for (const t of traits) model.off(`change:${t}`, draw);
    model.off("change:selected_module", paint);
    resize?.disconnect();
    cancelAnimationFrame(frame);
  };
};

export default { render };
