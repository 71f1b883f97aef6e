// In-page half of benchmarks/heatmap_browser.py: mounts a heatmap bundle under a fake
// anywidget model (the same contract JupyterLab's model gives: get/set/on/off/save_changes,
// "msg:custom" with DataView buffers, "change:<trait>"), replays the kernel's messages and times
// each redraw with performance.now() + requestAnimationFrame. Python drives the actions.
//
// One redraw is timed as:
//   apply  = the synchronous work of the trigger (messages applied to the store, or the mouse
//            handler of a zoom), which runs before the frame;
//   draw   = from the first requestAnimationFrame callback of the next frame (registered before
//            the trigger, so it runs just before the view's own draw callback) until the view
//            bumps data-draws (a MutationObserver, i.e. right after its draw returns);
//   frame  = from that first callback until a task posted after the draw runs, i.e. after the
//            browser's style / layout / paint of that frame;
//   work   = apply + frame: the main-thread time the redraw costs (the wait for the next
//            vsync, up to 16.7 ms, is not work and is reported apart as latency).

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const afterTask = () => new Promise((r) => { const ch = new MessageChannel(); ch.port1.onmessage = () => r(performance.now()); ch.port2.postMessage(0); });

class FakeModel {
  constructor(traits) { this.t = { ...traits }; this.ev = new Map(); }
  get(k) { return this.t[k]; }
  set(k, v) { const old = this.t[k]; this.t[k] = v; if (old !== v) this.trigger(`change:${k}`); }
  on(e, f) { if (!this.ev.has(e)) this.ev.set(e, new Set()); this.ev.get(e).add(f); }
  off(e, f) { const s = this.ev.get(e); if (s) s.delete(f); }
  trigger(e, ...args) { for (const f of [...(this.ev.get(e) || [])]) f(...args); }
  save_changes() {}
  send() {}
}

async function fetchBin(url) { return (await fetch(url)).arrayBuffer(); }

/** Loads the data written by the Python side and mounts one widget of `bundle` (one build
 * per page, so that the builds compared never share a layout or a frame). */
window.dsnSetup = async (bundle, width) => {
  const meta = await (await fetch("meta.json")).json();
  const snap = await fetchBin("snapshot.bin");
  const upd = await fetchBin("updates.bin");
  const lut = await fetchBin("lut.bin");
  const updates = meta.updates.map((msgs) => msgs.map((m) => ({
    content: m.content,
    buffers: m.nbytes ? [new DataView(upd, m.offset, m.nbytes)] : [],
  })));
  const mod = await import(`./${bundle.file}`);
  const widget = mod.default();
  const model = new FakeModel({
    rows: meta.rows, stats: meta.stats, stat: meta.stat, mark_stat: meta.mark_stat, status: "", title: bundle.name,
    lut: new DataView(lut), nan_color: meta.nan_color, mark_color: meta.mark_color,
    snapshot: new DataView(snap), snapshot_meta: meta.snapshot_meta,
    selected_module: "", selected_step: -1, selected_tensor: "", hover_step: -1,
  });
  const host = document.createElement("div");
  host.className = "host";
  host.style.width = `${width}px`;
  document.body.appendChild(host);
  if (widget.initialize) widget.initialize({ model });
  widget.render({ model, el: host });
  await sleep(50);
  window.dsn = { meta, updates, v: { name: bundle.name, model, host, root: host.querySelector(".dsn-heatmap") } };
  return { columns: meta.snapshot_meta.steps.length, updates: updates.length };
};

