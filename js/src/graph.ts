// dsnotebook dataflow graph: the captured forward pass as a layered graph (dagre, bundled).
//
// The graph arrives once (trait `graph`); per-step node values arrive on the heatmap's
// protocol (custom append/drop messages + snapshot traits, see heatmap/store.ts / _series.py).
// Layout runs once per set of expanded groups and is cached; data updates only recolour.
// Every name, label and shape goes through textContent, never innerHTML.
//
// This is the bundle's entry point; the parts live in graph/:
//   types.ts        the model traits and graph records
//   layout.ts       structure (groups, default expansion) and the dagre layout
//   draw.ts         building and colouring the SVG, colour bar, sparkline
//   panel.ts        details panel and events list
//   interaction.ts  pan, zoom, click / double-click hit-testing
//   view.ts         DOM, layout cache, draw loop, selection, wiring
//   style.ts        the stylesheet
import type { Initialize } from "@anywidget/types";
import { Store, followModel } from "./heatmap/store";
import type { Model } from "./graph/types";
import { createRender } from "./graph/view";

export default () => {
  const store = new Store();
  const initialize: Initialize<Model> = ({ model }) => followModel(model as never, store);
  const render = createRender(store);
  return { initialize, render };
};
