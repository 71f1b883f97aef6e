"""A training script that records to a run directory (started by the multi-process tests).

    python write_script.py LOG_DIR [--steps N] [--stop-file PATH] [--sleep S]

Trains a tiny CNN under ``ModelTracer(..., log_dir=LOG_DIR)``; prints ``step N`` after each
step; stops after N steps, or (``--steps 0``) once the stop file exists, or when killed.
"""
import argparse
import os
import pathlib
import sys
import time

import torch

from dsnotebook import ModelTracer


def build() -> tuple:
    """Model, optimizer and one batch, the same in every process (seeded, one thread)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 8 * 8, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return model, opt, torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))


def train_step(model, opt, x, y) -> None:
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log_dir")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--stop-file", default=None)
    ap.add_argument("--sleep", type=float, default=0.0)
    args = ap.parse_args()
    model, opt, x, y = build()
    print(f"pid {os.getpid()}", flush=True)
    with ModelTracer(model, opt, keep=64, log_dir=args.log_dir):
        step = 0
        while True:
            train_step(model, opt, x, y)
            print(f"step {step}", flush=True)
            step += 1
            if args.steps and step >= args.steps:
                break
            if args.stop_file and pathlib.Path(args.stop_file).exists():
                break
            time.sleep(args.sleep)
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