/** Times one redraw of variant v caused by trigger() (see the header). */
async function timeRedraw(v, trigger) {
  const root = v.root;
  const before = Number(root.dataset.draws || 0);
  let tStart = NaN;
  requestAnimationFrame(() => { tStart = performance.now(); });
  const drawn = new Promise((resolve) => {
    const mo = new MutationObserver(() => {
      if (Number(root.dataset.draws) > before) { mo.disconnect(); resolve(performance.now()); }
    });
    mo.observe(root, { attributes: true, attributeFilter: ["data-draws"] });
    setTimeout(() => { mo.disconnect(); resolve(NaN); }, 5000);
  });
  const t0 = performance.now();
  trigger();
  const tApplied = performance.now();
  const tDrawn = await drawn;
  const tRendered = await afterTask();
  const apply = tApplied - t0;
  const frame = tRendered - tStart;
  return { apply, draw: tDrawn - tStart, frame, work: apply + frame, latency: tRendered - t0, phases: root.dataset.drawPhases || "" };
}

function plotX(v, frac) {
  const c = v.root.querySelector(".dsn-heatmap-canvas");
  const d = c.dataset;
  const rect = c.getBoundingClientRect();
  const w = Number(d.bins) * Number(d.cellW);
  return rect.left + Number(d.x0) + frac * w;
}
function plotY(v) {
  const c = v.root.querySelector(".dsn-heatmap-canvas");
  return c.getBoundingClientRect().top + Number(c.dataset.y0) + 20;
}

/** One timed redraw: {kind: "live", i} (the i-th live update's messages), {kind: "zoom", a, b}
 * (a drag over fractions a..b of the cells), {kind: "zoomout"} (double-click), {kind: "stat", key}. */
window.dsnDo = async (act) => {
  const { v, updates } = window.dsn;
  const c = v.root.querySelector(".dsn-heatmap-canvas");
  let trigger;
  if (act.kind === "live") {
    const msgs = updates[act.i];
    trigger = () => { for (const m of msgs) v.model.trigger("msg:custom", m.content, m.buffers); };
  } else if (act.kind === "zoom") {
    const y = plotY(v);
    const xa = plotX(v, act.a);
    const xb = plotX(v, act.b);
    trigger = () => {
      c.dispatchEvent(new MouseEvent("mousedown", { clientX: xa, clientY: y, button: 0, bubbles: true }));
      window.dispatchEvent(new MouseEvent("mousemove", { clientX: xb, clientY: y, bubbles: true }));
      window.dispatchEvent(new MouseEvent("mouseup", { clientX: xb, clientY: y, button: 0, bubbles: true }));
    };
  } else if (act.kind === "zoomout") {
    const x = plotX(v, 0.5);
    const y = plotY(v);
    trigger = () => c.dispatchEvent(new MouseEvent("dblclick", { clientX: x, clientY: y, bubbles: true }));
  } else if (act.kind === "stat") {
    trigger = () => v.model.set("stat", act.key);
  } else throw new Error(`unknown action ${act.kind}`);
  const r = await timeRedraw(v, trigger);
  await sleep(2);
  return r;
};

/** Canvas geometry and counters (for the report, and to check both builds draw the same cells). */
window.dsnState = () => {
  const v = window.dsn.v;
  return { name: v.name, root: { ...v.root.dataset }, canvas: { ...v.root.querySelector(".dsn-heatmap-canvas").dataset } };
};

/** A hash of the cells' pixels (the builds compared must draw the same cells). */
window.dsnCellsHash = () => {
  const c = window.dsn.v.root.querySelector(".dsn-heatmap-canvas");
  const d = c.dataset;
  const dpr = Number(d.dpr) || 1;
  const x = Math.round(Number(d.x0) * dpr);
  const y = Math.round(Number(d.y0) * dpr);
  const w = Math.round(Number(d.bins) * Number(d.cellW) * dpr);
  const h = Math.round(Number(window.dsn.v.root.dataset.rows) * Number(d.cellH) * dpr);
  const px = new Int32Array(c.getContext("2d").getImageData(x, y, w, h).data.buffer);
  let hash = 0x811c9dc5;
  for (let i = 0; i < px.length; i++) hash = Math.imul(hash ^ px[i], 16777619);
  return `${w}x${h}:${(hash >>> 0).toString(16)}`;
};
