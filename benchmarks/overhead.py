"""Step time with and without ModelTracer (statistics every step), interleaved pairs.

    python benchmarks/overhead.py [--pairs 30] [--steps 20] [--peers wandb,tensorboard] [--helper]

For each model, blocks of ``--steps`` training steps alternate between a plain loop and
the same loop under a tracer; the ratio traced/plain of every adjacent pair is taken and
the median printed with its interquartile range (interleaving cancels drift from thermal
state and other load).  A second witness: the training thread's CPU time per step
(``time.thread_time``), plain and traced, and its difference in microseconds.
``--helper`` adds an arm whose CPU statistics are computed in the helper process
(:mod:`dsnotebook.stats.helper`, opt-in for users: ``DSNOTEBOOK_STATS_HELPER=1``) instead of
on the training thread; "jobs/step" says where they ran (2: helper, 0: training thread).
``--peers`` adds arms for ``wandb.watch(log="all", log_freq=1)`` (offline) and TensorBoard
histograms of every gradient every step, measured the same way in the same run (each
against its own interleaved plain blocks), when those packages are installed.
Without scikit-learn the models train on random 8x8 images of the digits' shape.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import sys
import time

import torch

if importlib.util.find_spec("dsnotebook") is None:  # run from a checkout without PYTHONPATH=.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dsnotebook import ModelTracer  # noqa: E402
from dsnotebook.examples import DigitsCNN, DigitsTransformer  # noqa: E402
from dsnotebook.stats import helper as stats_helper  # noqa: E402
from dsnotebook.stats.helper import shared_helper  # noqa: E402

from _pairs import interleaved, overhead_pct, train_block  # noqa: E402
from _peers import arms as peer_arms  # noqa: E402


def digits(batch: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One batch of the digits (scikit-learn), or random images of the same shape without it."""
    try:
        from dsnotebook.examples import load_digits_tensors

        x, y, _, _ = load_digits_tensors()
        return x[:batch], y[:batch], "digits"
    except ImportError:
        g = torch.Generator().manual_seed(0)
        return torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g), "random 8x8"


def _tracer(model: torch.nn.Module, opt: torch.optim.Optimizer, every: int | str, helper: bool) -> ModelTracer:
    tracer = ModelTracer(model, opt, every=every, keep=256)
    if helper:  # statistics in the helper process (the backend is made now, with it)
        tracer._backend(torch.device("cpu")).use_helper(shared_helper())
    return tracer


def measure(name: str, model: torch.nn.Module, batch: int, pairs: int, steps: int, every: int | str = 1,
            peers: list[str] = (), helper: bool = False) -> list[dict]:
    xb, yb, data = digits(batch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_block(model, opt, xb, yb, steps)  # warm-up
    arms: list[tuple[str, object]] = [("dsnotebook", _tracer(model, opt, every, False))]
    if helper:
        arms.append(("dsn helper", _tracer(model, opt, every, True)))
    for _, tracer in arms:
        with tracer:
            train_block(model, opt, xb, yb, steps)
            deadline = time.monotonic() + 10  # the helper process starts in about 0.1 s
            while helper and time.monotonic() < deadline and not shared_helper().available():
                train_block(model, opt, xb, yb, 1)
    arms += list(peer_arms(model, opt, list(peers)).items())
    rows = []
    for arm_name, arm in arms:
        sent, cpu = shared_helper().sent, {}
        plain, traced, ratios = interleaved(arm, model, opt, xb, yb, pairs, steps, cpu=cpu)
        median, q1, q3 = overhead_pct(ratios)
        rows.append({"model": name, "arm": arm_name, "tensors": len(list(model.parameters())), "batch": batch,
                     "data": data, "plain_ms": 1e3 * statistics.median(plain),
                     "traced_ms": 1e3 * statistics.median(traced), "overhead_pct": median, "iqr_pct": (q1, q3),
                     "cpu_plain_us": 1e6 * statistics.median(cpu["plain"]),
                     "cpu_traced_us": 1e6 * statistics.median(cpu["traced"]),
                     "helper_jobs_per_step": (shared_helper().sent - sent) / (pairs * steps)})
        if hasattr(arm, "close"):
            arm.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=lambda v: v if v == "auto" else int(v), default=1,
                    help="record statistics every N steps, or auto (within the default 2%% budget)")
    ap.add_argument("--peers", default="", help="comma-separated: wandb, tensorboard (when installed)")
    ap.add_argument("--helper", action="store_true", help="add an arm computing the statistics in the helper process")
    ap.add_argument("--models", default="cnn,transformer", help="comma-separated: cnn, transformer")
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    torch.manual_seed(0)
    helper = "helper process on" if stats_helper.enabled() else "statistics on the training thread"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; statistics every {args.every} step(s); "
          f"{helper}")
    print(f"{'model':<22}{'arm':<12}{'tensors':>8}{'batch':>6}{'plain ms':>10}{'traced ms':>11}{'overhead':>10}"
          f"{'IQR':>18}{'cpu plain us':>14}{'cpu +us':>9}{'jobs/step':>10}")
    models = {"cnn": ("digits CNN", DigitsCNN, 64), "transformer": ("transformer encoder", DigitsTransformer, 128)}
    for key in args.models.split(","):
        name, cls, batch = models[key]
        for r in measure(name, cls(), batch, args.pairs, args.steps, args.every, peers, args.helper):
            print(f"{r['model']:<22}{r['arm']:<12}{r['tensors']:>8}{r['batch']:>6}{r['plain_ms']:>10.2f}"
                  f"{r['traced_ms']:>11.2f}{r['overhead_pct']:>9.1f}%"
                  f"  [{r['iqr_pct'][0]:+5.1f}%, {r['iqr_pct'][1]:+5.1f}%]"
                  f"{r['cpu_plain_us']:>14.0f}{r['cpu_traced_us'] - r['cpu_plain_us']:>+9.0f}"
                  f"{r['helper_jobs_per_step']:>10.2f}", flush=True)
    print(f"input: {r['data']}")


if __name__ == "__main__":
    main()
