// The graph panel's model traits and the graph trait's node/edge records.
import type { SeriesModel, SnapshotMeta, StatInfo } from "../shared/series";

export type { StatInfo };
export interface GNode {
  id: string;
  kind: string; // module | op | input | output
  label: string;
  name: string;
  type: string;
  params: number;
  call: number;
  parent: string | null;
  leaf: boolean;
  shapes: number[][];
  param_inputs?: string[];
}
export interface GEdge {
  source: string;
  target: string;
  shape?: number[];
  dtype?: string;
}
export interface EventInfo {
  step: number | null;
  kind: string;
  module: string | null;
  detail: string;
  node: string;
}
export interface Model extends SeriesModel {
  graph: { nodes?: GNode[]; edges?: GEdge[]; model?: string; message?: string | null };
  rows: { id: string }[];
  stats: StatInfo[];
  stat: string;
  step: number;
  selected_module: string;
  selected_node: string;
  events: EventInfo[];
  status: string;
  title: string;
  max_visible: number;
  lut: DataView;
  nan_color: number[];
  mark_color: number[];
  snapshot: DataView;
  snapshot_meta: SnapshotMeta;
}
