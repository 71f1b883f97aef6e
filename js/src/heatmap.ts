// dsnotebook gradient heatmap: tensors (rows, model order, grouped by module) x steps.
//
// Columns arrive on the series protocol (shared/series.ts: ordered deltas + a periodic
// snapshot). All text goes through textContent / fillText, never innerHTML.
//
// This is the bundle's entry point; the parts live in heatmap/:
//   types.ts      the model traits
//   geometry.ts   cell sizes, column aggregation, hit-testing (pure)
//   cells.ts      the cells and the non-finite marks on the canvas
//   axes.ts       row labels, the step axis and the colour bar
//   tooltip.ts    the tooltip of the cell under the pointer
//   zoom.ts       drag across steps to zoom
//   selection.ts  the linked selection (selected_module / selected_step)
//   view.ts       DOM, draw loop and wiring
//   style.ts      the stylesheet
import type { Initialize } from "@anywidget/types";
import { followModel } from "./shared/series";
import { SeriesStore } from "./shared/store";
import type { Model } from "./heatmap/types";
import { createRender } from "./heatmap/view";

export default () => {
  const store = new SeriesStore();
  const initialize: Initialize<Model> = ({ model }) => followModel(model, store);
  const render = createRender(store);
  return { initialize, render };
};
