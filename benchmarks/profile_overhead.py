"""Cost of per-layer timing and activation-memory measurement on sampled steps (CPU models).

    python benchmarks/profile_overhead.py [--pairs 15] [--steps 20] [--threads 1]

For each model, blocks of ``--steps`` training steps alternate between a plain loop and
the same loop under ``ModelTracer(profile_every=N)`` (gradient statistics switched off
after step 0, so only the profiler's cost is measured), N in 1 (every step sampled: the
cost of one sampled step), 10 and 100 (the amortised cost).  The ratio of each adjacent
pair is taken; medians and interquartile ranges are printed.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from dsnotebook import ModelTracer
from dsnotebook.examples import DigitsCNN, DigitsTransformer, load_digits_tensors

from _pairs import interleaved, overhead_pct, train_block

NO_STATS = 10**9  # tracer.every: gradient statistics only at step 0


def measure(model: torch.nn.Module, batch: int, profile_every: int, pairs: int, steps: int) -> dict:
    x, y, _, _ = load_digits_tensors()
    xb, yb = x[:batch], y[:batch]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracer = ModelTracer(model, opt, every=NO_STATS, keep=64, profile_every=profile_every, capture_graph=False,
                         nonfinite="off", track_updates=False)
    train_block(model, opt, xb, yb, steps)  # warm-up
    with tracer:
        train_block(model, opt, xb, yb, steps)
    plain, traced, ratios = interleaved(tracer, model, opt, xb, yb, pairs, steps)
    median, q1, q3 = overhead_pct(ratios)
    sampled = tracer.run.records.tables["timings"]
    return {"plain_ms": 1e3 * statistics.median(plain), "traced_ms": 1e3 * statistics.median(traced),
            "overhead_pct": median, "iqr": (q1, q3),
            "sampled_steps": len({r["step"] for r in sampled})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1: less sensitive to load)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; per-layer timing + activation memory")
    print(f"{'model':<22}{'modules':>8}{'every':>7}{'plain ms':>10}{'profiled ms':>13}{'overhead':>10}  IQR")
    for name, make, batch in (("digits CNN", DigitsCNN, 64), ("transformer encoder", DigitsTransformer, 128)):
        for every in (1, 10, 100):
            model = make()
            r = measure(model, batch, every, args.pairs, args.steps)
            print(f"{name:<22}{len(list(model.modules())):>8}{every:>7}{r['plain_ms']:>10.2f}{r['traced_ms']:>13.2f}"
                  f"{r['overhead_pct']:>9.1f}%  [{r['iqr'][0]:+.1f}%, {r['iqr'][1]:+.1f}%]")


if __name__ == "__main__":
    main()
