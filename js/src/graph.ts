// dsnotebook dataflow graph: the captured forward pass as a layered graph (dagre, bundled).
//
// The graph arrives once (trait `graph`); per-step node values arrive on the series protocol
// (shared/series.ts, the heatmap's too). Layout runs once per set of expanded groups and is
// cached; data updates only recolour. Every name, label and shape goes through textContent.
//
// This is the bundle's entry point; the parts live in graph/:
//   types.ts        the model traits and graph records
//   structure.ts    groups, depth, default expansion (pure)
//   layout.ts       the dagre layout of the visible boxes
//   draw.ts         building and colouring the SVG, colour bar, sparkline
//   panel.ts        details panel and events list
//   interaction.ts  pan, zoom, click / double-click hit-testing
//   dom.ts          the panel's elements
//   view.ts         layout cache, draw loop, selection, wiring
//   style.ts        the stylesheet
import type { Initialize } from "@anywidget/types";
import { followModel } from "./shared/series";
import { SeriesStore } from "./shared/store";
import type { Model } from "./graph/types";
import { createRender } from "./graph/view";

export default () => {
  const store = new SeriesStore();
  const initialize: Initialize<Model> = ({ model }) => followModel(model, store);
  const render = createRender(store);
  return { initialize, render };
};
