// dsnotebook performance panel: step breakdown, per-layer forward/backward bars, memory.
// Small JSON tables as traits (aggregated in Python); text through textContent only.
import type { Render } from "@anywidget/types";
import { css, el, formatBytes, formatSeconds, svg, text } from "./shared/ui";

interface Layer {
  module: string;
  fwd: number;
  bwd: number;
  calls: number;
}
type Phase = Record<string, number>;
interface Mem {
  module: string;
  kind: string;
  bytes: number;
}
interface Model {
  layers: Layer[];
  phases: Phase[];
  step: Phase;
  steady_steps: number;
  phase_styles: Array<[string, string, string]>;
  memory: Mem[];
  sampled_steps: number;
  selected_module: string;
  status: string;
  title: string;
}

// [name, label, colour] per phase, from Python (dsnotebook.core.clock / widgets.perf): defined once there
let PHASES: Array<[string, string, string]> = [];
const FWD = "#3b82c4";
const BWD = "#e0822b";
const TOP = 20;

const STYLE = `
.dsn-perf { box-sizing: border-box; padding: 6px 4px; font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); }
.dsn-perf-title { font-weight: 600; margin-right: 10px; }
.dsn-perf-status { color: var(--jp-ui-font-color2, #666); font-size: var(--jp-ui-font-size0, 11px); }
.dsn-perf h4 { margin: 10px 0 4px 0; font-size: var(--jp-ui-font-size1, 13px); font-weight: 600; }
.dsn-perf-empty { color: var(--jp-ui-font-color2, #777); font-style: italic; }
.dsn-stack { display: flex; height: 22px; border-radius: 3px; overflow: hidden; max-width: 760px;
  border: 1px solid var(--jp-border-color2, #e0e0e0); }
.dsn-stack > div { height: 100%; }
.dsn-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 4px 0; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-legend-item { display: inline-flex; align-items: center; gap: 4px; }
.dsn-sw { width: 11px; height: 11px; border-radius: 2px; display: inline-block; }
.dsn-layers { display: grid; grid-template-columns: minmax(80px, 240px) minmax(120px, 480px) auto; gap: 2px 8px;
  align-items: center; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-layer-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; cursor: pointer; }
.dsn-layer-bar { display: flex; height: 14px; cursor: pointer; }
.dsn-layer-bar > div { height: 100%; }
.dsn-layer-val { font-variant-numeric: tabular-nums; color: var(--jp-ui-font-color2, #555); white-space: nowrap; }
.dsn-layer-sel { font-weight: 700; color: var(--jp-brand-color1, #1976d2); }
.dsn-layer-bar.dsn-layer-sel { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.dsn-perf button { font: inherit; font-size: var(--jp-ui-font-size0, 12px); color: inherit; cursor: pointer;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px;
  padding: 1px 6px; margin-top: 4px; }
.dsn-mem { display: grid; grid-template-columns: minmax(80px, 240px) minmax(120px, 480px) auto; gap: 2px 8px;
  align-items: center; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-mem-bar { height: 12px; background: #5c9bd1; border-radius: 2px; }
.dsn-steps-svg { display: block; }
`;

const MEM_LABELS: Record<string, string> = {
  params: "parameters",
  grads: "gradients",
  optimizer_state: "optimizer state",
  peak_allocated: "peak allocated (device)",
  reserved: "reserved (device)",
  rss: "process memory (RSS)",
  peak_rss: "peak process memory",
};

