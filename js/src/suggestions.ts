// dsnotebook suggestions panel: one card per advisor suggestion (evidence, gain, snippet
// with a copy button, verify button with live progress and the A/B result).
// Browser -> kernel: {type: "verify", id}. Text through textContent only.
import type { Render } from "@anywidget/types";
import { css, el, formatBytes, text } from "./shared/ui";
import { loopText } from "./suggestions/loop";

interface Result {
  error?: string;
  variant?: string;
  verdict?: string;
  reason?: string;
  speedup?: number;
  speedup_iqr?: number[];
  baseline_s?: number;
  variant_s?: number;
  memory_change?: number | null;
  loss_drift?: number | null;
  pairs?: number;
  steps_per_block?: number;
  baseline_saved_bytes?: number;
  variant_saved_bytes?: number;
  // timing: "step" (batches loaded before the clock) or "loop"; with_loading: the loop as it is
  extra?: Record<string, unknown> | null;
}
interface Sugg {
  id: string;
  rule: string;
  title: string;
  category: string;
  severity: string;
  evidence: Record<string, unknown>;
  gain: string;
  snippet: string;
  verify_hint: string;
  can_verify: boolean;
  status: string;
  result: Result | null;
}
interface Progress {
  id?: string;
  done?: number;
  total?: number;
  message?: string;
  running?: boolean;
}
interface Model {
  suggestions: Sugg[];
  progress: Progress;
  verify_steps: number;
  status: string;
  title: string;
}

const STYLE = `
.dsn-sugg { box-sizing: border-box; padding: 6px 4px; font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, rgba(0,0,0,.87)); }
.dsn-sugg-head { font-weight: 600; margin-bottom: 6px; }
.dsn-sugg-empty { color: var(--jp-ui-font-color2, #777); font-style: italic; }
.dsn-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 10px; }
.dsn-card { border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 6px; padding: 8px 10px;
  background: var(--jp-layout-color1, #fff); box-shadow: 0 1px 2px rgba(0,0,0,.06); min-width: 0; }
.dsn-card-warning { border-left: 4px solid #e0822b; }
.dsn-card-title { font-weight: 600; overflow-wrap: anywhere; }
.dsn-chips { display: flex; gap: 6px; margin: 3px 0 5px 0; flex-wrap: wrap; }
.dsn-chip { font-size: 10.5px; padding: 0 6px; border-radius: 8px; background: var(--jp-layout-color2, #eee);
  color: var(--jp-ui-font-color2, #555); }
.dsn-chip-verified { background: #d7f0dc; color: #19652c; font-weight: 600; }
.dsn-chip-refuted { background: #fde2d5; color: #9a3412; font-weight: 600; }
.dsn-chip-error { background: #fbd5d5; color: #991b1b; font-weight: 600; }
.dsn-chip-running { background: #dbe9fb; color: #1e4f91; font-weight: 600; }
.dsn-evidence { display: grid; grid-template-columns: auto 1fr; gap: 1px 10px; font-size: var(--jp-ui-font-size0, 12px);
  margin: 4px 0; }
.dsn-evidence > div:nth-child(odd) { color: var(--jp-ui-font-color2, #666); }
.dsn-evidence > div { overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.dsn-gain { font-size: var(--jp-ui-font-size0, 12px); margin: 4px 0; }
.dsn-gain b { font-weight: 600; }
.dsn-snippet-box { position: relative; }
.dsn-snippet { font-family: var(--jp-code-font-family, ui-monospace, Menlo, monospace); font-size: 11.5px;
  background: var(--jp-layout-color2, #f5f5f5); border-radius: 4px; padding: 6px 8px; margin: 4px 0;
  white-space: pre !important; overflow-wrap: normal !important; word-break: normal !important; overflow-x: auto;
  max-height: 220px; }
.dsn-sugg button { font: inherit; font-size: var(--jp-ui-font-size0, 12px); color: inherit; cursor: pointer;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px;
  padding: 2px 8px; }
.dsn-sugg button:disabled { opacity: .5; cursor: default; }
.dsn-snippet-head { display: flex; justify-content: space-between; align-items: center; margin-top: 4px; }
.dsn-copy { padding: 0 8px !important; }
.dsn-verify { background: var(--jp-brand-color1, #1976d2) !important; color: #fff !important; border-color: transparent !important; }
.dsn-actions { display: flex; align-items: center; gap: 8px; margin-top: 4px; flex-wrap: wrap; }
.dsn-hint { font-size: var(--jp-ui-font-size0, 11px); color: var(--jp-ui-font-color2, #777); }
.dsn-progress { flex: 1 1 120px; height: 6px; background: var(--jp-layout-color2, #eee); border-radius: 3px; overflow: hidden; }
.dsn-progress > div { height: 100%; background: var(--jp-brand-color1, #1976d2); transition: width .15s; }
.dsn-result { margin-top: 6px; padding: 5px 8px; border-radius: 4px; font-size: var(--jp-ui-font-size0, 12px); }
.dsn-result-verified { background: #eaf7ed; border: 1px solid #a7d8b2; }
.dsn-result-refuted { background: #fff1ea; border: 1px solid #f2c2a8; }
.dsn-result-error { background: #fdeaea; border: 1px solid #f0b4b4; }
.dsn-result-head { font-weight: 700; }
.dsn-result-loop { margin-top: 3px; padding-top: 3px; border-top: 1px dashed rgba(0,0,0,.15);
  color: var(--jp-ui-font-color2, #666); font-size: var(--jp-ui-font-size0, 11px); }
.dsn-result-loop-note { color: #8a5a00; font-style: italic; }
`;

