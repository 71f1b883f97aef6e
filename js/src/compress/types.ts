// The compression panel's traits (shaped in Python by dsnotebook/views/compress_view.py).
export interface Row {
  method: string;
  status: string;
  backend: string;
  params: number | null;
  size_bytes: number | null;
  size_ratio: number | null;
  sparse_bytes: number | null;
  sparse_format: string;
  latency_b1_ms: number | null;
  latency_b1_iqr_ms: number | null;
  speedup_b1: number | null;
  speedup_b1_lo: number | null;
  speedup_b1_hi: number | null;
  verdict_b1: string;
  latency_bN_ms: number | null;
  latency_bN_iqr_ms: number | null;
  speedup_bN: number | null;
  speedup_bN_lo: number | null;
  speedup_bN_hi: number | null;
  verdict_bN: string;
  metric: number | null;
  metric_delta: number | null;
  max_abs_dev: number | null;
  rel_dev: number | null;
  agreement: number | null;
  worse: string[];
  warnings: string[];
  notes: string[];
}

export interface SensRow {
  method: string;
  layer: string;
  type: string;
  metric: number | null;
  metric_delta: number | null;
  max_abs_dev: number | null;
}

export interface Model {
  rows: Row[];
  sensitivity: SensRow[];
  metric_name: string;
  higher_is_better: boolean;
  has_metric: boolean;
  batch: number;
  chosen: string;
  status: string;
  title: string;
}

/** Which measurement a table column shows (also the keys of Row.worse). */
export type Measure = "size" | "b1" | "bN" | "metric";
