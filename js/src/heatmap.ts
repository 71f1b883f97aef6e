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
import { applyDelta, applySnapshot, DeltaMsg, Model, Store } from "./heatmap/store";
import { createRender } from "./heatmap/view";

export { Store, applyDelta, applySnapshot } from "./heatmap/store";

export default () => {
  const store = new Store();

  const initialize: Initialize<Model> = ({ model }) => {
    applySnapshot(model, store, true);
    const onCustom = (msg: DeltaMsg, buffers: DataView[]) => {
      if (applyDelta(store, msg, buffers)) store.changed();
    };
    const onSnapshot = () => {
      if (applySnapshot(model, store, false)) store.changed();
    };
    const onShape = () => {
      applySnapshot(model, store, true);
      store.changed();
    };
    model.on("msg:custom", onCustom);
    model.on("change:snapshot_meta", onSnapshot);
    model.on("change:rows", onShape);
    model.on("change:stats", onShape);
    return () => {
      model.off("msg:custom", onCustom);
      model.off("change:snapshot_meta", onSnapshot);
      model.off("change:rows", onShape);
      model.off("change:stats", onShape);
    };
  };

  const render = createRender(store);

  return { initialize, render };
};
