// Stylesheet of the graph panel (class names are relied on by tests and the dashboard).
export const STYLE = `
.dsn-graph { position: relative; box-sizing: border-box; padding: 6px 4px 4px 4px;
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); }
.dsn-graph-header { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 12px; margin: 0 0 4px 0; }
.dsn-graph-title { font-weight: 600; }
.dsn-graph select, .dsn-graph button { font: inherit; font-size: var(--jp-ui-font-size0, 12px); color: inherit;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd);
  border-radius: 3px; padding: 1px 6px; cursor: pointer; }
.dsn-graph button:hover { background: var(--jp-layout-color2, #eee); }
.dsn-graph-steplabel { font-variant-numeric: tabular-nums; min-width: 7em; }
.dsn-graph-step { width: 140px; }
.dsn-graph-status { color: var(--jp-ui-font-color2, rgba(0,0,0,.6)); font-size: var(--jp-ui-font-size0, 11px);
  min-height: 1em; margin: 0 0 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.dsn-graph-body { display: flex; gap: 8px; align-items: stretch; }
.dsn-graph-canvas { flex: 1 1 auto; min-width: 0; height: 520px; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px; background: var(--jp-layout-color0, #fff); overflow: hidden; position: relative; }
.dsn-graph-svg { width: 100%; height: 100%; display: block; cursor: grab; user-select: none; }
.dsn-graph-svg.dsn-panning { cursor: grabbing; }
.dsn-graph-svg text { font-family: inherit; pointer-events: none; }
.dsn-node { cursor: pointer; }
.dsn-node rect { stroke: var(--jp-border-color1, #9e9e9e); stroke-width: 1; }
.dsn-node.dsn-op rect { stroke-dasharray: none; }
.dsn-node.dsn-io rect { fill: var(--jp-layout-color2, #eeeeee); }
.dsn-node.dsn-group rect.dsn-box { stroke-width: 1.5; }
.dsn-node.dsn-group rect.dsn-box2 { fill: none; stroke: var(--jp-border-color1, #9e9e9e); }
.dsn-node.dsn-dead rect.dsn-box { stroke: #e08e0b; stroke-width: 2.5; stroke-dasharray: 5 3; }
.dsn-node.dsn-nonfinite rect.dsn-box { stroke: rgb(220, 30, 30); stroke-width: 3; }
.dsn-node.dsn-first rect.dsn-box { stroke: rgb(220, 30, 30); stroke-width: 4; }
.dsn-node.dsn-selected rect.dsn-box { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 3.5; stroke-dasharray: none; }
.dsn-node .dsn-badge { font-size: 10px; font-weight: 700; }
.dsn-node .dsn-sub { font-size: 10px; opacity: .8; }
.dsn-cluster rect { fill: var(--jp-layout-color1, #f7f9fc); fill-opacity: .55; stroke: var(--jp-border-color1, #b0bec5);
  stroke-dasharray: 4 3; rx: 6; }
.dsn-cluster.dsn-selected rect { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2.5; stroke-dasharray: none; }
.dsn-cluster text { font-size: 11px; fill: var(--jp-ui-font-color2, #555); }
.dsn-cluster .dsn-cluster-hit { cursor: pointer; pointer-events: all; fill: transparent; stroke: none; }
.dsn-edge { fill: none; stroke: var(--jp-ui-font-color3, #90a4ae); stroke-width: 1.2; pointer-events: none; }
.dsn-edge.dsn-edge-sel { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2; }
.dsn-edge-label { font-size: 10px; fill: var(--jp-ui-font-color2, #607d8b); }
.dsn-edge-label, .dsn-cluster-label { stroke: var(--jp-layout-color0, #fff); stroke-width: 3px; paint-order: stroke;
  stroke-linejoin: round; }
.dsn-cluster-label { font-size: 11px; fill: var(--jp-ui-font-color2, #555); }
.dsn-far .dsn-edge-label, .dsn-far .dsn-sub { display: none; }
.dsn-graph-side { flex: 0 0 290px; max-height: 520px; overflow: auto; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px; padding: 6px 8px; box-sizing: border-box; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-side-title { font-weight: 600; font-size: var(--jp-ui-font-size1, 13px); overflow-wrap: anywhere; }
.dsn-side-kv { display: grid; grid-template-columns: auto 1fr; gap: 1px 8px; margin: 4px 0; }
.dsn-side-kv > div:nth-child(odd) { color: var(--jp-ui-font-color2, #666); }
.dsn-side-kv > div { overflow-wrap: anywhere; }
.dsn-side-hint { color: var(--jp-ui-font-color2, #777); }
.dsn-spark { display: block; margin: 4px 0; }
.dsn-spark .dsn-spark-line { fill: none; stroke: var(--jp-brand-color1, #1976d2); stroke-width: 1.5; }
.dsn-spark .dsn-spark-now { stroke: rgb(220, 30, 30); stroke-width: 1; }
.dsn-spark text { font-size: 9px; fill: var(--jp-ui-font-color2, #666); }
.dsn-graph-events { margin-top: 6px; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-event { cursor: pointer; padding: 2px 6px; border-radius: 3px; overflow-wrap: anywhere; }
.dsn-event:hover { background: var(--jp-layout-color2, #eee); }
.dsn-event.dsn-event-nonfinite { color: rgb(190, 20, 20); font-weight: 600; }
.dsn-graph-legend { display: inline-flex; gap: 10px; align-items: center; font-size: var(--jp-ui-font-size0, 11px);
  color: var(--jp-ui-font-color2, #666); }
.dsn-legend-swatch { display: inline-block; width: 14px; height: 10px; border-radius: 2px; vertical-align: middle;
  margin-right: 3px; box-sizing: border-box; }
`;
