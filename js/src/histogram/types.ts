// The histogram panel's model traits: rows are the histogram's bins, then the non-finite row.
import type { SeriesModel, StatInfo } from "../shared/series";

export interface BinRow {
  name: string;
  bin: number;
  exp: number | null; // floor(log2|g|) of the bin; null for exact zeros and non-finite
}
export interface Model extends SeriesModel {
  rows: BinRow[];
  stats: StatInfo[]; // "lo", "hi": count = hi * 2^24 + lo (both exact in float32)
  title: string;
  status: string;
  tensor: string;
  shown: string; // the tensor whose columns are held (the kernel answers a click when it is free)
  numel: number;
  shape: number[];
  lut: DataView;
  nan_color: number[];
  mark_color: number[];
}
