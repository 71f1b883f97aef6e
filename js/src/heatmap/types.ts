// The heatmap panel's model traits (rows are tensors in model order).
import type { SeriesModel, StatInfo } from "../shared/series";

export interface RowInfo {
  name: string;
  module: string;
  tensor: string;
  shape?: number[];
}
export interface Model extends SeriesModel {
  rows: RowInfo[];
  stats: StatInfo[];
  stat: string;
  mark_stat: string;
  status: string;
  title: string;
  lut: DataView;
  nan_color: number[];
  mark_color: number[];
  selected_module?: string;
  selected_step?: number;
  selected_tensor?: string;
  hover_step?: number;
}
