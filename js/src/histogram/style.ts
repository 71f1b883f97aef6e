// Stylesheet of the histogram panel (class names are relied on by tests and the dashboard).
export const CSS = `
.dsn-histogram { position: relative; box-sizing: border-box; padding: 6px 4px 4px 4px; max-width: 100%;
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87));
  border-top: 1px solid var(--jp-border-color2, #e0e0e0); }
.dsn-hist-header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 10px; margin: 0 0 4px 0; }
.dsn-hist-title { font-weight: 600; }
.dsn-hist-tensor { font-family: var(--jp-code-font-family, monospace); overflow-wrap: anywhere; }
.dsn-hist-info, .dsn-hist-status { color: var(--jp-ui-font-color2, rgba(0,0,0,.6));
  font-size: var(--jp-ui-font-size0, 11px); }
.dsn-hist-close { margin-left: auto; font: inherit; cursor: pointer; color: inherit; line-height: 1;
  background: var(--jp-layout-color2, #eee); border: 1px solid var(--jp-border-color1, #bdbdbd);
  border-radius: 3px; padding: 1px 6px; }
.dsn-hist-wrap { position: relative; overflow-x: auto; max-width: 100%; }
.dsn-hist-canvas { display: block; cursor: crosshair; }
.dsn-hist-empty { color: var(--jp-ui-font-color2, rgba(0,0,0,.6)); font-size: var(--jp-ui-font-size0, 11px);
  padding: 4px 0; }
.dsn-hist-tooltip { position: absolute; z-index: 10; pointer-events: none; display: none; max-width: 420px;
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 4px; padding: 4px 7px;
  box-shadow: 0 2px 6px rgba(0,0,0,.25); font-size: var(--jp-ui-font-size0, 11px); line-height: 1.35;
  white-space: nowrap; }
`;
