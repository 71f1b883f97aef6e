// The graph panel's elements: header controls (statistic, step slider, latest / fit / expand /
// collapse buttons, colour bar, legend), status line, the SVG canvas with its layers, the
// details side panel and the events list. Only structure here; view.ts fills and wires it.
import { css, el, svg } from "../shared/ui";
import type { SvgLayers } from "./draw";
import { STYLE } from "./style";

export interface GraphDom {
  root: HTMLDivElement;
  title: HTMLSpanElement;
  select: HTMLSelectElement;
  slider: HTMLInputElement;
  stepLabel: HTMLSpanElement;
  latestBtn: HTMLButtonElement;
  fitBtn: HTMLButtonElement;
  expandBtn: HTMLButtonElement;
  collapseBtn: HTMLButtonElement;
  legend: HTMLSpanElement;
  bar: HTMLCanvasElement;
  status: HTMLDivElement;
  canvasBox: HTMLDivElement;
  sv: SVGSVGElement;
  viewport: SVGElement;
  layers: SvgLayers;
  markerId: string;
  side: HTMLDivElement;
  events: HTMLDivElement;
}

function button(cls: string, label: string): HTMLButtonElement {
  const b = el("button", cls);
  b.type = "button";
  b.textContent = label;
  return b;
}

/** The arrow-head marker edges end with (a unique id per panel). */
function arrowDefs(): { defs: SVGElement; markerId: string } {
  const defs = svg("defs", "");
  const marker = svg("marker", "");
  const markerId = `dsn-arrow-${Math.random().toString(36).slice(2)}`;
  marker.setAttribute("id", markerId);
  const attrs = [["viewBox", "0 0 10 10"], ["refX", "9"], ["refY", "5"], ["markerWidth", "7"], ["markerHeight", "7"], ["orient", "auto-start-reverse"]];
  for (const [k, v] of attrs) marker.setAttribute(k, v);
  const arrow = svg("path", "");
  arrow.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
  arrow.setAttribute("fill", "var(--jp-ui-font-color3, #90a4ae)");
  marker.appendChild(arrow);
  defs.appendChild(marker);
  return { defs, markerId };
}

/** Builds the panel's elements inside `host`. */
export function buildDom(host: HTMLElement): GraphDom {
  const root = el("div", "dsn-graph");
  const header = el("div", "dsn-graph-header");
  const title = el("span", "dsn-graph-title");
  const select = el("select", "dsn-graph-stat");
  select.setAttribute("aria-label", "statistic");
  const slider = el("input", "dsn-graph-step");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  slider.setAttribute("aria-label", "step");
  const stepLabel = el("span", "dsn-graph-steplabel");
  const latestBtn = button("dsn-graph-latest", "latest");
  const fitBtn = button("dsn-graph-fit", "fit");
  const expandBtn = button("dsn-graph-expand-all", "expand all");
  const collapseBtn = button("dsn-graph-collapse-all", "collapse");
  const legend = el("span", "dsn-graph-legend");
  const bar = el("canvas", "dsn-graph-colorbar");
  header.append(title, select, slider, stepLabel, latestBtn, fitBtn, expandBtn, collapseBtn, bar, legend);
  const status = el("div", "dsn-graph-status");
  const body = el("div", "dsn-graph-body");
  const canvasBox = el("div", "dsn-graph-canvas");
  const sv = svg("svg", "dsn-graph-svg") as SVGSVGElement;
  sv.setAttribute("role", "img");
  const { defs, markerId } = arrowDefs();
  const viewport = svg("g", "dsn-viewport");
  const layers: SvgLayers = {
    gClusters: svg("g", "dsn-clusters"),
    gEdges: svg("g", "dsn-edges"),
    gLabels: svg("g", "dsn-edge-labels"),
    gNodes: svg("g", "dsn-nodes"),
  };
  viewport.append(layers.gClusters, layers.gEdges, layers.gLabels, layers.gNodes);
  sv.append(defs, viewport);
  canvasBox.appendChild(sv);
  const side = el("div", "dsn-graph-side");
  body.append(canvasBox, side);
  const events = el("div", "dsn-graph-events");
  root.append(css(STYLE), header, status, body, events);
  host.appendChild(root);
  return { root, title, select, slider, stepLabel, latestBtn, fitBtn, expandBtn, collapseBtn, legend, bar, status,
    canvasBox, sv, viewport, layers, markerId, side, events };
}
