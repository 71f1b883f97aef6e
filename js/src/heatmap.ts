// dsnotebook gradient heatmap: tensors (rows, model order, grouped by module) x steps.
//
// Data arrives as custom messages {type: "append"|"drop", seq, steps, shape} with one
// float32 buffer (layout stat, col, row), applied strictly in seq order; a periodic
// snapshot trait repairs gaps (messages sent before this model existed are lost).
// All text goes through textContent / fillText, never innerHTML.
//
// This is the bundle's entry point; the parts live in heatmap/:
//   store.ts  the delta/snapshot protocol (Store, applyDelta, applySnapshot)
//   draw.ts   geometry, aggregation and canvas drawing
//   view.ts   DOM, tooltip, zoom, linked selection, events
//   style.ts  the stylesheet
import type { Initialize } from "@anywidget/types";
import { followModel, Model, Store } from "./heatmap/store";
import { createRender } from "./heatmap/view";

export { Store, applyDelta, applySnapshot } from "./heatmap/store";

export default () => {
  const store = new Store();
  const initialize: Initialize<Model> = ({ model }) => followModel(model, store);
  const render = createRender(store);
  return { initialize, render };
};