function fmt(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(3) : v.toPrecision(4);
  if (v === null || v === undefined) return "–";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

const render: Render<Model> = ({ model, el: host }) => {
  const root = el("div", "dsn-sugg");
  host.appendChild(root);
  let draws = 0;
  const copied = new Map<string, string>();

  const copy = async (id: string, code: string, pre: HTMLElement) => {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(code);
        ok = true;
      }
    } catch {
      ok = false;
    }
    if (!ok) {
      // fall back to selecting the snippet (the user presses Ctrl+C)
      const sel = window.getSelection();
      const range = document.createRange();
      range.selectNodeContents(pre);
      sel?.removeAllRanges();
      sel?.addRange(range);
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
    }
    copied.set(id, ok ? "copied ✓" : "selected: press Ctrl+C");
    draw();
    window.setTimeout(() => {
      copied.delete(id);
      draw();
    }, 2000);
  };

  const resultBox = (s: Sugg): HTMLElement | null => {
    const r = s.result;
    if (!r) return null;
    if (r.error) {
      const d = el("div", "dsn-result dsn-result-error");
      d.append(text("div", "dsn-result-head", "verification failed"), text("div", "", r.error));
      return d;
    }
    const verdict = r.verdict || s.status;
    const d = el("div", `dsn-result dsn-result-${verdict === "verified" ? "verified" : "refuted"}`);
    d.dataset.verdict = verdict;
    const onStep = r.extra?.timing === "step";
    const speed = `×${fmt(r.speedup)}${onStep ? " on the step" : ""}`;
    // a memory change is judged on memory: that number leads, the speed it costs follows
    const mem = s.category === "memory" && typeof r.memory_change === "number"
      ? `memory ${r.memory_change >= 0 ? "+" : ""}${(100 * r.memory_change).toFixed(1)}%, speed ` : "median speed-up ";
    const head = `${verdict} — ${mem}${speed}`;
    d.appendChild(text("div", "dsn-result-head", head));
    const lines: string[] = [];
    if (r.baseline_s !== undefined && r.variant_s !== undefined)
      lines.push(`${(1e3 * r.baseline_s).toFixed(2)} → ${(1e3 * r.variant_s).toFixed(2)} ms/step` +
        (r.speedup_iqr && r.speedup_iqr.length === 2 ? ` (IQR ×${fmt(r.speedup_iqr[0])}–×${fmt(r.speedup_iqr[1])}, ${r.pairs} pairs of ${r.steps_per_block} steps)` : ""));
    if (r.memory_change !== null && r.memory_change !== undefined) lines.push(`memory ${r.memory_change >= 0 ? "+" : ""}${(100 * r.memory_change).toFixed(1)}%` +
      (r.baseline_saved_bytes ? ` (saved activations ${formatBytes(r.baseline_saved_bytes)} → ${formatBytes(r.variant_saved_bytes || 0)})` : ""));
    if (r.loss_drift !== null && r.loss_drift !== undefined) lines.push(`loss drift ${(100 * r.loss_drift).toFixed(2)}%`);
    if (r.reason) lines.push(r.reason);
    for (const l of lines) d.appendChild(text("div", "", l));
    const loop = loopText(r.extra);
    if (loop) {
      // secondary: what the change gives the loop as it is, data loading included
      const box = el("div", "dsn-result-loop");
      box.dataset.disagrees = loop.note ? "1" : "0";
      if (loop.detail) box.title = loop.detail;
      box.appendChild(text("div", "dsn-result-loop-line", loop.line));
      if (loop.note) box.appendChild(text("div", "dsn-result-loop-note", loop.note));
      d.appendChild(box);
    }
    return d;
  };

  const card = (s: Sugg): HTMLElement => {
    const prog = model.get("progress") || {};
    const running = s.status === "running" || (prog.running === true && prog.id === s.id);
    const c = el("div", `dsn-card dsn-card-${s.severity || "info"}`);
    c.dataset.id = s.id;
    c.dataset.status = s.status;
    c.appendChild(text("div", "dsn-card-title", s.title));
    const chips = el("div", "dsn-chips");
    chips.append(text("span", "dsn-chip", s.category), text("span", `dsn-chip dsn-chip-${s.status}`, s.status));
    c.appendChild(chips);
    const ev = el("div", "dsn-evidence");
    for (const [k, v] of Object.entries(s.evidence || {})) ev.append(text("div", "", k), text("div", "", fmt(v)));
    c.appendChild(ev);
    const gain = el("div", "dsn-gain");
    gain.append(text("b", "", "estimated gain: "), document.createTextNode(s.gain || "–"));
    c.appendChild(gain);
    if (s.snippet) {
      const box = el("div", "dsn-snippet-box");
      const pre = text("pre", "dsn-snippet", s.snippet);
      const btn = el("button", "dsn-copy");
      btn.type = "button";
      btn.textContent = copied.get(s.id) || "copy";
      btn.addEventListener("click", () => copy(s.id, s.snippet, pre));
      const sh = el("div", "dsn-snippet-head");
      sh.append(text("span", "dsn-hint", "code"), btn);
      box.append(sh, pre);
      c.appendChild(box);
    }
    const actions = el("div", "dsn-actions");
    if (s.can_verify) {
      const b = el("button", "dsn-verify");
      b.type = "button";
      b.textContent = running ? "verifying…" : s.result ? "verify again" : "verify (A/B)";
      b.disabled = running || prog.running === true;
      b.addEventListener("click", () => {
        model.send({ type: "verify", id: s.id });
        b.disabled = true;
        b.textContent = "verifying…";
      });
      actions.appendChild(b);
    }
    if (running) {
      const bar = el("div", "dsn-progress");
      const fill = el("div", "");
      const frac = prog.total ? Math.min(1, (prog.done || 0) / prog.total) : 0;
      fill.style.width = `${(100 * frac).toFixed(0)}%`;
      bar.appendChild(fill);
      actions.append(bar, text("span", "dsn-hint dsn-progress-text", `${prog.done || 0}/${prog.total || "?"} ${prog.message || ""}`));
    } else actions.appendChild(text("span", "dsn-hint", s.verify_hint || ""));
    c.appendChild(actions);
    const res = resultBox(s);
    if (res) c.appendChild(res);
    return c;
  };

  // Cards are keyed by id and rebuilt only when what they show changed: a progress tick or a
  // verdict redraws its own card, the others keep their nodes (focus, selection, no flicker).
  const style = css(STYLE);
  const cards = el("div", "dsn-cards");
  const built = new Map<string, { sig: string; node: HTMLElement }>();
  const signature = (s: Sugg): string => {
    const prog = model.get("progress") || {};
    return JSON.stringify([s, prog.running === true, prog.id === s.id ? prog : null, copied.get(s.id) || ""]);
  };

  const draw = () => {
    const list = model.get("suggestions") || [];
    const head = text("div", "dsn-sugg-head", `${model.get("title") || "suggestions"} (${list.length})`);
    const parts: HTMLElement[] = [style, head];
    if (model.get("status")) parts.push(text("div", "dsn-hint", model.get("status")));
    if (!list.length) parts.push(text("div", "dsn-sugg-empty", "no suggestions yet: call _trace.advise() after some steps"));
    const nodes: HTMLElement[] = [];
    const seen = new Set<string>();
    for (const s of list) {
      const sig = signature(s);
      const old = seen.has(s.id) ? undefined : built.get(s.id);
      const node = old && old.sig === sig ? old.node : card(s);
      if (!seen.has(s.id)) built.set(s.id, { sig, node });
      seen.add(s.id);
      nodes.push(node);
    }
    for (const id of [...built.keys()]) if (!seen.has(id)) built.delete(id);
    const same = nodes.length === cards.children.length && nodes.every((n, i) => cards.children[i] === n);
    if (!same) cards.replaceChildren(...nodes);
    parts.push(cards);
    root.replaceChildren(...parts);
    root.dataset.draws = String(++draws);
    root.dataset.cards = String(list.length);
    // Counts draws that showed a running verification: a fast one may be over before a test looks.
    if (root.querySelector(".dsn-progress")) root.dataset.progressDraws = String(Number(root.dataset.progressDraws || 0) + 1);
  };
  const names = ["suggestions", "progress", "status", "title"];
  for (const n of names) model.on(`change:${n}`, draw);
  draw();
  return () => {
    for (const n of names) model.off(`change:${n}`, draw);
    root.remove();
  };
};

export default { render };
