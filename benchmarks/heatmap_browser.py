"""Redraw time of the gradient heatmap in headless Chromium, at 2,000 tensors x 1e6 recorded steps.

Why a standalone page and not JupyterLab: the timings need the trigger instant (messages applied,
mouse released) and the frame that shows the result, measured inside the page, for hundreds of
redraws of two builds, each in a page of its own (one renderer each: they never share a layout or
a frame), driven alternately redraw by redraw. A page mounts one esbuild bundle under a fake anywidget
model with the same contract as JupyterLab's (traits, ``change:`` events, ``msg:custom`` with
DataView buffers), and replays messages made by the real kernel side:

* the steps retained are those of the Run's own thinning (``dsnotebook.run.steps.StepTable``) after
  ``--steps`` recorded steps with ``--keep`` retained (default keep of the tracer: 1000);
* the initial columns (what a browser that followed the whole run holds) arrive as the snapshot
  trait; each live update is what ``LiveHeatmap`` sends every 0.1 s while training goes on: the
  columns thinned away (a ``drop``) and the new complete steps (an ``append``), as built by the real
  ``SeriesChannel``, ``--steps-per-push`` recorded steps per push.

Scenarios (each a median and p90 over many redraws, the builds interleaved redraw by redraw, in
alternating order); at the end both builds must have drawn identical cells (a hash of the pixels):
live update, zoom in (drag over a random span), live update while zoomed, zoom out (double-click),
switch statistic. ``work`` = main-thread time of the redraw: the synchronous part of the trigger
plus the frame (the view's draw and the browser's style/layout/paint), excluding the wait for the
next vsync; see ``heatmap_browser.js``. The baseline is the heatmap of ``--baseline`` (a git ref,
exported with ``git archive`` to a temporary folder and built there; the working tree is untouched).

    .venv/bin/python benchmarks/heatmap_browser.py                 # keep 1000 and 5000, vs the baseline
    .venv/bin/python benchmarks/heatmap_browser.py --keep 1000 --baseline none --live 20
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import json
import math
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from typing import Any, Iterator

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsnotebook.run.steps import StepTable  # noqa: E402
from dsnotebook.widgets import colors  # noqa: E402
from dsnotebook.widgets.heatmap import DEFAULT_STATS  # noqa: E402
from dsnotebook.widgets.series import SeriesChannel, normalize_stats  # noqa: E402

#: the heatmap's code at the start of issue 15 item 7 (before the ImageData cache)
BASELINE_REF = "813e635"
CHROMIUM = os.environ.get("DSN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ESBUILD = REPO / "js" / "node_modules" / ".bin" / "esbuild"


def build_bundle(src_root: pathlib.Path, out: pathlib.Path) -> None:
    """esbuild the heatmap entry point as ``make js`` does (minified ESM, es2020)."""
    subprocess.run([str(ESBUILD), str(src_root / "js" / "src" / "heatmap.ts"), "--bundle", "--format=esm",
                    "--minify", "--target=es2020", f"--outfile={out}", "--log-level=warning"],
                   check=True, cwd=REPO / "js")


def export_ref(ref: str, dest: pathlib.Path) -> str:
    """``js/src`` of git ``ref`` into ``dest`` (no checkout); returns the commit's short hash."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    tar = subprocess.run(["git", "archive", commit, "js/src"], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return commit


# ------------------------------------------------------------------------------ data
def make_rows(n: int) -> list[dict[str, Any]]:
    """Transformer-like tensors in model order: modules of 1 to 4 tensors."""
    rows: list[dict[str, Any]] = []
    layer = 0
    while len(rows) < n:
        for mod, tensors in (("attn.qkv", ("weight", "bias")), ("attn.proj", ("weight", "bias")),
                             ("ln_1", ("weight", "bias")), ("mlp.fc_in", ("weight", "bias")),
                             ("mlp.fc_out", ("weight", "bias", "scale", "zero_point"))):
            for t in tensors:
                if len(rows) < n:
                    m = f"model.transformer.h.{layer}.{mod}"
                    rows.append({"name": f"{m}.{t}", "module": m, "tensor": t, "shape": [768, 768]})
        layer += 1
    return rows


