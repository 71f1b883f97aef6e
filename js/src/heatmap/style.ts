// Stylesheet of the heatmap panel (class names are relied on by tests and the dashboard).
export const CSS = `
.dsn-heatmap { position: relative; box-sizing: border-box; padding: 6px 4px 4px 4px;
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87));
  background: var(--jp-layout-color0, transparent); max-width: 100%; }
.dsn-heatmap-header { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; margin: 0 0 6px 0; }
.dsn-heatmap-title { font-weight: 600; }
.dsn-stat-select { font: inherit; color: inherit; background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; padding: 1px 4px; }
.dsn-status { color: var(--jp-ui-font-color2, rgba(0,0,0,.6)); font-size: var(--jp-ui-font-size0, 11px);
  margin: 0 0 4px 0; min-height: 1em; white-space: pre-wrap; overflow-wrap: anywhere; }
.dsn-colorbar { display: block; }
.dsn-heatmap-scroll { overflow: auto; max-height: 560px; max-width: 100%; }
.dsn-heatmap-canvas { display: block; cursor: crosshair; }
.dsn-heatmap-axis { display: block; }
.dsn-tooltip { position: absolute; z-index: 10; pointer-events: none; display: none; max-width: 420px;
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 4px; padding: 4px 7px;
  box-shadow: 0 2px 6px rgba(0,0,0,.25); font-size: var(--jp-ui-font-size0, 11px); line-height: 1.35;
  overflow-wrap: anywhere; }
.dsn-tooltip .dsn-tt-module { font-weight: 600; }
.dsn-zoom-reset { font: inherit; font-size: var(--jp-ui-font-size0, 11px); color: inherit; cursor: pointer;
  background: var(--jp-layout-color2, #eee); border: 1px solid var(--jp-border-color1, #bdbdbd);
  border-radius: 3px; padding: 1px 6px; }
.dsn-zoom-box { position: absolute; display: none; pointer-events: none; z-index: 5;
  background: rgba(90, 150, 255, .18); border: 1px solid rgba(90, 150, 255, .8); }
.dsn-tooltip .dsn-tt-mark { color: rgb(220, 30, 30); font-weight: 600; }
.dsn-heatmap-scroll { position: relative; }
.dsn-heatmap-selection { position: absolute; display: none; pointer-events: none; box-sizing: border-box;
  border: 2px solid var(--jp-brand-color1, #1976d2); border-radius: 2px;
  box-shadow: 0 0 0 1px rgba(255, 255, 255, .7); }
.dsn-heatmap-step-mark { position: absolute; display: none; pointer-events: none; box-sizing: border-box;
  border-left: 1px dashed var(--jp-brand-color1, #1976d2); border-right: 1px dashed var(--jp-brand-color1, #1976d2); }
`;
