"""Cost of per-layer timing and activation-memory measurement on sampled steps (CPU models).

    python benchmarks/profile_overhead.py [--pairs 15] [--steps 20] [--threads 1] [--attribution]

For each model, blocks of ``--steps`` training steps alternate between a plain loop and
the same loop under ``ModelTracer(profile_every=N)`` (gradient statistics switched off
after step 0, so only the profiler's cost is measured), N in 1 (every step sampled: the
cost of one sampled step), 10 and 100 (the amortised cost).  The ratio of each adjacent
pair is taken; medians and interquartile ranges are printed.

``--attribution`` checks the phase split instead of its cost: the same loops with no data
loading and with a known loading time (a sleep worth ``--load-share`` of the step) are
profiled on every step, and the data share the advisor reads (``perf.measures``) is
printed beside the true one.  dsnotebook's own work must not show up as data loading.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import torch.nn.functional as F

from dsnotebook import ModelTracer
from dsnotebook.perf import measures
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


def attribution(model: torch.nn.Module, batch: int, load_share: float, steps: int) -> dict:
    """Measured vs true data share of a loop whose loading is a sleep of ``load_share`` of the step."""
    x, y, _, _ = load_digits_tensors()
    xb, yb = x[:batch], y[:batch]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    compute = min(train_block(model, opt, xb, yb, steps) for _ in range(3))
    load = compute * load_share / (1 - load_share) if load_share > 0 else 0.0
    loaded = []
    with ModelTracer(model, opt, keep=64, profile_every=1) as tracer:
        for _ in range(steps):
            t0 = time.perf_counter()
            if load:
                time.sleep(load)  # the "data loader" (sleep overshoots: its real length is what counts)
            loaded.append(time.perf_counter() - t0)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    ph = measures.phases(tracer.run)
    true = statistics.median(loaded[1:])
    return {"true_share": true / ph["step"], "true_ms": 1e3 * true, "data_ms": 1e3 * ph["data"],
            "step_ms": 1e3 * ph["step"], "tracer_ms": 1e3 * ph["tracer"], "data_share": ph["data"] / ph["step"]}


def main_attribution(args: argparse.Namespace) -> None:
    print("median sampled step (perf.measures); 'true' is the loading time measured around the sleep")
    print(f"{'model':<22}{'true ms':>8}{'data ms':>9}{'true':>7}{'measured':>10}{'step ms':>9}{'tracer ms':>10}")
    for name, make, batch in (("digits CNN", DigitsCNN, 64), ("transformer encoder", DigitsTransformer, 128)):
        for share in (0.0, args.load_share):
            r = attribution(make(), batch, share, args.steps)
            print(f"{name:<22}{r['true_ms']:>8.3f}{r['data_ms']:>9.3f}{100 * r['true_share']:>6.1f}%"
                  f"{100 * r['data_share']:>9.1f}%{r['step_ms']:>9.2f}{r['tracer_ms']:>10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1: less sensitive to load)")
    ap.add_argument("--attribution", action="store_true", help="check the phase split instead of the overhead")
    ap.add_argument("--load-share", type=float, default=0.13, help="true data-loading share for --attribution")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.attribution:
        main_attribution(args)
        return
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