def column_values(steps: list[int], n_rows: int) -> np.ndarray:
    """[5 stats, rows, len(steps)] float32, a deterministic function of each step (frozen rows NaN,
    now and then a non-finite count)."""
    out = np.empty((len(DEFAULT_STATS), n_rows, len(steps)), np.float32)
    row_scale = np.linspace(-4, 1, n_rows)
    for j, s in enumerate(steps):
        rng = np.random.default_rng(s)
        z = rng.normal(size=n_rows)
        norm = np.exp(row_scale + 0.8 * z - 1e-6 * s)
        out[0, :, j] = norm
        out[1, :, j] = norm * 0.05 * np.exp(0.3 * rng.normal(size=n_rows))
        out[2, :, j] = np.exp(-7 + 0.5 * rng.normal(size=n_rows))
        out[3, :, j] = 0
        if s % 7919 == 0:
            out[3, (s // 7919) % n_rows, j] = 3
            out[0, (s // 7919) % n_rows, j] = np.inf
        out[4, :, j] = rng.uniform(size=n_rows)
    out[:, ::97, :] = np.nan  # frozen tensors: no data
    return out


class _Wire:
    """The widget side SeriesChannel sends through: records messages and snapshot traits."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], list[Any]]] = []
        self.snapshot = b""
        self.snapshot_meta: dict[str, Any] = {}

    def send(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        self.sent.append((content, [bytes(b) for b in buffers or []]))

    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        yield


def make_data(folder: pathlib.Path, n_rows: int, n_steps: int, keep: int, per_push: int, n_updates: int,
              stat: str) -> dict[str, Any]:
    """Writes meta.json, snapshot.bin, updates.bin, lut.bin for the page; returns a summary."""
    t0 = time.perf_counter()
    table = StepTable(keep)
    for s in range(n_steps):
        table.record(s)
    retained = list(table.order)
    sent = retained[:-1]  # LiveHeatmap sends complete steps only
    wire = _Wire()
    chan = SeriesChannel(wire, len(DEFAULT_STATS), n_rows)
    chan.max_snapshot_bytes = 1 << 40  # the browser followed the whole run: it holds every column
    chan.append(sent, column_values(sent, n_rows))
    chan.flush()
    wire.sent.clear()
    updates: list[list[dict[str, Any]]] = []
    blobs: list[bytes] = []
    offset = 0
    step, last_sent, held = n_steps, sent[-1], set(sent)
    for _ in range(n_updates):
        gone: list[int] = []
        for _ in range(per_push):
            gone += table.record(step)[1]
            step += 1
        gone_sent = [s for s in gone if s in held]
        held.difference_update(gone_sent)
        chan.drop(gone_sent)
        new = [s for s in table.order[:-1] if s > last_sent]
        chan.append(new, column_values(new, n_rows))
        held.update(new)
        last_sent = new[-1]
        msgs = []
        for content, buffers in wire.sent:
            nbytes = sum(len(b) for b in buffers)
            msgs.append({"content": content, "offset": offset, "nbytes": nbytes})
            blobs += buffers
            offset += nbytes
        wire.sent.clear()
        updates.append(msgs)
    (folder / "snapshot.bin").write_bytes(wire.snapshot)
    (folder / "updates.bin").write_bytes(b"".join(blobs))
    (folder / "lut.bin").write_bytes(colors.LUT_BYTES)
    meta = {"rows": make_rows(n_rows), "stats": normalize_stats(DEFAULT_STATS), "stat": stat,
            "mark_stat": "nonfinite", "nan_color": list(colors.NAN_RGB), "mark_color": list(colors.MARK_RGB),
            "snapshot_meta": wire.snapshot_meta, "updates": updates}
    (folder / "meta.json").write_text(json.dumps(meta))
    return {"columns": len(sent), "stride": table.stride, "snapshot_mb": len(wire.snapshot) / 2**20,
            "seconds": time.perf_counter() - t0,
            "drops_per_update": float(np.mean([sum(m["content"]["type"] == "drop" for m in u) for u in updates])),
            "columns_per_update": float(np.mean([sum(len(m["content"]["steps"]) for m in u
                                                     if m["content"]["type"] == "append") for u in updates]))}


# ------------------------------------------------------------------------------ page
@contextlib.contextmanager
def serve(folder: pathlib.Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>heatmap benchmark</title>
<style>body { font-family: sans-serif; margin: 8px; } .host { margin-bottom: 12px; border: 1px solid #ddd; }</style>
<script type="module" src="heatmap_browser.js"></script></head><body></body></html>"""


def summarize(xs: list[float]) -> tuple[float, float]:
    a = np.array([x for x in xs if not math.isnan(x)])
    return (float(np.median(a)), float(np.percentile(a, 90))) if a.size else (math.nan, math.nan)


def run_case(browser: Any, folder: pathlib.Path, bundles: list[dict[str, str]], args: argparse.Namespace,
             keep: int) -> None:
    n_updates = args.live + args.zoom // 3 + 2
    info = make_data(folder, args.rows, args.steps, keep, args.steps_per_push, n_updates, args.stat)
    print(f"\n== {args.rows} tensors x {args.steps:,} recorded steps, keep={keep}: {info['columns']} columns held "
          f"(stride {info['stride']}), {info['snapshot_mb']:.0f} MB; per live update {info['columns_per_update']:.1f} "
          f"new columns, {info['drops_per_update']:.2f} drop messages (data made in {info['seconds']:.1f}s)")
    errors: list[str] = []
    res: dict[str, dict[str, list[dict[str, float]]]] = {}
    with serve(folder) as url:
        pages = []
        for b in bundles:  # one page (and renderer) per build: they never share a layout or a frame
            ctx = browser.new_context(viewport={"width": args.width + 60, "height": 1000},
                                      device_scale_factor=args.dpr)
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/index.html")
            page.wait_for_function("() => typeof window.dsnSetup === 'function'")
            page.evaluate("([b, w]) => window.dsnSetup(b, w)", [b, args.width])
            pages.append((b["name"], ctx, page))

        def do(i: int, scenario: str | None, act: dict[str, Any]) -> None:
            for name, _, page in (pages if i % 2 == 0 else pages[::-1]):  # interleaved, order alternating
                r = page.evaluate("(a) => window.dsnDo(a)", act)
                if scenario:
                    res.setdefault(scenario, {}).setdefault(name, []).append(r)

        for i in range(3):  # warm-up (JIT)
            do(i, None, {"kind": "zoom", "a": 0.2, "b": 0.6})
            do(i, None, {"kind": "zoomout"})
        u = 0
        for i in range(args.live):
            do(i, "live update", {"kind": "live", "i": u})
            u += 1
        rng = np.random.default_rng(12345)
        for i in range(args.zoom):
            a = 0.05 + 0.5 * rng.random()
            do(i, "zoom in", {"kind": "zoom", "a": a, "b": min(0.99, a + 0.05 + 0.4 * rng.random())})
            if i % 3 == 0:  # the run goes on while zoomed in
                do(i, "live update, zoomed", {"kind": "live", "i": u})
                u += 1
            do(i, "zoom out", {"kind": "zoomout"})
        keys = [s["key"] for s in DEFAULT_STATS]
        for i in range(args.stat_switch):
            do(i, "switch statistic", {"kind": "stat", "key": keys[(i + 1) % len(keys)]})
        state = [page.evaluate("() => window.dsnState()") for _, _, page in pages]
        hashes = [page.evaluate("() => window.dsnCellsHash()") for _, _, page in pages]
        for name, ctx, page in pages:
            if args.screenshot:
                page.screenshot(path=f"{args.screenshot}.keep{keep}.{name.split()[0]}.png", full_page=True)
            ctx.close()
    if errors:
        print("page errors:", *errors[:5], sep="\n  ")
    for st in state:
        c = st["canvas"]
        print(f"  {st['name']}: {st['root'].get('columns')} columns drawn as {c.get('bins')} bins of {c.get('agg')} "
              f"({c.get('cellW')}x{c.get('cellH')} px cells), last phases: {st['root'].get('drawPhases', '')}"
              + (f"; bins coloured {c['colored']}, moved {c['moved']} in {c['paints']} paints" if "paints" in c else ""))
    if len(hashes) == 2:
        print(f"  cells drawn by both builds at the end: {'identical' if hashes[0] == hashes[1] else 'DIFFERENT'} "
              f"({hashes[0]} vs {hashes[1]})")
    names = [b["name"] for b in bundles]
    print("  work = apply + frame (median / p90 ms); parts (medians): draw = the view's draw, render = the rest of"
          " the frame (style, layout, paint), apply = before the frame (messages applied, mouse handler)")
    head = f"  {'scenario':<22}{'n':>4}" + "".join(f"  {n[:18] + ' work':>24}  {'draw':>6}{'render':>7}{'apply':>6}" for n in names)
    if len(names) == 2:
        head += f"  {'work ratio':>10}"
    print(head)
    for scenario, by in res.items():
        line = f"  {scenario:<22}{len(by[names[0]]):>4}"
        meds = []
        for n in names:
            med, p90 = summarize([r["work"] for r in by[n]])
            dmed = summarize([r["draw"] for r in by[n]])[0]
            rmed = summarize([r["frame"] - r["draw"] for r in by[n]])[0]
            amed = summarize([r["apply"] for r in by[n]])[0]
            meds.append(med)
            line += f"  {med:>14.1f} / {p90:>7.1f}  {dmed:>6.1f}{rmed:>7.1f}{amed:>6.1f}"
        if len(names) == 2:
            line += f"  {meds[1] / meds[0]:>9.3f}x"
        print(line)
    lat = {n: summarize([r["latency"] for r in res["live update"][n]]) for n in names}
    print("  live update latency (message -> frame shown, incl. the wait for vsync) med/p90: "
          + ", ".join(f"{n} {m:.1f}/{p:.1f} ms" for n, (m, p) in lat.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1_000_000, help="recorded steps before the live updates")
    ap.add_argument("--keep", default="1000,5000", help="steps the Run retains (comma-separated: one case each)")
    ap.add_argument("--steps-per-push", type=int, default=10, help="recorded steps per live push (0.1 s apart)")
    ap.add_argument("--live", type=int, default=40, help="live updates timed")
    ap.add_argument("--zoom", type=int, default=30, help="zoom in / zoom out pairs timed")
    ap.add_argument("--stat-switch", type=int, default=6)
    ap.add_argument("--stat", default="norm")
    ap.add_argument("--width", type=int, default=1000, help="CSS px of the output area")
    ap.add_argument("--dpr", type=float, default=1.0, help="device pixel ratio")
    ap.add_argument("--baseline", default=BASELINE_REF, help="git ref of the baseline heatmap ('none': skip)")
    ap.add_argument("--screenshot", default="", help="save a full-page screenshot per case and build (path prefix)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dsn-heatmap-bench-") as tmp:
        folder = pathlib.Path(tmp)
        bundles = []
        if args.baseline != "none":
            commit = export_ref(args.baseline, folder / "base")
            build_bundle(folder / "base", folder / "heatmap_base.js")
            bundles.append({"name": f"baseline {commit}", "file": "heatmap_base.js"})
        build_bundle(REPO, folder / "heatmap_new.js")
        bundles.append({"name": "working tree", "file": "heatmap_new.js"})
        (folder / "index.html").write_text(PAGE)
        (folder / "heatmap_browser.js").write_text((pathlib.Path(__file__).parent / "heatmap_browser.js").read_text())
        print(f"heatmap redraw benchmark: headless Chromium ({CHROMIUM}), width {args.width} CSS px, dpr {args.dpr}, "
              f"{args.steps_per_push} recorded steps per live push; builds: {', '.join(b['name'] for b in bundles)}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                for keep in [int(k) for k in args.keep.split(",")]:
                    run_case(browser, folder, bundles, args, keep)
            finally:
                browser.close()


if __name__ == "__main__":
    main()
