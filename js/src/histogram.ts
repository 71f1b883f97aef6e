// dsnotebook histogram-over-steps panel: one tensor's log2|g| histogram, bins x steps, exact
// counts, non-finite elements and exact zeros drawn apart from the log2 axis.
//
// Columns arrive on the series protocol (shared/series.ts); each count travels as two exact
// float32 planes (lo, hi). The parts live in histogram/:
//   types.ts   the model traits
//   counts.ts  exact counts, bin span, column aggregation, colour range, tooltip text (pure)
//   view.ts    DOM, drawing, tooltip and the close button
//   style.ts   the stylesheet
import type { Initialize } from "@anywidget/types";
import { followModel } from "./shared/series";
import { SeriesStore } from "./shared/store";
import type { Model } from "./histogram/types";
import { createRender } from "./histogram/view";

export default () => {
  const store = new SeriesStore();
  const initialize: Initialize<Model> = ({ model }) => followModel(model, store);
  const render = createRender(store);
  return { initialize, render };
};
