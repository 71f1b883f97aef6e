// The before/after table: one row per model, bars for size, latency (batch 1 and N) and the
// metric, the speed-up with its quartiles, warnings under the row, a "use this model" button.
import { el, formatBytes, formatCount, text } from "../shared/ui";
import { barFraction, columnMax, deltaText, finite, measureValue, msText, numText, ratioText, speedText, tone } from "./scale";
import type { Measure, Model, Row } from "./types";

type Get = <K extends keyof Model>(k: K) => Model[K];

function bar(frac: number, toneName: string): HTMLElement {
  const track = el("div", "dsn-cmp-track");
  const fill = el("div", `dsn-cmp-bar dsn-cmp-${toneName}`);
  fill.style.width = `${(100 * frac).toFixed(1)}%`;
  fill.dataset.frac = frac.toFixed(4);
  track.appendChild(fill);
  return track;
}

function measureCell(row: Row, m: Measure, max: number, isBase: boolean, main: string, sub: string): HTMLElement {
  const td = el("td", "dsn-cmp-cell");
  const t = tone(row, m, isBase);
  td.dataset.measure = m;
  td.dataset.tone = t;
  if (row.status === "ok") td.appendChild(bar(barFraction(measureValue(row, m), max), t));
  const line = el("div", "dsn-cmp-val");
  line.append(text("span", "dsn-cmp-main", main));
  if (sub) line.append(text("span", `dsn-cmp-sub dsn-cmp-${t}-text`, sub));
  td.appendChild(line);
  return td;
}

function methodCell(row: Row, isBase: boolean): HTMLElement {
  const td = el("td", "dsn-cmp-method");
  td.appendChild(text("div", "dsn-cmp-name", row.method));
  if (!isBase && row.backend) td.appendChild(text("div", "dsn-cmp-backend", row.backend));
  if (row.status !== "ok") td.appendChild(text("div", "dsn-cmp-status", row.status));
  if (row.notes && row.notes.length) {
    const d = el("details", "dsn-cmp-notes");
    d.appendChild(text("summary", "", `notes (${row.notes.length})`));
    for (const n of row.notes) d.appendChild(text("div", "", n));
    td.appendChild(d);
  }
  return td;
}

export function buildTable(get: Get, choose: (method: string) => void): HTMLElement {
  const rows = get("rows") || [];
  const hasMetric = get("has_metric");
  const n = get("batch");
  const chosen = get("chosen");
  const max = {
    size: columnMax(rows.map((r) => r.size_bytes)),
    b1: columnMax(rows.map((r) => r.latency_b1_ms)),
    bN: columnMax(rows.map((r) => r.latency_bN_ms)),
    metric: columnMax(rows.map((r) => (finite(r.metric) ? Math.abs(r.metric) : null))),
  };
  const table = el("table", "dsn-cmp-table");
  const head = el("tr", "");
  const titles = ["model", "size (torch.save)", "weights", "latency, batch 1", `latency, batch ${n}`,
    hasMetric ? get("metric_name") : "top-1 agreement", "max |Δ output|", ""];
  for (const h of titles) head.appendChild(text("th", "", h));
  const thead = el("thead", "");
  thead.appendChild(head);
  const body = el("tbody", "");
  rows.forEach((r, i) => {
    const isBase = i === 0;
    const tr = el("tr", "dsn-cmp-row");
    tr.dataset.method = r.method;
    tr.dataset.status = r.status;
    if (r.warnings && r.warnings.length) tr.dataset.worse = r.worse.join(",") || "1";
    if (chosen && chosen === r.method) tr.classList.add("dsn-cmp-chosen");
    tr.appendChild(methodCell(r, isBase));
    const sparse = finite(r.sparse_bytes) ? ` · as ${r.sparse_format}: ${formatBytes(r.sparse_bytes)}` : "";
    tr.appendChild(measureCell(r, "size", max.size, isBase, finite(r.size_bytes) ? formatBytes(r.size_bytes) : "–",
      (isBase ? "" : ratioText(r.size_ratio)) + sparse));
    tr.appendChild(text("td", "dsn-cmp-num", finite(r.params) ? formatCount(r.params) : "–"));
    tr.appendChild(measureCell(r, "b1", max.b1, isBase, msText(r.latency_b1_ms),
      speedText(r.speedup_b1, r.speedup_b1_lo, r.speedup_b1_hi, r.verdict_b1)));
    tr.appendChild(measureCell(r, "bN", max.bN, isBase, msText(r.latency_bN_ms),
      speedText(r.speedup_bN, r.speedup_bN_lo, r.speedup_bN_hi, r.verdict_bN)));
    if (hasMetric) tr.appendChild(measureCell(r, "metric", max.metric, isBase, numText(r.metric), isBase ? "" : deltaText(r.metric_delta)));
    else {
      const td = text("td", "dsn-cmp-num", finite(r.agreement) ? `${(100 * r.agreement).toFixed(1)}%` : "–");
      td.dataset.measure = "metric";
      td.dataset.tone = tone(r, "metric", isBase);
      tr.appendChild(td);
    }
    tr.appendChild(text("td", "dsn-cmp-num", finite(r.max_abs_dev) ? numText(r.max_abs_dev) +
      (finite(r.rel_dev) && !isBase ? ` (${(100 * r.rel_dev).toFixed(1)}%)` : "") : "–"));
    const act = el("td", "dsn-cmp-act");
    if (!isBase && r.status === "ok") {
      const b = el("button", "dsn-cmp-choose");
      b.type = "button";
      b.dataset.method = r.method;
      b.textContent = chosen === r.method ? "✓ chosen" : "use this model";
      b.addEventListener("click", () => choose(r.method));
      act.appendChild(b);
    }
    tr.appendChild(act);
    body.appendChild(tr);
    if (r.warnings && r.warnings.length) {
      const wr = el("tr", "dsn-cmp-warnrow");
      const td = el("td", "dsn-cmp-warn");
      td.colSpan = titles.length;
      for (const w of r.warnings) td.appendChild(text("div", "", `⚠ ${r.method}: ${w}`));
      wr.appendChild(td);
      body.appendChild(wr);
    }
  });
  table.append(thead, body);
  const scroll = el("div", "dsn-cmp-scroll");
  scroll.appendChild(table);
  return scroll;
}
