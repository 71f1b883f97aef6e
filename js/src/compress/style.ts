// The compression panel's CSS (JupyterLab theme variables, light defaults).
export const STYLE = `
.dsn-compress { box-sizing: border-box; padding: 6px 4px; font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); }
.dsn-cmp-title { font-weight: 600; margin-bottom: 4px; }
.dsn-cmp-statusline { color: var(--jp-brand-color1, #1976d2); font-size: var(--jp-ui-font-size0, 12px); margin-bottom: 4px; }
.dsn-cmp-empty { color: var(--jp-ui-font-color2, #777); font-style: italic; }
.dsn-cmp-scroll { overflow-x: auto; max-width: 100%; }
.dsn-cmp-table { border-collapse: collapse; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-cmp-table th { text-align: left; font-weight: 600; padding: 3px 8px; border-bottom: 1px solid var(--jp-border-color1, #bdbdbd);
  white-space: nowrap; }
.dsn-cmp-table td { padding: 4px 8px; vertical-align: top; border-bottom: 1px solid var(--jp-border-color2, #e8e8e8); }
.dsn-cmp-warnrow td { border-bottom: 1px solid var(--jp-border-color2, #e8e8e8); }
.dsn-cmp-row[data-worse] td { border-bottom: none; }
.dsn-cmp-chosen { background: rgba(25, 118, 210, .08); }
.dsn-cmp-method { min-width: 150px; max-width: 220px; }
.dsn-cmp-name { font-weight: 600; overflow-wrap: break-word; }
.dsn-cmp-backend, .dsn-cmp-status { color: var(--jp-ui-font-color2, #777); font-size: 11px; overflow-wrap: break-word; }
.dsn-cmp-status { color: #9a3412; }
.dsn-cmp-notes { font-size: 11px; color: var(--jp-ui-font-color2, #666); max-width: 260px; }
.dsn-cmp-notes summary { cursor: pointer; }
.dsn-cmp-cell { min-width: 110px; }
.dsn-cmp-track { height: 9px; width: 100px; background: var(--jp-layout-color2, #eee); border-radius: 2px; overflow: hidden; }
.dsn-cmp-bar { height: 100%; }
.dsn-cmp-base { background: #9e9e9e; }
.dsn-cmp-better { background: #3a9d5d; }
.dsn-cmp-same { background: #6b9bd1; }
.dsn-cmp-worse { background: #e0822b; }
.dsn-cmp-sensbar { background: #c0392b; }
.dsn-cmp-val { white-space: nowrap; font-variant-numeric: tabular-nums; margin-top: 1px; }
.dsn-cmp-sub { display: block; color: var(--jp-ui-font-color2, #666); font-size: 11px; white-space: normal; max-width: 120px; }
.dsn-cmp-better-text { color: #19652c; }
.dsn-cmp-worse-text { color: #b45309; font-weight: 600; }
.dsn-cmp-num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.dsn-cmp-warn { color: #9a3412; background: #fff4e5; font-size: 11.5px; }
.dsn-compress button { font: inherit; font-size: var(--jp-ui-font-size0, 12px); cursor: pointer; white-space: nowrap;
  background: var(--jp-brand-color1, #1976d2); color: #fff; border: 1px solid transparent; border-radius: 3px; padding: 2px 8px; }
.dsn-cmp-chosen button { background: #19652c; }
.dsn-cmp-hint { font-size: 11px; color: var(--jp-ui-font-color2, #777); margin: 4px 0 8px 0; }
.dsn-cmp-sens h4 { margin: 10px 0 4px 0; font-size: var(--jp-ui-font-size1, 13px); font-weight: 600; }
.dsn-cmp-sens-group { margin-bottom: 6px; }
.dsn-cmp-sens-title { font-weight: 600; font-size: var(--jp-ui-font-size0, 12px); margin: 4px 0 2px 0; }
.dsn-cmp-sens-grid { display: grid; grid-template-columns: minmax(80px, 240px) 120px auto; gap: 2px 8px; align-items: center;
  font-size: var(--jp-ui-font-size0, 12px); }
.dsn-cmp-sens-layer { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.dsn-cmp-sens-val { font-variant-numeric: tabular-nums; white-space: nowrap; color: var(--jp-ui-font-color2, #555); }
`;
