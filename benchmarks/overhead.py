"""Step time with and without ModelTracer (statistics every step), interleaved pairs.

    python benchmarks/overhead.py [--pairs 30] [--steps 20] [--peers wandb,tensorboard]

For each model, blocks of ``--steps`` training steps alternate between a plain loop and
the same loop under a tracer; the ratio traced/plain of every adjacent pair is taken and
the median printed (interleaving cancels drift from thermal state and other load).
``--peers`` adds arms for ``wandb.watch(log="all", log_freq=1)`` (offline) and TensorBoard
histograms of every gradient every step, measured the same way in the same run (each
against its own interleaved plain blocks), when those packages are installed.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from dsnotebook import ModelTracer
from dsnotebook.examples import DigitsCNN, DigitsTransformer, load_digits_tensors

from _pairs import interleaved, overhead_pct, train_block
from _peers import arms as peer_arms


def measure(name: str, model: torch.nn.Module, batch: int, pairs: int, steps: int, every: int | str = 1,
            peers: list[str] = ()) -> list[dict]:
    x, y, _, _ = load_digits_tensors()
    xb, yb = x[:batch], y[:batch]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracer = ModelTracer(model, opt, every=every, keep=256)
    train_block(model, opt, xb, yb, steps)  # warm-up
    with tracer:
        train_block(model, opt, xb, yb, steps)
    rows = []
    for arm_name, arm in [("dsnotebook", tracer), *peer_arms(model, opt, list(peers)).items()]:
        plain, traced, ratios = interleaved(arm, model, opt, xb, yb, pairs, steps)
        median, q1, q3 = overhead_pct(ratios)
        rows.append({"model": name, "arm": arm_name, "tensors": len(list(model.parameters())), "batch": batch,
                     "plain_ms": 1e3 * statistics.median(plain), "traced_ms": 1e3 * statistics.median(traced),
                     "overhead_pct": median, "iqr_pct": (q1, q3)})
        if hasattr(arm, "close"):
            arm.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=lambda v: v if v == "auto" else int(v), default=1,
                    help="record statistics every N steps, or auto (within the default 2%% budget)")
    ap.add_argument("--peers", default="", help="comma-separated: wandb, tensorboard (when installed)")
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; statistics every {args.every} step(s)")
    print(f"{'model':<22}{'arm':<13}{'tensors':>8}{'batch':>6}{'plain ms':>10}{'traced ms':>11}{'overhead':>10}  IQR")
    for name, model, batch in (("digits CNN", DigitsCNN(), 64), ("transformer encoder", DigitsTransformer(), 128)):
        for r in measure(name, model, batch, args.pairs, args.steps, args.every, peers):
            print(f"{r['model']:<22}{r['arm']:<13}{r['tensors']:>8}{r['batch']:>6}{r['plain_ms']:>10.2f}"
                  f"{r['traced_ms']:>11.2f}{r['overhead_pct']:>9.1f}%  [{r['iqr_pct'][0]:+.1f}%, {r['iqr_pct'][1]:+.1f}%]")


if __name__ == "__main__":
    main()