const render: Render<Model> = ({ model, el: host }) => {
  const root = el("div", "dsn-perf");
  host.appendChild(root);
  let showAll = false;
  let draws = 0;

  const select = (m: string) => {
    model.set("selected_module", model.get("selected_module") === m ? "" : m);
    model.save_changes();
  };

  const draw = () => {
    const layers = model.get("layers") || [];
    const phases = model.get("phases") || [];
    const memory = model.get("memory") || [];
    const sel = model.get("selected_module") || "";
    PHASES = model.get("phase_styles") || [];
    const head = el("div", "");
    head.append(text("span", "dsn-perf-title", model.get("title") || "performance"),
      text("span", "dsn-perf-status", [model.get("status"), `${model.get("sampled_steps") || 0} sampled steps`].filter(Boolean).join(" · ")));
    const parts: Element[] = [css(STYLE), head];

    // step breakdown: the median steady step (the advisor's numbers), then the last steps as stacked columns
    parts.push(text("h4", "", "step breakdown"));
    if (!phases.length) parts.push(text("div", "dsn-perf-empty", "no sampled steps yet (use --profile-every N)"));
    else {
      const mean: Phase = model.get("step") || {};
      const sum = PHASES.reduce((a, [k]) => a + (mean[k] || 0), 0) || 1;
      const stack = el("div", "dsn-stack");
      const legend = el("div", "dsn-legend");
      for (const [k, label, color] of PHASES) {
        const v = mean[k];
        if (!(v > 0)) continue;
        const seg = el("div", `dsn-phase dsn-phase-${k}`);
        seg.style.width = `${(100 * v) / sum}%`;
        seg.style.background = color;
        seg.title = `${label}: ${formatSeconds(v)} (${((100 * v) / sum).toFixed(0)}%)`;
        stack.appendChild(seg);
        const item = el("span", "dsn-legend-item");
        const sw = el("span", "dsn-sw");
        sw.style.background = color;
        item.append(sw, document.createTextNode(`${label} ${formatSeconds(v)} (${((100 * v) / sum).toFixed(0)}%)`));
        legend.appendChild(item);
      }
      const steady = model.get("steady_steps") || 0;
      parts.push(text("div", "dsn-perf-status", `median step ${formatSeconds(mean.step || sum)} of ${steady} sampled steps` +
        (steady < phases.length ? " (warm-up step left out)" : "")));
      parts.push(stack, legend);
      parts.push(stepColumns(phases.slice(-80)));
    }

    // per layer
    parts.push(text("h4", "", "per layer: forward and backward time per sampled step"));
    if (!layers.length) parts.push(text("div", "dsn-perf-empty", "no per-layer timings yet"));
    else {
      // containers (the root, a block holding layers) include their children's time: leaves only
      const names = layers.map((l) => l.module);
      const container = (m: string) => m === "(root)" || names.some((o) => o !== m && o.startsWith(m + "."));
      const leaves = layers.filter((l) => !container(l.module));
      const sorted = (leaves.length ? leaves : layers).sort((a, b) => b.fwd + b.bwd - (a.fwd + a.bwd));
      const nCont = layers.length - leaves.length;
      if (nCont && leaves.length)
        parts.push(text("div", "dsn-perf-status", `${nCont} container modules (which include their children's time) not shown`));
      const shown = showAll ? sorted : sorted.slice(0, TOP);
      const max = Math.max(...sorted.map((l) => l.fwd + l.bwd), 1e-12);
      const grid = el("div", "dsn-layers");
      for (const l of shown) {
        const on = l.module === sel;
        const name = text("div", `dsn-layer-name${on ? " dsn-layer-sel" : ""}`, l.module);
        name.title = l.module;
        const barBox = el("div", `dsn-layer-bar${on ? " dsn-layer-sel" : ""}`);
        barBox.dataset.module = l.module;
        const f = el("div", "dsn-bar-fwd");
        f.style.width = `${(100 * l.fwd) / max}%`;
        f.style.background = FWD;
        const b = el("div", "dsn-bar-bwd");
        b.style.width = `${(100 * l.bwd) / max}%`;
        b.style.background = BWD;
        barBox.append(f, b);
        barBox.title = `${l.module}: forward ${formatSeconds(l.fwd)}, backward ${formatSeconds(l.bwd)}, ${l.calls} call(s)`;
        const val = text("div", "dsn-layer-val", `${formatSeconds(l.fwd)} + ${formatSeconds(l.bwd)}`);
        for (const n of [name, barBox]) n.addEventListener("click", () => select(l.module));
        grid.append(name, barBox, val);
      }
      const legend = el("div", "dsn-legend");
      for (const [label, color] of [["forward", FWD], ["backward", BWD]]) {
        const item = el("span", "dsn-legend-item");
        const sw = el("span", "dsn-sw");
        sw.style.background = color;
        item.append(sw, document.createTextNode(label));
        legend.appendChild(item);
      }
      parts.push(legend, grid);
      if (sorted.length > TOP) {
        const more = el("button", "dsn-perf-more");
        more.type = "button";
        more.textContent = showAll ? "show the top 20" : `show all ${sorted.length} layers`;
        more.addEventListener("click", () => {
          showAll = !showAll;
          draw();
        });
        parts.push(more);
      }
    }

    // memory
    parts.push(text("h4", "", "memory (latest sampled step)"));
    if (!memory.length) parts.push(text("div", "dsn-perf-empty", "no memory measurements yet"));
    else {
      const proc = new Set(["rss", "peak_rss", "peak_allocated", "reserved"]);
      const procRows = memory.filter((m) => proc.has(m.kind));
      if (procRows.length)
        parts.push(text("div", "dsn-perf-status", procRows.map((m) => `${MEM_LABELS[m.kind] || m.kind}: ${formatBytes(m.bytes)}`).join(" · ")));
      const totals = memory.filter((m) => m.kind !== "activations" && !proc.has(m.kind));
      const acts = memory.filter((m) => m.kind === "activations").sort((a, b) => b.bytes - a.bytes);
      const actSum = acts.reduce((a, m) => a + m.bytes, 0);
      const rows: Array<[string, number, string]> = totals.map((m) => [MEM_LABELS[m.kind] || m.kind, m.bytes, ""]);
      if (acts.length) rows.push(["activations saved for backward", actSum, ""]);
      for (const m of acts.slice(0, 8)) rows.push([`  ${m.module}`, m.bytes, m.module]);
      const max = Math.max(...rows.map((r) => r[1]), 1);
      const grid = el("div", "dsn-mem");
      for (const [label, bytes, mod] of rows) {
        const name = text("div", `dsn-layer-name${mod && mod === sel ? " dsn-layer-sel" : ""}`, label);
        const bar = el("div", "");
        const fill = el("div", "dsn-mem-bar");
        fill.style.width = `${Math.max(0.5, (100 * bytes) / max)}%`;
        if (mod) fill.style.background = "#9ccbe8";
        bar.appendChild(fill);
        if (mod) for (const n of [name, bar]) n.addEventListener("click", () => select(mod));
        grid.append(name, bar, text("div", "dsn-layer-val", formatBytes(bytes)));
      }
      parts.push(grid);
    }
    root.replaceChildren(...parts);
    root.dataset.draws = String(++draws);
    root.dataset.layers = String(layers.length);
    root.dataset.phases = String(phases.length);
  };

  const stepColumns = (rows: Phase[]): SVGSVGElement => {
    const W = 760;
    const H = 70;
    const s = svg("svg", "dsn-steps-svg") as SVGSVGElement;
    s.setAttribute("width", String(W));
    s.setAttribute("height", String(H + 14));
    const max = Math.max(...rows.map((p) => PHASES.reduce((a, [k]) => a + (p[k] || 0), 0)), 1e-12);
    const bw = Math.min(18, W / Math.max(1, rows.length));
    rows.forEach((p, i) => {
      let y = H;
      for (const [k, label, color] of PHASES) {
        const v = p[k] || 0;
        if (!(v > 0)) continue;
        const h = (v / max) * (H - 4);
        const r = svg("rect", "");
        r.setAttribute("x", String(i * bw + 1));
        r.setAttribute("y", String(y - h));
        r.setAttribute("width", String(Math.max(1, bw - 2)));
        r.setAttribute("height", String(h));
        r.setAttribute("fill", color);
        const t = svg("title", "");
        t.textContent = `step ${p.step}: ${label} ${formatSeconds(v)}`;
        r.appendChild(t);
        s.appendChild(r);
        y -= h;
      }
    });
    const a = svg("text", "");
    a.setAttribute("x", "0");
    a.setAttribute("y", String(H + 12));
    a.setAttribute("font-size", "10");
    a.setAttribute("fill", "currentColor");
    a.textContent = rows.length ? `step ${rows[0].step} … ${rows[rows.length - 1].step} (tallest ${formatSeconds(max)})` : "";
    s.appendChild(a);
    return s;
  };

  const names = ["layers", "phases", "step", "steady_steps", "phase_styles", "memory", "sampled_steps", "selected_module", "status", "title"];
  for (const n of names) model.on(`change:${n}`, draw);
  draw();
  return () => {
    for (const n of names) model.off(`change:${n}`, draw);
    root.remove();
  };
};

export default { render };
