"""``python -m dsnotebook demo``: train the digits CNN under the tracer, print, save the Run.
``python -m dsnotebook report RUN_DIR -o run.html``: the standalone HTML report of a run directory."""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

from dsnotebook import ModelTracer
from dsnotebook.examples import DigitsCNN, batches, load_digits_tensors


def demo(epochs: int, out: pathlib.Path, every: int) -> pathlib.Path:
    torch.manual_seed(0)
    x, y, xt, yt = load_digits_tensors()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    print(f"Training {type(model).__name__} on scikit-learn digits ({len(x)} train / {len(xt)} test images), "
          f"{epochs} epochs, statistics every {every} step(s)")
    t0 = time.perf_counter()
    with ModelTracer(model, opt, every=every) as tracer:
        for epoch in range(epochs):
            for xb, yb in batches(x, y, 64, seed=epoch):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            with torch.no_grad():
                acc = (model(xt).argmax(1) == yt).float().mean().item()
            print(f"  epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {acc:.1%}")
    print(f"done in {time.perf_counter() - t0:.1f} s\n")
    print(tracer.summary())
    path = tracer.run.save(out)
    print(f"\nRun saved to {path.resolve()}  (open it with dsnotebook.Run.open({str(path)!r}))")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsnotebook")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train a small CNN under the tracer and save the run")
    d.add_argument("--epochs", type=int, default=5)
    d.add_argument("--every", type=int, default=1)
    d.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/demo"))
    r = sub.add_parser("report", help="write the standalone HTML report of a run directory")
    r.add_argument("run_dir", type=pathlib.Path, help="a run directory (Run.save, or a tracer's log_dir)")
    r.add_argument("-o", "--output", type=pathlib.Path, default=None,
                   help="the HTML file to write (default: RUN_DIR.html beside the directory)")
    r.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    if args.command == "demo":
        demo(args.epochs, args.out, args.every)
    elif args.command == "report":
        return report(args.run_dir, args.output, args.title)
    return 0


def report(run_dir: pathlib.Path, output: pathlib.Path | None, title: str | None) -> int:
    """``python -m dsnotebook report RUN_DIR -o run.html``: one self-contained HTML file."""
    from dsnotebook import Run
    from dsnotebook.views.report import write_report

    try:
        run = Run.open(run_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"dsnotebook report: cannot open {run_dir} as a run directory: {exc}", file=sys.stderr)
        return 2
    out = output if output is not None else run_dir.resolve().with_suffix(".html")
    t0 = time.perf_counter()
    path = write_report(run, out, title=title)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s): "
          f"{len(run.tensors)} tensors, {len(run.steps)} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
