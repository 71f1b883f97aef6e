"""Cost of activation sampling (every 1, 10, 100 steps), strict non-finite checks and graph capture.

    python benchmarks/activations.py [--pairs 15] [--steps 100]

Same method as ``overhead.py``: blocks of ``--steps`` training steps alternate between a
plain loop and the loop under a tracer, and the ratio of each adjacent pair is taken
(interleaving cancels drift on a shared, noisy machine); medians and interquartile ranges
are printed.  Every tracer records gradient statistics every step (the always-on part),
so "grads only" is the reference the other rows add to; the first two rows differ by the
default non-finite mode's step capture (two root hooks keeping each step's inputs for a replay).  Graph capture happens once per
tracer, on its first forward: it is measured as one training step with a GraphRecorder
capturing its forward against the same step without, in interleaved pairs.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from dsnotebook import ModelTracer
from dsnotebook.examples import DigitsCNN, DigitsTransformer, load_digits_tensors
from dsnotebook.dataflow.graph import GraphRecorder

from _pairs import interleaved, overhead_pct, train_block

VARIANTS = [
    ("grads only, nonfinite off", {"nonfinite": "off"}),
    ("grads only (default: nonfinite cheap)", {}),
    ("activations every 100", {"activations_every": 100}),
    ("activations every 10", {"activations_every": 10}),
    ("activations every 1", {"activations_every": 1}),
    ("nonfinite strict", {"nonfinite": "strict"}),
]


def measure(model, opt, xb, yb, kwargs: dict, pairs: int, steps: int) -> tuple[float, float, tuple]:
    tracer = ModelTracer(model, opt, every=1, keep=256, capture_graph=False, **kwargs)
    with tracer:
        train_block(model, opt, xb, yb, steps)  # warm-up (workspaces, first sample)
    plain, _, ratios = interleaved(tracer, model, opt, xb, yb, pairs, steps)
    return (1e3 * statistics.median(plain), 1e3 * statistics.median(plain) * statistics.median(ratios),
            overhead_pct(ratios))


def measure_capture(model, opt, xb, yb, pairs: int) -> tuple[float, float, tuple, int]:
    """One training step with a GraphRecorder capturing its forward vs the same step without."""
    times: dict[bool, list[float]] = {False: [], True: []}
    ratios, nodes = [], 0
    for i in range(pairs):
        t = {}
        for capture in ((False, True) if i % 2 == 0 else (True, False)):
            rec = GraphRecorder(model).start() if capture else None
            t[capture] = train_block(model, opt, xb, yb, 1)
            if rec is not None:
                nodes = len(rec.result["nodes"])
                rec.stop()
            times[capture].append(t[capture])
        ratios.append(t[True] / t[False])
    plain = statistics.median(times[False])
    return 1e3 * plain, 1e3 * plain * statistics.median(ratios), overhead_pct(ratios), nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--capture-only", action="store_true", help="only the graph capture rows")
    args = ap.parse_args()
    torch.manual_seed(0)
    x, y, _, _ = load_digits_tensors()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.pairs} interleaved pairs of "
          f"{args.steps}-step blocks; overhead = median(traced / plain) - 1, IQR in brackets")
    print(f"{'model':<13}{'variant':<24}{'plain ms':>9}{'traced ms':>10}{'overhead':>10}  IQR")
    for name, model, batch in (("digits CNN", DigitsCNN(), 64), ("transformer", DigitsTransformer(), 128)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        xb, yb = x[:batch], y[:batch]
        train_block(model, opt, xb, yb, 10)
        for label, kwargs in ([] if args.capture_only else VARIANTS):
            plain, traced, (med, lo, hi) = measure(model, opt, xb, yb, kwargs, args.pairs, args.steps)
            print(f"{name:<13}{label:<24}{plain:>9.2f}{traced:>10.2f}{med:>9.1f}%  [{lo:+.1f}%, {hi:+.1f}%]")
        plain, traced, (med, lo, hi), nodes = measure_capture(model, opt, xb, yb, 2 * args.pairs)
        print(f"{name:<13}{f'graph capture ({nodes} nodes)':<24}{plain:>9.2f}{traced:>10.2f}{med:>9.1f}%  "
              f"[{lo:+.1f}%, {hi:+.1f}%]  (once, first step only)")


if __name__ == "__main__":
    main()
